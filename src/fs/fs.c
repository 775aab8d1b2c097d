/*
 * The fs context and the life of a request.
 *
 * Why a context per loop: the backend choice, the io_uring ring with its
 * eventfd watcher and the counters all belong to one loop, and the loop has
 * no slot for a module's state. Globals would tie them to the process; a
 * context passed to every call keeps them per loop and costs one pointer.
 *
 * Why callbacks never run inside the submitting call: a read served inline
 * by RWF_NOWAIT is finished before hk_fs_read returns, but calling back
 * right there would make the order of events depend on the page cache (the
 * same code would see its callback before or after the call returned). The
 * inline path queues the callback with hk_defer instead: it runs after the
 * current callback, before the loop sleeps, with no system call.
 */
#include <stdlib.h>

#include "fs/internal.h"

int hk_fs_new(hk_loop_t *loop, const hk_fs_options_t *opts, hk_fs_t **fsp)
{
    hk_fs_options_t def = {0};
    if (!opts)
        opts = &def;
    if (!loop || !fsp)
        return -EINVAL;
    if ((opts->backend != HK_FS_BACKEND_POOL && opts->backend != HK_FS_BACKEND_URING) ||
        (opts->flags & ~HK_FS_NO_NOWAIT))
        return -EINVAL;
    hk_fs_t *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    fs->loop = loop;
    fs->pool = opts->pool;
    fs->flags = opts->flags;
    fs->budget_ns =
        opts->inline_budget_ns ? opts->inline_budget_ns : HK_FS_INLINE_BUDGET_NS_DEFAULT;
    fs->stats.backend = HK_FS_BACKEND_POOL;
    if (opts->backend == HK_FS_BACKEND_URING) {
        int err = hk__fs_uring_new(fs, opts->uring_entries ? opts->uring_entries : 256);
        if (err < 0)
            fs->stats.uring_error = err; /* fall back to the pool */
        else
            fs->stats.backend = HK_FS_BACKEND_URING;
    }
    *fsp = fs;
    return 0;
}

int hk_fs_free(hk_fs_t *fs)
{
    if (!fs)
        return -EINVAL;
    if (fs->stats.in_flight > 0)
        return -EBUSY;
    hk__fs_uring_free(fs);
    free(fs);
    return 0;
}

int hk_fs_stats(const hk_fs_t *fs, hk_fs_stats_t *out)
{
    if (!fs || !out)
        return -EINVAL;
    *out = fs->stats;
    if (fs->flags & HK_FS_NO_NOWAIT)
        out->nowait = 0;
    else
        out->nowait = hk__fs_nowait_state();
    return 0;
}

void hk_fs_req_cleanup(hk_fs_req_t *req)
{
    if (!req || req->_state == HK__FS_BUSY)
        return;
    free(req->dirents);
    free(req->file_data);
    req->dirents = NULL;
    req->file_data = NULL;
}

int hk__fs_begin(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, hk_fs_cb cb)
{
    if (!fs || !req || !cb)
        return -EINVAL;
    if (req->_state == HK__FS_BUSY)
        return -EBUSY;
    void *data = req->data;
    memset(req, 0, sizeof(*req));
    req->data = data;
    req->loop = fs->loop;
    req->fs = fs;
    req->type = type;
    req->fd = -1;
    req->offset = -1;
    req->_cb = cb;
    req->_state = HK__FS_BUSY;
    req->_defer.data = req;
    req->_work.data = req;
    fs->stats.in_flight++;
    return 0;
}

void hk__fs_abort(hk_fs_req_t *req)
{
    req->_state = 0;
    req->_where = HK__FS_AT_NONE;
    req->fs->stats.in_flight--;
}

void hk__fs_finish(hk_fs_req_t *req)
{
    hk_fs_t *fs = req->fs;
    if ((req->type == HK_FS_READ || req->type == HK_FS_WRITE) && req->result > 0)
        fs->stats.bytes_backend += (uint64_t)req->result - req->_inline;
    req->_state = 0;
    req->_where = HK__FS_AT_NONE;
    fs->stats.in_flight--;
    /* Last: the callback may reuse the request or free the context. */
    req->_cb(req);
}

static void hk__fs_deferred(hk_defer_t *d)
{
    hk__fs_finish(d->data);
}

void hk__fs_finish_later(hk_fs_req_t *req)
{
    req->_where = HK__FS_AT_INLINE;
    /* Cannot fail: the request was idle, so its defer is not queued. */
    (void)hk_defer(req->loop, &req->_defer, hk__fs_deferred);
}

static void hk__fs_work_done(hk_work_t *work, int status)
{
    hk_fs_req_t *req = work->data;
    /*
     * -ECANCELED: the work function never ran. A read begun inline has bytes
     * in the buffer all the same: report them, as read(2) would.
     */
    if (status < 0)
        req->result = (req->type == HK_FS_READ || req->type == HK_FS_WRITE) && req->_done > 0
                          ? (int64_t)req->_done
                          : status;
    hk__fs_finish(req);
}

int hk__fs_pool_submit(hk_fs_req_t *req, hk_work_class_t cls, hk_work_fn fn)
{
    memset(&req->_work, 0, sizeof(req->_work));
    req->_work.data = req;
    int err = hk_work_submit(req->loop, req->fs->pool, &req->_work, cls, fn, hk__fs_work_done);
    if (err < 0)
        return err;
    req->_where = HK__FS_AT_POOL;
    req->fs->stats.ops_pool++;
    return 0;
}

int hk_fs_cancel(hk_fs_req_t *req)
{
    if (!req || req->_state != HK__FS_BUSY)
        return -EINVAL;
    if (req->_where != HK__FS_AT_POOL)
        return -EBUSY;
    /*
     * Bytes already read inline (and maybe the file position moved): the read
     * cannot be undone. _inline, not _done: a running worker writes _done.
     */
    if (req->type == HK_FS_READ && req->_inline > 0)
        return -EBUSY;
    return hk_work_cancel(&req->_work);
}
