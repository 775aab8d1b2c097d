/*
 * hark/fs.h: asynchronous file operations that never block the loop.
 *
 * Regular files are always "ready" to epoll, so a read() on a loop thread
 * that misses the page cache sleeps in the kernel for a disk seek, and every
 * other connection of the loop waits with it. hark's fs module runs each file
 * operation where it cannot stall the loop:
 *
 * - Reads first try preadv2(RWF_NOWAIT) on the loop thread. Data already in
 *   the page cache is copied inline, with no thread hop; EAGAIN, or a short
 *   read that is not the end of the file, sends the rest elsewhere.
 * - The rest goes to the backend: the thread pool (hark/pool.h, the default)
 *   or an io_uring ring whose eventfd sits in the loop's epoll set
 *   (HK_FS_BACKEND_URING, reads and writes only). Where io_uring is missing
 *   or denied (old kernel, seccomp, io_uring_disabled, containers), hk_fs_new
 *   falls back to the pool and hk_fs_stats says why.
 * - Every other operation (open, close, stat, rename, unlink, mkdir, rmdir,
 *   readdir, the whole-file helper, readahead) runs in the pool's
 *   HK_WORK_FAST class; fsync and fdatasync in HK_WORK_SLOW, so a slow flush
 *   never holds up the reads of the process.
 *
 * Requests are structs the caller embeds (hk_fs_req_t): submitting never
 * allocates, except where the result itself is memory (readdir, readfile).
 *
 * Order of completion: the callback always runs later, from the loop, never
 * inside the submitting call, even when the data was served inline (it is
 * then queued with hk_defer and runs after the current callback returns,
 * before the loop sleeps). So code after a submission never races its own
 * callback, whichever path served the request.
 *
 * Errors: a submitting call returns 0, or -errno when the request could not
 * be started (bad arguments, -EBUSY for a request already in flight); then
 * the callback never runs. Everything the kernel reports (ENOENT, EBADF,
 * EISDIR, EACCES, ...) arrives in req->result as -errno, in the callback,
 * the same way on every path and backend. That holds for files and block
 * devices, what this module is for. A non-blocking pipe or socket is not:
 * with no data the pool's read returns -EAGAIN while io_uring waits for data
 * (Linux 6.x arms a poll for it); watch such fds with hk_io or a stream.
 *
 * Memory the request points to (paths, buffers, iovec arrays, the struct
 * stat) is borrowed: it must stay valid until the callback has run.
 *
 * Threads: an hk_fs_t belongs to one loop; call everything on that loop's
 * thread. After fork(), do not use a parent's hk_fs_t in the child.
 */
#ifndef HARK_FS_H
#define HARK_FS_H

#include "hark/api.h"
#include "hark/loop.h"
#include "hark/pool.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Per-loop context                                                         */
/* ------------------------------------------------------------------------ */

typedef struct hk_fs hk_fs_t;

typedef enum hk_fs_backend {
    HK_FS_BACKEND_POOL = 0,  /* blocking calls in the thread pool (default) */
    HK_FS_BACKEND_URING = 1, /* io_uring for reads and writes; the pool for the rest */
} hk_fs_backend_t;

/* Flags of hk_fs_options_t. */
#define HK_FS_NO_NOWAIT 0x1u /* never try RWF_NOWAIT inline: every read goes to the backend */

typedef struct hk_fs_options {
    hk_fs_backend_t backend; /* what to try; see hk_fs_stats() for what is used */
    unsigned flags;          /* HK_FS_NO_NOWAIT */
    unsigned uring_entries;  /* submission queue size; 0 = 256 */
    hk_pool_t *pool;         /* NULL = hk_pool_default(); must outlive the context */
    /*
     * Time the loop may spend in RWF_NOWAIT attempts per loop iteration, in
     * ns (0 = HK_FS_INLINE_BUDGET_NS_DEFAULT). Once spent, reads go to the
     * backend untried until the loop next wakes up. Attempts are not free: a
     * cached copy costs tens of us, and an attempt on cold data starts
     * readahead I/O before failing, up to hundreds of us (docs/fs.md, "The
     * budget", has the figures). Without a cap, 64 readers
     * submitting at once, or a chain of cached reads (each callback
     * submitting the next), would hold the loop for milliseconds.
     */
    uint64_t inline_budget_ns;
} hk_fs_options_t;

