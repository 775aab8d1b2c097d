/*
 * Reads and writes: argument checks, progress through the caller's iovec
 * array, and the pool path.
 *
 * A read or write may be carried out in pieces by different paths (RWF_NOWAIT
 * inline, then the pool or io_uring), each of which can stop short. The
 * caller's iovec array is borrowed and never modified; progress is an
 * element index and an offset into that element. The next piece is either
 * the caller's array from the index on or, when an element is partly done,
 * that element's rest alone (req->_chunk). So continuing never allocates
 * and never copies the array.
 *
 * Why preadv2/pwritev2 with flags 0 in the pool: unlike preadv they accept
 * offset -1 for "the file position", so one call covers read and pread.
 */
#include <limits.h>
#include <sys/uio.h>

#include "fs/internal.h"

int hk__fs_rw_finished(const hk_fs_req_t *req)
{
    return req->_iov_idx >= req->iovcnt;
}

void hk__fs_rw_segment(hk_fs_req_t *req, const struct iovec **iov, int *cnt)
{
    if (req->_iov_off > 0) {
        const struct iovec *e = &req->iov[req->_iov_idx];
        req->_chunk.iov_base = (char *)e->iov_base + req->_iov_off;
        req->_chunk.iov_len = e->iov_len - req->_iov_off;
        *iov = &req->_chunk;
        *cnt = 1;
    } else {
        *iov = req->iov + req->_iov_idx;
        *cnt = req->iovcnt - req->_iov_idx;
    }
}

int64_t hk__fs_rw_offset(const hk_fs_req_t *req)
{
    return req->offset < 0 ? -1 : req->offset + (int64_t)req->_done;
}

void hk__fs_rw_advance(hk_fs_req_t *req, uint64_t n)
{
    req->_done += n;
    /* Also steps over empty elements, so a finished request has _iov_idx == iovcnt. */
    while (req->_iov_idx < req->iovcnt) {
        size_t left = req->iov[req->_iov_idx].iov_len - req->_iov_off;
        if (n < left) {
            req->_iov_off += (size_t)n;
            break;
        }
        n -= left;
        req->_iov_idx++;
        req->_iov_off = 0;
    }
}

/* Runs on a worker: the rest of the transfer, continuing short counts. */
static void hk__fs_rw_work(hk_work_t *work)
{
    hk_fs_req_t *req = work->data;
    while (!hk__fs_rw_finished(req)) {
        const struct iovec *iov;
        int cnt;
        hk__fs_rw_segment(req, &iov, &cnt);
        off_t off = (off_t)hk__fs_rw_offset(req);
        ssize_t n = req->type == HK_FS_READ ? preadv2(req->fd, iov, cnt, off, 0)
                                            : pwritev2(req->fd, iov, cnt, off, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* As read(2): bytes already moved are reported; the error shows next time. */
            req->result = req->_done > 0 ? (int64_t)req->_done : -errno;
            return;
        }
        if (n == 0)
            break; /* end of file */
        hk__fs_rw_advance(req, (uint64_t)n);
    }
    req->result = (int64_t)req->_done;
}

int hk__fs_rw_to_pool(hk_fs_req_t *req)
{
    int err = hk__fs_pool_submit(req, HK_WORK_FAST, hk__fs_rw_work);
    if (err < 0)
        return err;
    req->served |= HK_FS_SERVED_POOL;
    if (req->type == HK_FS_READ)
        req->fs->stats.reads_pool++;
    else
        req->fs->stats.writes_pool++;
    return 0;
}

int hk__fs_rw_to_backend(hk_fs_req_t *req)
{
    hk_fs_t *fs = req->fs;
    if (fs->uring) {
        int err = hk__fs_uring_queue(req);
        if (err == 0)
            return 0;
        fs->stats.uring_fallbacks++;
    }
    return hk__fs_rw_to_pool(req);
}

/*
 * iov is the caller's array, or a single buffer (iovcnt 1) that is copied
 * into the request once hk__fs_begin has checked that the request is idle.
 */
static int hk__fs_rw_start(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, int fd,
                           const struct iovec *iov, int iovcnt, int single, int64_t offset,
                           hk_fs_cb cb)
{
    if (fd < 0)
        return -EBADF;
    if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX || offset < -1)
        return -EINVAL;
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
        if (iov[i].iov_len > (size_t)SSIZE_MAX || total > (uint64_t)SSIZE_MAX)
            return -EINVAL;
    }
    int err = hk__fs_begin(fs, req, type, cb);
    if (err < 0)
        return err;
    req->fd = fd;
    if (single) {
        req->_iov1 = *iov;
        iov = &req->_iov1;
    }
    req->iov = iov;
    req->iovcnt = iovcnt;
    req->offset = offset;
    req->len = total;
    hk__fs_rw_advance(req, 0); /* skips leading empty elements */
    if (hk__fs_rw_finished(req)) {
        req->result = 0; /* nothing to transfer: no system call, as read(fd, buf, 0) */
        hk__fs_finish_later(req);
        return 0;
    }
    if (type == HK_FS_READ && hk__fs_nowait_read(req)) {
        hk__fs_finish_later(req);
        return 0;
    }
    err = hk__fs_rw_to_backend(req);
    if (err < 0 && req->_done > 0) {
        /* Bytes were read inline and cannot be unread: report them, as read(2) would. */
        req->result = (int64_t)req->_done;
        hk__fs_finish_later(req);
        return 0;
    }
    if (err < 0)
        hk__fs_abort(req);
    else if (req->_inline > 0)
        fs->stats.reads_partial++;
    return err;
}

int hk_fs_readv(hk_fs_t *fs, hk_fs_req_t *req, int fd, const struct iovec *iov, int iovcnt,
                int64_t offset, hk_fs_cb cb)
{
    return hk__fs_rw_start(fs, req, HK_FS_READ, fd, iov, iovcnt, 0, offset, cb);
}

int hk_fs_writev(hk_fs_t *fs, hk_fs_req_t *req, int fd, const struct iovec *iov, int iovcnt,
                 int64_t offset, hk_fs_cb cb)
{
    return hk__fs_rw_start(fs, req, HK_FS_WRITE, fd, iov, iovcnt, 0, offset, cb);
}

static int hk__fs_rw_buf(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, int fd, void *buf,
                         size_t len, int64_t offset, hk_fs_cb cb)
{
    if (!buf && len > 0)
        return -EINVAL;
    struct iovec one = {.iov_base = buf, .iov_len = len};
    return hk__fs_rw_start(fs, req, type, fd, &one, 1, 1, offset, cb);
}

int hk_fs_read(hk_fs_t *fs, hk_fs_req_t *req, int fd, void *buf, size_t len, int64_t offset,
               hk_fs_cb cb)
{
    return hk__fs_rw_buf(fs, req, HK_FS_READ, fd, buf, len, offset, cb);
}

int hk_fs_write(hk_fs_t *fs, hk_fs_req_t *req, int fd, const void *buf, size_t len, int64_t offset,
                hk_fs_cb cb)
{
    return hk__fs_rw_buf(fs, req, HK_FS_WRITE, fd, (void *)buf, len, offset, cb);
}
