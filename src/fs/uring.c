/*
 * The io_uring backend for reads and writes.
 *
 * What the kernel does: io_uring takes reads and writes from a shared ring
 * and completes them asynchronously (buffered reads that miss the cache go
 * to its own io-wq kernel threads), posting completions to a second ring. A
 * registered eventfd is signalled whenever a completion is posted, and an
 * eventfd can sit in the loop's epoll set like any fd: so the loop sleeps in
 * epoll_wait as usual and wakes for file completions, with no thread of ours
 * and no futex hand-off.
 *
 * What goes wrong: io_uring may be absent (old kernel, ENOSYS), denied
 * (seccomp profiles of container runtimes, kernel.io_uring_disabled: EPERM),
 * or limited by RLIMIT_MEMLOCK on older kernels (ENOMEM). Each of these shows
 * at setup, so hk_fs_new falls back to the pool and records the errno. A
 * submission that later fails for good (anything but EAGAIN, EBUSY, EINTR)
 * marks the ring broken and reroutes its requests to the pool.
 *
 * A temporary failure (EAGAIN: no kernel memory for requests; EBUSY:
 * completions to reap first) leaves the SQEs in the ring to be submitted
 * later. When requests are in the kernel, the next completion triggers the
 * retry. When none are, no completion will ever come, so a short timer does
 * it (else the loop would wait forever for requests the kernel never saw).
 * The requests cannot simply go to the pool at that point: their SQEs stay in
 * the submission ring and the next io_uring_submit would run them a second
 * time, on requests already completed. So after URING_RETRY_MAX attempts in a
 * row the ring is declared broken (never submitted again) and they go to the
 * pool then.
 *
 * An SQE is first tried inline, inside io_uring_submit on the loop thread,
 * which for a cold buffered read means submitting readahead there (tens to
 * hundreds of microseconds each). Our reads reach the ring only after
 * RWF_NOWAIT failed, so they are cold: every SQE carries IOSQE_ASYNC and
 * goes straight to io-wq.
 *
 * What we do: submissions made during one callback are batched into one
 * io_uring_submit by a deferred flush. No SQPOLL: a kernel thread spinning on
 * the ring burns a core for latency a loop that already wakes on epoll does
 * not need. The eventfd watcher is referenced only while requests are in
 * flight, so an idle ring never keeps hk_loop_run from returning. The ring's
 * memory is separate from the context because the watcher must outlive
 * hk_fs_free until the loop has run its close callback.
 */
#include <stdlib.h>
#include <unistd.h>

#include "fs/internal.h"

#ifdef HK_HAVE_URING

#include <liburing.h>
#include <sys/eventfd.h>

#define URING_RETRY_NS 1000000 /* 1 ms between attempts when nothing is in the kernel */
#define URING_RETRY_MAX 500

struct hk__fs_uring {
    struct io_uring ring;
    hk_fs_t *fs; /* NULL once the context is freed */
    int efd;
    int ring_ok; /* io_uring_queue_init succeeded */
    int broken;  /* a submission failed for good: use the pool */
    int cur_pos; /* IORING_FEAT_RW_CUR_POS: offset -1 means the file position */
    unsigned cq_entries;
    unsigned in_flight;        /* prepared or submitted, not reaped */
    unsigned npending;         /* of which not yet submitted */
    hk_fs_req_t *pending_head; /* prepared, not yet submitted, in ring order */
    hk_fs_req_t **pending_tail;
    unsigned retries; /* temporary submit failures in a row with nothing in the kernel */
    int fail_submits; /* test hook (HARK_FS_URING_SUBMIT_EAGAIN): fake -EAGAIN this often */
    int handles;      /* io and retry timer not yet closed: memory lives until 0 */
    hk_defer_t flush;
    hk_timer_t retry;
    hk_io_t io;
};

static void hk__fs_uring_release(struct hk__fs_uring *u)
{
    if (u->ring_ok)
        io_uring_queue_exit(&u->ring);
    if (u->efd >= 0)
        close(u->efd);
    free(u);
}

static void hk__fs_uring_closed(hk_handle_t *h)
{
    struct hk__fs_uring *u = h->data;
    if (--u->handles == 0)
        hk__fs_uring_release(u);
}

static int hk__fs_uring_submit_once(struct hk__fs_uring *u)
{
    if (u->fail_submits > 0) {
        u->fail_submits--;
        return -EAGAIN;
    }
    return io_uring_submit(&u->ring);
}

