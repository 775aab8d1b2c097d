/* Private parts of the fs module: the per-loop context and the paths between files. */
#ifndef HK_FS_INTERNAL_H
#define HK_FS_INTERNAL_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hark/fs.h"

/*
 * A request in flight carries this in _state. Requests need no
 * initialisation, so "idle" is anything else: a magic number is what makes
 * -EBUSY reliable on a struct that was never zeroed.
 */
#define HK__FS_BUSY 0x68b5f5a1

/* Where a request in flight is (req->_where), for hk_fs_cancel. */
enum hk__fs_where {
    HK__FS_AT_NONE = 0,
    HK__FS_AT_INLINE, /* served; its callback is deferred */
    HK__FS_AT_POOL,
    HK__FS_AT_URING,
};

struct hk__fs_uring; /* uring.c */

struct hk_fs {
    hk_loop_t *loop;
    hk_pool_t *pool;
    unsigned flags;
    hk_fs_stats_t stats;
    uint64_t budget_ns;         /* time allowed for inline attempts per loop iteration */
    uint64_t budget_epoch;      /* hk_loop_now() of the iteration the budget was counted in */
    uint64_t budget_used;       /* ns spent in this iteration */
    struct hk__fs_uring *uring; /* NULL unless the io_uring backend is in use */
};

/* fs.c */
int hk__fs_begin(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, hk_fs_cb cb);
void hk__fs_abort(hk_fs_req_t *req); /* undoes hk__fs_begin after a failed submission */
void hk__fs_finish(hk_fs_req_t *req);
void hk__fs_finish_later(hk_fs_req_t *req);
int hk__fs_pool_submit(hk_fs_req_t *req, hk_work_class_t cls, hk_work_fn fn);

/* ops.c: the work function of every operation but reads and writes. */
void hk__fs_op_work(hk_work_t *work);
/* openat2(2) of an HK_FS_OPENAT request with extra RESOLVE_* bits: fd or -1 and errno. */
int hk__fs_openat2(const hk_fs_req_t *req, uint64_t extra_resolve);

/* dir.c: the bodies of readdir and readfile, run on a worker. */
void hk__fs_readdir_work(hk_fs_req_t *req);
void hk__fs_readfile_work(hk_fs_req_t *req);

/* rw.c: progress through the iovec array of a read or write. */
int hk__fs_rw_finished(const hk_fs_req_t *req);
void hk__fs_rw_segment(hk_fs_req_t *req, const struct iovec **iov, int *cnt);
int64_t hk__fs_rw_offset(const hk_fs_req_t *req);
void hk__fs_rw_advance(hk_fs_req_t *req, uint64_t n);
/* Sends the rest of a read or write to the backend; 0 or -errno. */
int hk__fs_rw_to_backend(hk_fs_req_t *req);
int hk__fs_rw_to_pool(hk_fs_req_t *req);

/* nowait.c: 1 when the read was completed inline (result set), else 0. */
int hk__fs_nowait_read(hk_fs_req_t *req);
int hk__fs_nowait_state(void);

/* uring.c */
int hk__fs_uring_new(hk_fs_t *fs, unsigned entries);
void hk__fs_uring_free(hk_fs_t *fs);
/* Queues the rest of a read or write on the ring: 0, or -errno to use the pool instead. */
int hk__fs_uring_queue(hk_fs_req_t *req);

#endif