#define HK_FS_INLINE_BUDGET_NS_DEFAULT (UINT64_C(200) * 1000)
/* Reads larger than this are never tried inline: the copy alone would take ~100 us. */
#define HK_FS_INLINE_MAX (UINT64_C(1) << 20)

/*
 * Creates the fs context of a loop. opts may be NULL (pool backend, RWF_NOWAIT
 * on). Asking for HK_FS_BACKEND_URING never fails because of io_uring: when
 * the ring cannot be set up, the context uses the pool and records the error
 * in hk_fs_stats().uring_error. The environment variable HARK_FS_URING=0
 * turns io_uring off in the same way (uring_error = -ENOTSUP); so does a
 * failure to watch the ring's eventfd (uring_error = that errno).
 * Errors: -EINVAL (NULL loop or fsp, unknown backend or flag), -ENOMEM.
 */
HK_API int hk_fs_new(hk_loop_t *loop, const hk_fs_options_t *opts, hk_fs_t **fsp);

/*
 * Frees the context. Returns -EBUSY (and frees nothing) while requests are in
 * flight. With the io_uring backend the ring's io watcher is closed like any
 * handle: run the loop once more before hk_loop_free.
 */
HK_API int hk_fs_free(hk_fs_t *fs);

typedef struct hk_fs_stats {
    hk_fs_backend_t backend; /* the backend in use */
    /*
     * Why io_uring is not in use although it was asked for: 0 when it is
     * (or was not asked for), else -errno of the failing setup step:
     * -ENOSYS (no io_uring in this kernel or this build), -EPERM (denied:
     * seccomp, kernel.io_uring_disabled, a container profile), -ENOMEM
     * (locked-memory limit), -ENOTSUP (HARK_FS_URING=0), or the errno of a
     * later io_uring_submit that made the context switch to the pool.
     */
    int uring_error;
    /* RWF_NOWAIT: 1 when the kernel supports it, 0 when it does not or it is off, -1 unknown. */
    int nowait;
    uint64_t reads_inline;      /* reads served entirely on the loop thread by RWF_NOWAIT */
    uint64_t reads_pool;        /* reads (or their rest) sent to the pool */
    uint64_t reads_uring;       /* reads (or their rest) sent to io_uring */
    uint64_t reads_partial;     /* reads begun inline and finished by the backend */
    uint64_t reads_over_budget; /* reads sent to the backend untried: budget spent or too large */
    uint64_t writes_pool;       /* writes run in the pool */
    uint64_t writes_uring;      /* writes run by io_uring */
    uint64_t ops_pool;          /* every pool submission (reads and writes included) */
    uint64_t uring_fallbacks;   /* io_uring requests rerouted to the pool (ring full or broken) */
    uint64_t bytes_inline;      /* bytes read inline */
    uint64_t bytes_backend;     /* bytes read or written by the pool or io_uring */
    uint64_t in_flight;         /* requests submitted whose callback has not run yet */
} hk_fs_stats_t;

