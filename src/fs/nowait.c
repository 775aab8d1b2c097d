/*
 * Reads served inline with preadv2(RWF_NOWAIT).
 *
 * What the kernel does: with RWF_NOWAIT a buffered read copies what is in the
 * page cache and returns, instead of sleeping for the disk; when the first
 * page is missing it fails with EAGAIN (and starts readahead for it). A
 * cached read costs a memcpy, far less than the two context switches and the
 * wake-up of a thread hop, so we try it on the loop thread first.
 *
 * What goes wrong: a short count is ambiguous, either the end of the file or
 * a page missing from the cache. We ask again at the next offset: 0 means the
 * end (done inline), EAGAIN means a missing page (the rest goes to the
 * backend). EOPNOTSUPP (a file system without nowait reads), EINVAL (flags
 * the kernel does not know, or O_DIRECT alignment) and ENOSYS (no preadv2)
 * send the request to the backend, which reports the real outcome; ENOSYS
 * also turns the attempt off for the whole process, since the kernel will
 * not grow the system call. Any other error is final and reported inline.
 *
 * What else goes wrong: attempts are cheap but not free. A cached 128 KiB
 * copy takes 10-30 us; an attempt on cold data starts readahead (allocating
 * pages, submitting the I/O) before it fails, 30-400 us on the machines we
 * measured. 64 readers submitting at once would hold the loop for
 * milliseconds, and a callback that submits the next read as soon as one
 * completes would copy a whole cached file within one loop iteration
 * (deferred callbacks run before the loop polls again). So each context has
 * a time budget for attempts per loop iteration (an iteration is recognised
 * by hk_loop_now(), which changes only when the loop wakes up); once it is
 * spent, reads go to the backend untried. Reads above HK_FS_INLINE_MAX are
 * never tried.
 *
 * What we do not do: O_DIRECT reads with RWF_NOWAIT still wait for the device
 * after submitting the I/O, so fds opened with O_DIRECT belong in a context
 * made with HK_FS_NO_NOWAIT (docs/fs.md).
 */
#include <sys/uio.h>

#include "fs/internal.h"

/* -1 unknown, 1 works, 0 unsupported: process-wide, as it is the kernel's property. */
static int hk__fs_nowait = -1;

int hk__fs_nowait_state(void)
{
    return __atomic_load_n(&hk__fs_nowait, __ATOMIC_RELAXED);
}

static void hk__fs_nowait_set(int v)
{
    if (__atomic_load_n(&hk__fs_nowait, __ATOMIC_RELAXED) != v)
        __atomic_store_n(&hk__fs_nowait, v, __ATOMIC_RELAXED);
}

static int hk__fs_nowait_try(hk_fs_t *fs, hk_fs_req_t *req);

int hk__fs_nowait_read(hk_fs_req_t *req)
{
    hk_fs_t *fs = req->fs;
    if ((fs->flags & HK_FS_NO_NOWAIT) || hk__fs_nowait_state() == 0)
        return 0;
    uint64_t now = hk_loop_now(fs->loop);
    if (now != fs->budget_epoch) {
        fs->budget_epoch = now;
        fs->budget_used = 0;
    }
    if (req->len > HK_FS_INLINE_MAX || fs->budget_used >= fs->budget_ns) {
        fs->stats.reads_over_budget++;
        return 0;
    }
    uint64_t t0 = hk_time_now();
    int done = hk__fs_nowait_try(fs, req);
    fs->budget_used += hk_time_now() - t0;
    return done;
}

static int hk__fs_nowait_try(hk_fs_t *fs, hk_fs_req_t *req)
{
    /* Bounded: each round either finishes, stops or moves data. */
    for (int eintr = 0; !hk__fs_rw_finished(req);) {
        const struct iovec *iov;
        int cnt;
        hk__fs_rw_segment(req, &iov, &cnt);
        ssize_t n = preadv2(req->fd, iov, cnt, (off_t)hk__fs_rw_offset(req), RWF_NOWAIT);
        if (n > 0) {
            hk__fs_nowait_set(1);
            hk__fs_rw_advance(req, (uint64_t)n);
            req->_inline += (uint64_t)n;
            req->served |= HK_FS_SERVED_INLINE;
            fs->stats.bytes_inline += (uint64_t)n;
            continue;
        }
        if (n == 0) {
            hk__fs_nowait_set(1);
            break; /* end of file */
        }
        int err = errno;
        switch (err) {
        case EINTR:
            if (++eintr < 4)
                continue;
            return 0;
        case EAGAIN:
            hk__fs_nowait_set(1);
            return 0;
        case ENOSYS:
            hk__fs_nowait_set(0);
            return 0;
        case EOPNOTSUPP:
        case EINVAL:
            return 0;
        default:
            req->served |= HK_FS_SERVED_INLINE;
            req->result = req->_done > 0 ? (int64_t)req->_done : -err;
            fs->stats.reads_inline++;
            return 1;
        }
    }
    req->served |= HK_FS_SERVED_INLINE;
    req->result = (int64_t)req->_done;
    fs->stats.reads_inline++;
    return 1;
}
