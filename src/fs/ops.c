/*
 * Operations on paths and whole fds: open, close, stat, fsync, rename, ...
 *
 * Why none of them runs on the loop thread: each may wait for the disk or the
 * network even when it looks like bookkeeping. open and stat walk the path
 * and read directory blocks and inodes that may not be cached; close of the
 * last reference flushes on NFS and FUSE; unlink of a large file frees its
 * extents. There is no RWF_NOWAIT for them, so they go to the pool:
 * HK_WORK_FAST for all but fsync and fdatasync, which can take seconds on a
 * busy disk and use HK_WORK_SLOW so that they never occupy the workers that
 * reads need.
 */
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <unistd.h>

#include "fs/internal.h"

void hk__fs_op_work(hk_work_t *work)
{
    hk_fs_req_t *req = work->data;
    int r;
    switch (req->type) {
    case HK_FS_OPEN:
        r = open(req->path, req->flags | O_CLOEXEC, req->mode);
        break;
    case HK_FS_OPENAT:
        r = hk__fs_openat2(req, 0);
        break;
    case HK_FS_CLOSE:
        r = close(req->fd);
        /* Linux frees the fd even when close reports EINTR: retrying could close a reused fd. */
        if (r < 0 && errno == EINTR)
            r = 0;
        break;
    case HK_FS_STAT:
        r = stat(req->path, req->statbuf);
        break;
    case HK_FS_LSTAT:
        r = lstat(req->path, req->statbuf);
        break;
    case HK_FS_FSTAT:
        r = fstat(req->fd, req->statbuf);
        break;
    case HK_FS_FSYNC:
        r = fsync(req->fd);
        break;
    case HK_FS_FDATASYNC:
        r = fdatasync(req->fd);
        break;
    case HK_FS_RENAME:
        r = rename(req->path, req->new_path);
        break;
    case HK_FS_UNLINK:
        r = unlink(req->path);
        break;
    case HK_FS_MKDIR:
        r = mkdir(req->path, req->mode);
        break;
    case HK_FS_RMDIR:
        r = rmdir(req->path);
        break;
    case HK_FS_READAHEAD:
        /* posix_fadvise returns the error number instead of setting errno. */
        r = posix_fadvise(req->fd, (off_t)req->offset, (off_t)req->len, POSIX_FADV_WILLNEED);
        req->result = -r;
        return;
    case HK_FS_READDIR:
        hk__fs_readdir_work(req);
        return;
    case HK_FS_READFILE:
        hk__fs_readfile_work(req);
        return;
    default:
        r = -1;
        errno = EINVAL;
        break;
    }
    req->result = r < 0 ? -errno : r;
}

/* Submits a prepared request to the pool; on failure the request is idle again. */
static int hk__fs_op_submit(hk_fs_req_t *req, hk_work_class_t cls)
{
    int err = hk__fs_pool_submit(req, cls, hk__fs_op_work);
    if (err < 0)
        hk__fs_abort(req);
    return err;
}

static int hk__fs_path_op(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, const char *path,
                          hk_fs_cb cb)
{
    if (!path)
        return -EINVAL;
    int err = hk__fs_begin(fs, req, type, cb);
    if (err < 0)
        return err;
    req->path = path;
    return 0;
}

static int hk__fs_fd_op(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, int fd, hk_fs_cb cb)
{
    if (fd < 0)
        return -EBADF;
    int err = hk__fs_begin(fs, req, type, cb);
    if (err < 0)
        return err;
    req->fd = fd;
    return 0;
}