/* Moves requests whose SQEs the kernel will never see to the pool. */
static void hk__fs_uring_reroute(struct hk__fs_uring *u)
{
    hk_fs_req_t *req = u->pending_head;
    u->pending_head = NULL;
    u->pending_tail = &u->pending_head;
    while (req) {
        hk_fs_req_t *next = req->_next;
        req->_next = NULL;
        u->in_flight--;
        u->npending--;
        req->fs->stats.uring_fallbacks++;
        int err = hk__fs_rw_to_pool(req);
        if (err < 0) {
            req->result = req->_done > 0 ? (int64_t)req->_done : err;
            hk__fs_finish_later(req);
        }
        req = next;
    }
    if (u->in_flight == 0)
        hk_unref(&u->io.base);
}

static void hk__fs_uring_submit(struct hk__fs_uring *u);

static void hk__fs_uring_on_retry(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    struct hk__fs_uring *u = t->base.data;
    if (u->fs)
        hk__fs_uring_submit(u);
}

static void hk__fs_uring_submit(struct hk__fs_uring *u)
{
    while (u->pending_head) {
        int n = hk__fs_uring_submit_once(u);
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN || n == -EBUSY) {
            /* Requests in the kernel: their completions trigger the retry (on_event). */
            if (u->in_flight > u->npending)
                return;
            /* Nothing will complete: retry on a timer, which keeps the loop running. */
            if (++u->retries <= URING_RETRY_MAX &&
                (hk_is_active(&u->retry.base) ||
                 hk_timer_start_in(&u->retry, hk__fs_uring_on_retry, URING_RETRY_NS, 0) == 0))
                return;
            /* Give up on the ring, as for a hard error: see the top of the file. */
        }
        if (n < 0) {
            u->broken = 1;
            if (u->fs) {
                u->fs->stats.uring_error = n;
                u->fs->stats.backend = HK_FS_BACKEND_POOL;
            }
            hk__fs_uring_reroute(u);
            return;
        }
        u->retries = 0;
        if (hk_is_active(&u->retry.base))
            (void)hk_timer_stop(&u->retry);
        /* The kernel consumes SQEs in order: the first n pending requests are in. */
        for (int i = 0; i < n && u->pending_head; i++) {
            hk_fs_req_t *req = u->pending_head;
            u->pending_head = req->_next;
            req->_next = NULL;
            u->npending--;
        }
        if (!u->pending_head)
            u->pending_tail = &u->pending_head;
        if (n == 0)
            return;
    }
}

static void hk__fs_uring_flush(hk_defer_t *d)
{
    hk__fs_uring_submit(d->data);
}

static void hk__fs_uring_prep(struct hk__fs_uring *u, struct io_uring_sqe *sqe, hk_fs_req_t *req)
{
    const struct iovec *iov;
    int cnt;
    hk__fs_rw_segment(req, &iov, &cnt);
    /* The kernel copies the iovec array when it consumes the SQE, which is before the
       next change of req->_chunk: a request has one SQE outstanding at a time. */
    uint64_t off = (uint64_t)hk__fs_rw_offset(req);
    if (req->type == HK_FS_READ)
        io_uring_prep_readv(sqe, req->fd, iov, (unsigned)cnt, off);
    else
        io_uring_prep_writev(sqe, req->fd, iov, (unsigned)cnt, off);
    /* Straight to io-wq: otherwise io_uring_submit tries the read on the loop thread first. */
    sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data(sqe, req);
    *u->pending_tail = req;
    u->pending_tail = &req->_next;
    req->_next = NULL;
    u->npending++;
    if (u->in_flight++ == 0)
        hk_ref(&u->io.base);
    (void)hk_defer(req->loop, &u->flush, hk__fs_uring_flush); /* -EBUSY: already queued */
}

/* Prepares the next piece of req; 0, or -errno when the ring cannot take it. */
static int hk__fs_uring_push(struct hk__fs_uring *u, hk_fs_req_t *req)
{
    if (u->broken)
        return -EIO;
    if (req->offset < 0 && !u->cur_pos)
        return -ENOTSUP;
    /* Never more in flight than the completion ring holds: no overflow to handle. */
    if (u->in_flight >= u->cq_entries)
        return -EAGAIN;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        hk__fs_uring_submit(u);
        if (u->broken)
            return -EIO;
        sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            return -EAGAIN;
    }
    hk__fs_uring_prep(u, sqe, req);
    req->_where = HK__FS_AT_URING;
    return 0;
}

int hk__fs_uring_queue(hk_fs_req_t *req)
{
    struct hk__fs_uring *u = req->fs->uring;
    int err = hk__fs_uring_push(u, req);
    if (err < 0)
        return err;
    req->served |= HK_FS_SERVED_URING;
    if (req->type == HK_FS_READ)
        req->fs->stats.reads_uring++;
    else
        req->fs->stats.writes_uring++;
    return 0;
}