/* Copies the counters of the context. */
HK_API int hk_fs_stats(const hk_fs_t *fs, hk_fs_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

typedef enum hk_fs_type {
    HK_FS_NONE = 0,
    HK_FS_OPEN,
    HK_FS_CLOSE,
    HK_FS_STAT,
    HK_FS_LSTAT,
    HK_FS_FSTAT,
    HK_FS_READ,
    HK_FS_WRITE,
    HK_FS_FSYNC,
    HK_FS_FDATASYNC,
    HK_FS_RENAME,
    HK_FS_UNLINK,
    HK_FS_MKDIR,
    HK_FS_RMDIR,
    HK_FS_READDIR,
    HK_FS_READFILE,
    HK_FS_READAHEAD,
    HK_FS_OPENAT,
} hk_fs_type_t;

/* Bits of req->served: which paths did the work of a read or write. */
#define HK_FS_SERVED_INLINE 0x1u /* RWF_NOWAIT on the loop thread */
#define HK_FS_SERVED_POOL 0x2u   /* a pool worker */
#define HK_FS_SERVED_URING 0x4u  /* io_uring */

/* One directory entry of hk_fs_readdir. */
typedef struct hk_fs_dirent {
    const char *name;   /* NUL-terminated, inside the same block as the array */
    unsigned char type; /* DT_REG, DT_DIR, DT_LNK, ... or DT_UNKNOWN (<dirent.h>) */
} hk_fs_dirent_t;

typedef struct hk_fs_req hk_fs_req_t;
typedef void (*hk_fs_cb)(hk_fs_req_t *req);

/* hk_fs_readfile's size limit when max_size is 0. */
#define HK_FS_READFILE_DEFAULT_MAX (UINT64_C(1) << 20)

struct hk_fs_req {
    hk_loop_t *loop;   /* read-only */
    hk_fs_t *fs;       /* read-only */
    void *data;        /* free for the caller */
    hk_fs_type_t type; /* read-only: the last operation */
    /*
     * The outcome, valid in the callback: -errno on failure; on success the
     * new fd (open), bytes transferred (read, write), the number of entries
     * (readdir), the file size (readfile), 0 otherwise. A read returns fewer
     * bytes than asked only at the end of the file, or when an error or a
     * cancellation comes after some bytes were moved: then it is that count
     * (as read(2) does). A cancelled request that moved nothing gives
     * -ECANCELED.
     */
    int64_t result;
    unsigned served; /* HK_FS_SERVED_* bits (reads and writes) */

    /* Arguments, as submitted (read-only). */
    int fd;
    int flags;
    mode_t mode;
    uint64_t resolve; /* openat: RESOLVE_* flags of openat2(2) */
    const char *path;
    const char *new_path;
    const struct iovec *iov;
    int iovcnt;
    int64_t offset; /* -1: the file position */
    uint64_t len;   /* total bytes (read, write), readahead length, readfile limit */
    struct stat *statbuf;

    /* Results that are memory: the caller frees them with free() or hk_fs_req_cleanup. */
    hk_fs_dirent_t *dirents; /* readdir: result entries, one block */
    char *file_data;         /* readfile: result bytes plus a NUL */

    /* Private. */
    hk_fs_cb _cb;
    int _state;
    int _where;
    uint64_t _done;   /* bytes transferred so far */
    uint64_t _inline; /* of which served inline */
    int _iov_idx;     /* progress through iov: element and offset in it */
    size_t _iov_off;
    struct iovec _iov1;  /* the single buffer of hk_fs_read / hk_fs_write */
    struct iovec _chunk; /* the partly done element being continued */
    hk_work_t _work;
    hk_defer_t _defer;
    hk_fs_req_t *_next; /* io_uring: list of prepared, unsubmitted requests */
};

/*
 * Frees the memory a finished request owns (req->dirents, req->file_data)
 * and sets the pointers to NULL. Safe on any idle request.
 */
HK_API void hk_fs_req_cleanup(hk_fs_req_t *req);

/*
 * Cancels a request still queued in the pool: its callback runs later with
 * result -ECANCELED. Returns 0, -EBUSY when it is running, being served
 * inline or by io_uring, or when it is a read whose first part was already
 * served inline (bytes are in the buffer, and for offset -1 the file position
 * moved): it will complete normally. -EINVAL when idle.
 */
HK_API int hk_fs_cancel(hk_fs_req_t *req);

/* ------------------------------------------------------------------------ */
/* Operations. Common errors of every call: -EINVAL (NULL fs, req, cb or     */
/* path, or a bad argument), -EBUSY (req is in flight), -ENOMEM, and the    */
/* errors of hk_work_submit. fd < 0 gives -EBADF.                          */
/* ------------------------------------------------------------------------ */

/* open(2): result is the fd. O_CLOEXEC is added to flags. */
HK_API int hk_fs_open(hk_fs_t *fs, hk_fs_req_t *req, const char *path, int flags, mode_t mode,
                      hk_fs_cb cb);
/*
 * openat2(2) relative to dirfd with RESOLVE_* flags (e.g. RESOLVE_BENEATH so
 * that "..", absolute symlinks or symlinks leading out of dirfd fail with
 * -EXDEV). Tried first on the loop thread with RESOLVE_CACHED, which the
 * kernel serves only from its dentry cache and refuses with EAGAIN rather
 * than read a directory block: a warm path opens without a pool round trip
 * (req->served has HK_FS_SERVED_INLINE), a cold one goes to the pool. flags
 * with O_CREAT, O_TRUNC or O_TMPFILE always go to the pool (RESOLVE_CACHED
 * refuses them). O_CLOEXEC is added. Extra error: -ENOSYS before Linux 5.6.
 */
HK_API int hk_fs_openat(hk_fs_t *fs, hk_fs_req_t *req, int dirfd, const char *path, int flags,
                        mode_t mode, uint64_t resolve, hk_fs_cb cb);
HK_API int hk_fs_close(hk_fs_t *fs, hk_fs_req_t *req, int fd, hk_fs_cb cb);

/* stat(2), lstat(2), fstat(2) into *st. */
HK_API int hk_fs_stat(hk_fs_t *fs, hk_fs_req_t *req, const char *path, struct stat *st,
                      hk_fs_cb cb);
HK_API int hk_fs_lstat(hk_fs_t *fs, hk_fs_req_t *req, const char *path, struct stat *st,
                       hk_fs_cb cb);
HK_API int hk_fs_fstat(hk_fs_t *fs, hk_fs_req_t *req, int fd, struct stat *st, hk_fs_cb cb);

/*
 * read(2) or pread(2) into buf: offset >= 0 reads there, -1 at the file
 * position (and moves it). Tries RWF_NOWAIT inline first, then the backend;
 * the result is the full length unless the file ends first.
 * Errors: -EINVAL (offset < -1, len > SSIZE_MAX).
 */
HK_API int hk_fs_read(hk_fs_t *fs, hk_fs_req_t *req, int fd, void *buf, size_t len, int64_t offset,
                      hk_fs_cb cb);
/* readv(2) / preadv(2). Errors: -EINVAL (iovcnt <= 0 or > IOV_MAX, offset < -1). */
HK_API int hk_fs_readv(hk_fs_t *fs, hk_fs_req_t *req, int fd, const struct iovec *iov, int iovcnt,
                       int64_t offset, hk_fs_cb cb);

/* write(2) / pwrite(2) in the backend; short writes are continued. */
HK_API int hk_fs_write(hk_fs_t *fs, hk_fs_req_t *req, int fd, const void *buf, size_t len,
                       int64_t offset, hk_fs_cb cb);
HK_API int hk_fs_writev(hk_fs_t *fs, hk_fs_req_t *req, int fd, const struct iovec *iov, int iovcnt,
                        int64_t offset, hk_fs_cb cb);

/* fsync(2) and fdatasync(2), in the pool's HK_WORK_SLOW class. */
HK_API int hk_fs_fsync(hk_fs_t *fs, hk_fs_req_t *req, int fd, hk_fs_cb cb);
HK_API int hk_fs_fdatasync(hk_fs_t *fs, hk_fs_req_t *req, int fd, hk_fs_cb cb);

HK_API int hk_fs_rename(hk_fs_t *fs, hk_fs_req_t *req, const char *path, const char *new_path,
                        hk_fs_cb cb);
HK_API int hk_fs_unlink(hk_fs_t *fs, hk_fs_req_t *req, const char *path, hk_fs_cb cb);
HK_API int hk_fs_mkdir(hk_fs_t *fs, hk_fs_req_t *req, const char *path, mode_t mode, hk_fs_cb cb);
HK_API int hk_fs_rmdir(hk_fs_t *fs, hk_fs_req_t *req, const char *path, hk_fs_cb cb);

/*
 * Lists a directory without "." and "..", in the order the file system gives.
 * On success result is the number of entries and req->dirents an array of
 * them in one malloc'd block (names included): free(req->dirents) frees all.
 */
HK_API int hk_fs_readdir(hk_fs_t *fs, hk_fs_req_t *req, const char *path, hk_fs_cb cb);

/*
 * Reads a whole small file in one pool job (open, fstat, read, close). On
 * success result is its size and req->file_data a malloc'd copy with a NUL
 * after the last byte (free it). A file larger than max_size (0 =
 * HK_FS_READFILE_DEFAULT_MAX) gives -EFBIG; files whose size stat does not
 * know (/proc) are read up to max_size + 1 bytes to decide. Returns -EINVAL
 * (besides the common errors) when max_size > SIZE_MAX / 2.
 */
HK_API int hk_fs_readfile(hk_fs_t *fs, hk_fs_req_t *req, const char *path, uint64_t max_size,
                          hk_fs_cb cb);

/*
 * Asks the kernel to read [offset, offset + len) into the page cache
 * (posix_fadvise POSIX_FADV_WILLNEED, in the pool: starting the I/O may block
 * on metadata). len 0 means to the end of the file. Later reads of that range
 * are then served inline. This, not mmap, is how to warm a file: hark never
 * serves from a mapping on a loop thread (see docs/fs.md).
 */
HK_API int hk_fs_readahead(hk_fs_t *fs, hk_fs_req_t *req, int fd, int64_t offset, uint64_t len,
                           hk_fs_cb cb);

#ifdef __cplusplus
}
#endif

#endif