int hk_fs_open(hk_fs_t *fs, hk_fs_req_t *req, const char *path, int flags, mode_t mode, hk_fs_cb cb)
{
    int err = hk__fs_path_op(fs, req, HK_FS_OPEN, path, cb);
    if (err < 0)
        return err;
    req->flags = flags;
    req->mode = mode;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk__fs_openat2(const hk_fs_req_t *req, uint64_t extra_resolve)
{
    struct open_how how = {
        .flags = (uint64_t)(unsigned)(req->flags | O_CLOEXEC),
        .mode = (req->flags & (O_CREAT | O_TMPFILE)) ? req->mode : 0,
        .resolve = req->resolve | extra_resolve,
    };
    long r;
    do
        r = syscall(SYS_openat2, req->fd, req->path, &how, sizeof(how));
    while (r < 0 && errno == EINTR);
    return (int)r;
}

/*
 * The open tried on the loop thread. RESOLVE_CACHED keeps the path walk in
 * the dentry cache, but the open itself may still sleep: a FIFO opened for
 * reading waits for a writer, and so may a device or a FUSE file. So it is
 * made with O_NONBLOCK, and kept only for a regular file or a directory
 * (where the flag changes nothing but is cleared again, as asked); anything
 * else goes to the pool, opened there blocking as the caller meant.
 *
 * Why the type is checked before the open, through an O_PATH fd: opening is
 * not free of effects even with O_NONBLOCK. An open of a FIFO releases a
 * peer waiting in its own open, and closing it again at once leaves that
 * peer alone: a reader sees end of file before the real writer arrives (and
 * then the pool's open waits for a reader that has gone), a writer gets
 * EPIPE. Closing a device may hang up a line or rewind a tape. An O_PATH open
 * runs no file open at all. The check after the open stays, for a path
 * replaced in between.
 *
 * Returns the fd, -EAGAIN (go to the pool: not cached, or not a regular
 * file), -EINVAL (no RESOLVE_CACHED: go to the pool) or a definite -errno.
 */
static int hk__fs_open_on_loop(hk_fs_req_t *req)
{
    int asked = req->flags;
    bool added = !(asked & O_NONBLOCK);
    if (added) {
        /* The same walk (same dirfd, path and RESOLVE_* flags), so the same path errors. */
        req->flags = O_PATH | (asked & (O_DIRECTORY | O_NOFOLLOW));
        int pfd = hk__fs_openat2(req, RESOLVE_CACHED);
        int err = pfd < 0 ? -errno : 0;
        req->flags = asked;
        if (pfd < 0)
            return err;
        struct stat st;
        bool plain = fstat(pfd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
        close(pfd);
        if (!plain)
            return -EAGAIN;
    }
    req->flags = asked | O_NONBLOCK;
    int fd = hk__fs_openat2(req, RESOLVE_CACHED);
    int err = fd < 0 ? -errno : 0;
    req->flags = asked;
    if (fd < 0)
        return err == -ENXIO && added ? -EAGAIN : err; /* ENXIO: a FIFO with no reader yet */
    if (!added)
        return fd;
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
        fcntl(fd, F_SETFL, asked & (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME)) == 0)
        return fd;
    close(fd);
    return -EAGAIN;
}

int hk_fs_openat(hk_fs_t *fs, hk_fs_req_t *req, int dirfd, const char *path, int flags, mode_t mode,
                 uint64_t resolve, hk_fs_cb cb)
{
    int err = hk__fs_path_op(fs, req, HK_FS_OPENAT, path, cb);
    if (err < 0)
        return err;
    req->fd = dirfd;
    req->flags = flags;
    req->mode = mode;
    req->resolve = resolve;
    if (!(flags & (O_CREAT | O_TRUNC | O_TMPFILE))) {
        int r = hk__fs_open_on_loop(req);
        if (r >= 0 || (r != -EAGAIN && r != -EINVAL)) {
            /* Done from the dentry cache (or a definite error): no pool round trip. */
            req->result = r;
            req->served = HK_FS_SERVED_INLINE;
            hk__fs_finish_later(req);
            return 0;
        }
    }
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_close(hk_fs_t *fs, hk_fs_req_t *req, int fd, hk_fs_cb cb)
{
    int err = hk__fs_fd_op(fs, req, HK_FS_CLOSE, fd, cb);
    return err < 0 ? err : hk__fs_op_submit(req, HK_WORK_FAST);
}

static int hk__fs_stat_op(hk_fs_t *fs, hk_fs_req_t *req, hk_fs_type_t type, const char *path,
                          struct stat *st, hk_fs_cb cb)
{
    if (!st)
        return -EINVAL;
    int err = hk__fs_path_op(fs, req, type, path, cb);
    if (err < 0)
        return err;
    req->statbuf = st;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_stat(hk_fs_t *fs, hk_fs_req_t *req, const char *path, struct stat *st, hk_fs_cb cb)
{
    return hk__fs_stat_op(fs, req, HK_FS_STAT, path, st, cb);
}

int hk_fs_lstat(hk_fs_t *fs, hk_fs_req_t *req, const char *path, struct stat *st, hk_fs_cb cb)
{
    return hk__fs_stat_op(fs, req, HK_FS_LSTAT, path, st, cb);
}

int hk_fs_fstat(hk_fs_t *fs, hk_fs_req_t *req, int fd, struct stat *st, hk_fs_cb cb)
{
    if (!st)
        return -EINVAL;
    int err = hk__fs_fd_op(fs, req, HK_FS_FSTAT, fd, cb);
    if (err < 0)
        return err;
    req->statbuf = st;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_fsync(hk_fs_t *fs, hk_fs_req_t *req, int fd, hk_fs_cb cb)
{
    int err = hk__fs_fd_op(fs, req, HK_FS_FSYNC, fd, cb);
    return err < 0 ? err : hk__fs_op_submit(req, HK_WORK_SLOW);
}

int hk_fs_fdatasync(hk_fs_t *fs, hk_fs_req_t *req, int fd, hk_fs_cb cb)
{
    int err = hk__fs_fd_op(fs, req, HK_FS_FDATASYNC, fd, cb);
    return err < 0 ? err : hk__fs_op_submit(req, HK_WORK_SLOW);
}

int hk_fs_rename(hk_fs_t *fs, hk_fs_req_t *req, const char *path, const char *new_path, hk_fs_cb cb)
{
    if (!new_path)
        return -EINVAL;
    int err = hk__fs_path_op(fs, req, HK_FS_RENAME, path, cb);
    if (err < 0)
        return err;
    req->new_path = new_path;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_unlink(hk_fs_t *fs, hk_fs_req_t *req, const char *path, hk_fs_cb cb)
{
    int err = hk__fs_path_op(fs, req, HK_FS_UNLINK, path, cb);
    return err < 0 ? err : hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_mkdir(hk_fs_t *fs, hk_fs_req_t *req, const char *path, mode_t mode, hk_fs_cb cb)
{
    int err = hk__fs_path_op(fs, req, HK_FS_MKDIR, path, cb);
    if (err < 0)
        return err;
    req->mode = mode;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_rmdir(hk_fs_t *fs, hk_fs_req_t *req, const char *path, hk_fs_cb cb)
{
    int err = hk__fs_path_op(fs, req, HK_FS_RMDIR, path, cb);
    return err < 0 ? err : hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_readdir(hk_fs_t *fs, hk_fs_req_t *req, const char *path, hk_fs_cb cb)
{
    int err = hk__fs_path_op(fs, req, HK_FS_READDIR, path, cb);
    return err < 0 ? err : hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_readfile(hk_fs_t *fs, hk_fs_req_t *req, const char *path, uint64_t max_size, hk_fs_cb cb)
{
    if (max_size > (uint64_t)SIZE_MAX / 2)
        return -EINVAL;
    int err = hk__fs_path_op(fs, req, HK_FS_READFILE, path, cb);
    if (err < 0)
        return err;
    req->len = max_size ? max_size : HK_FS_READFILE_DEFAULT_MAX;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}

int hk_fs_readahead(hk_fs_t *fs, hk_fs_req_t *req, int fd, int64_t offset, uint64_t len,
                    hk_fs_cb cb)
{
    if (offset < 0 || len > (uint64_t)INT64_MAX)
        return -EINVAL;
    int err = hk__fs_fd_op(fs, req, HK_FS_READAHEAD, fd, cb);
    if (err < 0)
        return err;
    req->offset = offset;
    req->len = len;
    return hk__fs_op_submit(req, HK_WORK_FAST);
}