/* One completion: continue a short transfer, or finish the request. */
static void hk__fs_uring_complete(struct hk__fs_uring *u, hk_fs_req_t *req, int res)
{
    if (res == -EAGAIN || res == -EINTR || res > 0) {
        if (res > 0)
            hk__fs_rw_advance(req, (uint64_t)res);
        if (!hk__fs_rw_finished(req)) {
            if (hk__fs_uring_push(u, req) == 0)
                return;
            req->fs->stats.uring_fallbacks++;
            int err = hk__fs_rw_to_pool(req);
            if (err == 0)
                return;
            res = err;
        }
    }
    if (res < 0)
        req->result = req->_done > 0 ? (int64_t)req->_done : res;
    else
        req->result = (int64_t)req->_done; /* done, or 0: end of file */
    hk__fs_finish(req);
}

static void hk__fs_uring_on_event(hk_io_t *io, unsigned revents)
{
    (void)revents;
    struct hk__fs_uring *u = io->base.data;
    uint64_t v;
    /* Drain first: a completion posted after the last peek below signals again. */
    ssize_t r = read(u->efd, &v, sizeof(v));
    (void)r;
    struct io_uring_cqe *cqe;
    while (u->fs && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        hk_fs_req_t *req = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        if (--u->in_flight == 0)
            hk_unref(&u->io.base);
        hk__fs_uring_complete(u, req, res);
    }
    if (u->fs && u->pending_head)
        (void)hk_defer(io->base.loop, &u->flush, hk__fs_uring_flush);
}

int hk__fs_uring_new(hk_fs_t *fs, unsigned entries)
{
    const char *env = getenv("HARK_FS_URING");
    if (env && env[0] == '0' && env[1] == 0)
        return -ENOTSUP;
    struct hk__fs_uring *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->efd = -1;
    u->fs = fs;
    const char *fail = getenv("HARK_FS_URING_SUBMIT_EAGAIN");
    if (fail)
        u->fail_submits = atoi(fail);
    u->pending_tail = &u->pending_head;
    u->flush.data = u;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    int err = io_uring_queue_init_params(entries, &u->ring, &p);
    if (err < 0) {
        hk__fs_uring_release(u);
        return err;
    }
    u->ring_ok = 1;
    u->cq_entries = p.cq_entries;
    u->cur_pos = (p.features & IORING_FEAT_RW_CUR_POS) != 0;
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0) {
        err = -errno;
        hk__fs_uring_release(u);
        return err;
    }
    err = io_uring_register_eventfd(&u->ring, u->efd);
    if (err < 0) {
        hk__fs_uring_release(u);
        return err;
    }
    err = hk_timer_init(fs->loop, &u->retry);
    if (err < 0) {
        hk__fs_uring_release(u);
        return err;
    }
    u->retry.base.data = u;
    u->handles = 1;
    err = hk_io_init(fs->loop, &u->io, u->efd);
    if (err == 0) {
        u->handles = 2;
        u->io.base.data = u;
        err = hk_io_start(&u->io, HK_READABLE, hk__fs_uring_on_event);
    }
    if (err < 0) {
        /* The watchers are handles now: their memory lives until their close callbacks. */
        u->fs = NULL;
        hk_close(&u->retry.base, hk__fs_uring_closed);
        if (u->handles == 2)
            hk_close(&u->io.base, hk__fs_uring_closed);
        return err;
    }
    hk_unref(&u->io.base);
    fs->uring = u;
    return 0;
}

void hk__fs_uring_free(hk_fs_t *fs)
{
    struct hk__fs_uring *u = fs->uring;
    if (!u)
        return;
    fs->uring = NULL;
    u->fs = NULL;
    (void)hk_defer_cancel(fs->loop, &u->flush); /* -EALREADY when not queued */
    hk_close(&u->retry.base, hk__fs_uring_closed);
    hk_close(&u->io.base, hk__fs_uring_closed);
}

#else /* !HK_HAVE_URING */

int hk__fs_uring_new(hk_fs_t *fs, unsigned entries)
{
    (void)fs;
    (void)entries;
    const char *env = getenv("HARK_FS_URING");
    if (env && env[0] == '0' && env[1] == 0)
        return -ENOTSUP;
    return -ENOSYS; /* built without liburing */
}

void hk__fs_uring_free(hk_fs_t *fs)
{
    (void)fs;
}

int hk__fs_uring_queue(hk_fs_req_t *req)
{
    (void)req;
    return -ENOSYS;
}

#endif
