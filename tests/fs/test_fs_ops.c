/*
 * fs operations end to end, every error path as -errno in the callback, and
 * the submission contract: a call that fails never runs its callback, and a
 * callback never runs inside the call that submitted it.
 */
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdatomic.h>

#include "util.h"

static struct fx fx;

static void setup_pool(void)
{
    fx_setup(&fx, HK_FS_BACKEND_POOL, 0);
}

static void teardown(void)
{
    fx_teardown(&fx);
}

/* Submits with the given expression (req, d in scope) and waits for the callback. */
#define RUN(call)                                                                                  \
    do {                                                                                           \
        memset(&d, 0, sizeof(d));                                                                  \
        req.data = &d;                                                                             \
        int _rc = (call);                                                                          \
        cr_assert_eq(_rc, 0, "%s: %s", #call, hk_strerror(_rc));                                   \
        cr_assert_eq(d.calls, 0, "callback ran inside the call");                                  \
        fx_wait(&fx, &d);                                                                          \
    } while (0)

Test(fs_ops, roundtrip)
{
    setup_pool();
    hk_fs_req_t req;
    struct done d;
    char path[512], path2[512], sub[512];
    fx_path(&fx, path, sizeof(path), "a.txt");
    fx_path(&fx, path2, sizeof(path2), "b.txt");
    fx_path(&fx, sub, sizeof(sub), "sub");

    RUN(hk_fs_open(fx.fs, &req, path, O_RDWR | O_CREAT | O_TRUNC, 0600, fx_on_done));
    cr_assert_geq(d.result, 0);
    int fd = (int)d.result;
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);

    const char msg[] = "hello, hark";
    RUN(hk_fs_write(fx.fs, &req, fd, msg, sizeof(msg) - 1, -1, fx_on_done));
    cr_assert_eq(d.result, (int64_t)sizeof(msg) - 1);
    RUN(hk_fs_write(fx.fs, &req, fd, "H", 1, 0, fx_on_done));
    cr_assert_eq(d.result, 1);
    RUN(hk_fs_fsync(fx.fs, &req, fd, fx_on_done));
    cr_assert_eq(d.result, 0);
    RUN(hk_fs_fdatasync(fx.fs, &req, fd, fx_on_done));
    cr_assert_eq(d.result, 0);

    struct stat st;
    RUN(hk_fs_fstat(fx.fs, &req, fd, &st, fx_on_done));
    cr_assert_eq(d.result, 0);
    cr_assert_eq(st.st_size, (off_t)sizeof(msg) - 1);
    cr_assert(S_ISREG(st.st_mode));

    char buf[64] = {0};
    RUN(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), 0, fx_on_done));
    cr_assert_eq(d.result, (int64_t)sizeof(msg) - 1);
    cr_assert_str_eq(buf, "Hello, hark");

    /* read at the file position: the position is at the end after the first write */
    RUN(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), -1, fx_on_done));
    cr_assert_eq(d.result, 0);

    RUN(hk_fs_close(fx.fs, &req, fd, fx_on_done));
    cr_assert_eq(d.result, 0);
    cr_assert_eq(fcntl(fd, F_GETFD), -1);

    RUN(hk_fs_rename(fx.fs, &req, path, path2, fx_on_done));
    cr_assert_eq(d.result, 0);
    RUN(hk_fs_stat(fx.fs, &req, path2, &st, fx_on_done));
    cr_assert_eq(d.result, 0);
    cr_assert_eq(st.st_size, (off_t)sizeof(msg) - 1);
    RUN(hk_fs_mkdir(fx.fs, &req, sub, 0700, fx_on_done));
    cr_assert_eq(d.result, 0);
    RUN(hk_fs_lstat(fx.fs, &req, sub, &st, fx_on_done));
    cr_assert_eq(d.result, 0);
    cr_assert(S_ISDIR(st.st_mode));
    RUN(hk_fs_rmdir(fx.fs, &req, sub, fx_on_done));
    cr_assert_eq(d.result, 0);
    RUN(hk_fs_unlink(fx.fs, &req, path2, fx_on_done));
    cr_assert_eq(d.result, 0);
    cr_assert_eq(access(path2, F_OK), -1);

    hk_fs_stats_t s;
    cr_assert_eq(hk_fs_stats(fx.fs, &s), 0);
    cr_assert_eq(s.in_flight, 0);
    cr_assert_eq(s.backend, HK_FS_BACKEND_POOL);
    cr_assert_eq(s.writes_pool, 2);
    teardown();
}

/* Every kernel error reaches the callback as -errno; run on both backends. */
static void error_paths(void)
{
    hk_fs_req_t req;
    struct done d;
    char path[512], file[512], sub[512], missing[512];
    fx_path(&fx, missing, sizeof(missing), "missing");
    fx_path(&fx, file, sizeof(file), "f");
    fx_path(&fx, sub, sizeof(sub), "d");
    fx_make_file(file, 100, 1);
    cr_assert_eq(mkdir(sub, 0700), 0);
    fx_path(&fx, path, sizeof(path), "d/x");
    fx_make_file(path, 1, 1);

    struct stat st;
    char buf[16];
    RUN(hk_fs_open(fx.fs, &req, missing, O_RDONLY, 0, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    RUN(hk_fs_open(fx.fs, &req, sub, O_WRONLY, 0, fx_on_done));
    cr_assert_eq(d.result, -EISDIR);
    RUN(hk_fs_open(fx.fs, &req, file, O_RDONLY | O_CREAT | O_EXCL, 0600, fx_on_done));
    cr_assert_eq(d.result, -EEXIST);
    RUN(hk_fs_stat(fx.fs, &req, missing, &st, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    RUN(hk_fs_unlink(fx.fs, &req, missing, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    RUN(hk_fs_unlink(fx.fs, &req, sub, fx_on_done));
    cr_assert_eq(d.result, -EISDIR);
    RUN(hk_fs_rename(fx.fs, &req, missing, file, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    RUN(hk_fs_mkdir(fx.fs, &req, sub, 0700, fx_on_done));
    cr_assert_eq(d.result, -EEXIST);
    RUN(hk_fs_rmdir(fx.fs, &req, sub, fx_on_done));
    cr_assert_eq(d.result, -ENOTEMPTY);
    RUN(hk_fs_rmdir(fx.fs, &req, file, fx_on_done));
    cr_assert_eq(d.result, -ENOTDIR);
    RUN(hk_fs_readdir(fx.fs, &req, file, fx_on_done));
    cr_assert_eq(d.result, -ENOTDIR);
    cr_assert_null(req.dirents);
    RUN(hk_fs_readdir(fx.fs, &req, missing, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    RUN(hk_fs_readfile(fx.fs, &req, missing, 0, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    RUN(hk_fs_readfile(fx.fs, &req, sub, 0, fx_on_done));
    cr_assert_eq(d.result, -EISDIR);
    RUN(hk_fs_readfile(fx.fs, &req, file, 99, fx_on_done));
    cr_assert_eq(d.result, -EFBIG);
    cr_assert_null(req.file_data);

    /* fds: a number that is not open, a directory, a read-only file */
    int bad = 1000;
    while (fcntl(bad, F_GETFD) != -1)
        bad++;
    RUN(hk_fs_read(fx.fs, &req, bad, buf, sizeof(buf), 0, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_read(fx.fs, &req, bad, buf, sizeof(buf), -1, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_write(fx.fs, &req, bad, buf, sizeof(buf), 0, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_fstat(fx.fs, &req, bad, &st, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_fsync(fx.fs, &req, bad, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_fdatasync(fx.fs, &req, bad, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_readahead(fx.fs, &req, bad, 0, 0, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_close(fx.fs, &req, bad, fx_on_done));
    cr_assert_eq(d.result, -EBADF);

    int dfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    RUN(hk_fs_read(fx.fs, &req, dfd, buf, sizeof(buf), 0, fx_on_done));
    cr_assert_eq(d.result, -EISDIR);
    struct iovec iov[2] = {{buf, 4}, {buf + 4, 4}};
    RUN(hk_fs_readv(fx.fs, &req, dfd, iov, 2, -1, fx_on_done));
    cr_assert_eq(d.result, -EISDIR);
    close(dfd);
    int rfd = open(file, O_RDONLY | O_CLOEXEC);
    RUN(hk_fs_write(fx.fs, &req, rfd, "x", 1, 0, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    RUN(hk_fs_writev(fx.fs, &req, rfd, iov, 2, -1, fx_on_done));
    cr_assert_eq(d.result, -EBADF);
    close(rfd);

    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    cr_assert_eq(s.in_flight, 0);
}

Test(fs_ops, errors_pool)
{
    setup_pool();
    error_paths();
    teardown();
}

static void setup_uring(void)
{
    fx_setup(&fx, HK_FS_BACKEND_URING, 0);
}

Test(fs_ops, errors_uring)
{
    setup_uring();
    error_paths();
    teardown();
}

static void setup_uring_nonowait(void)
{
    fx_setup(&fx, HK_FS_BACKEND_URING, HK_FS_NO_NOWAIT);
}

Test(fs_ops, errors_uring_no_nowait)
{
    setup_uring_nonowait();
    error_paths();
    teardown();
}

static int never_calls;
static void never(hk_fs_req_t *req)
{
    (void)req;
    never_calls++;
}

Test(fs_ops, failed_submission_never_calls_back)
{
    setup_pool();
    hk_fs_req_t req;
    struct stat st;
    char buf[8];
    struct iovec iov = {buf, sizeof(buf)};
    char path[512];
    fx_path(&fx, path, sizeof(path), "f");
    fx_make_file(path, 16, 3);
    int fd = open(path, O_RDWR | O_CLOEXEC);

    cr_assert_eq(hk_fs_open(NULL, &req, path, O_RDONLY, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_open(fx.fs, NULL, path, O_RDONLY, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_open(fx.fs, &req, path, O_RDONLY, 0, NULL), -EINVAL);
    cr_assert_eq(hk_fs_open(fx.fs, &req, NULL, O_RDONLY, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_stat(fx.fs, &req, path, NULL, never), -EINVAL);
    cr_assert_eq(hk_fs_fstat(fx.fs, &req, -1, &st, never), -EBADF);
    cr_assert_eq(hk_fs_close(fx.fs, &req, -1, never), -EBADF);
    cr_assert_eq(hk_fs_fsync(fx.fs, &req, -3, never), -EBADF);
    cr_assert_eq(hk_fs_read(fx.fs, &req, -1, buf, sizeof(buf), 0, never), -EBADF);
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), -2, never), -EINVAL);
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, NULL, 8, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_readv(fx.fs, &req, fd, &iov, 0, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_readv(fx.fs, &req, fd, &iov, IOV_MAX + 1, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_readv(fx.fs, &req, fd, NULL, 1, 0, never), -EINVAL);
    struct iovec huge[2] = {{buf, SSIZE_MAX}, {buf, 2}};
    cr_assert_eq(hk_fs_writev(fx.fs, &req, fd, huge, 2, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_rename(fx.fs, &req, path, NULL, never), -EINVAL);
    cr_assert_eq(hk_fs_readahead(fx.fs, &req, fd, -1, 0, never), -EINVAL);
    cr_assert_eq(hk_fs_cancel(&req), -EINVAL);

    /* A request in flight is refused, and its own callback still runs once. */
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_stat(fx.fs, &req, path, &st, fx_on_done), 0);
    cr_assert_eq(hk_fs_stat(fx.fs, &req, path, &st, never), -EBUSY);
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), 0, never), -EBUSY);
    cr_assert_eq(hk_fs_free(fx.fs), -EBUSY);
    fx_wait(&fx, &d);
    cr_assert_eq(d.result, 0);

    /* A cached read completes inline, but still not inside the call. */
    memset(&d, 0, sizeof(d));
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), 0, fx_on_done), 0);
    cr_assert_eq(d.calls, 0);
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), 0, never), -EBUSY);
    fx_wait(&fx, &d);
    cr_assert_eq(d.result, 8);

    for (int i = 0; i < 5; i++)
        hk_loop_run(fx.loop, HK_RUN_NOWAIT);
    cr_assert_eq(never_calls, 0);
    close(fd);
    teardown();
}

/* A zero-length read is served without a system call, still through the loop. */
Test(fs_ops, zero_length)
{
    setup_pool();
    hk_fs_req_t req;
    struct done d;
    RUN(hk_fs_read(fx.fs, &req, 0, NULL, 0, 0, fx_on_done));
    cr_assert_eq(d.result, 0);
    struct iovec e[2] = {{NULL, 0}, {NULL, 0}};
    RUN(hk_fs_writev(fx.fs, &req, 1, e, 2, -1, fx_on_done));
    cr_assert_eq(d.result, 0);
    teardown();
}

/* Cancelling a request still queued behind a busy one-thread pool. */
static atomic_int gate;
static void block_fn(hk_work_t *w)
{
    (void)w;
    while (!atomic_load(&gate))
        usleep(1000);
}
static int blocker_done;
static void block_done(hk_work_t *w, int status)
{
    (void)w;
    (void)status;
    blocker_done = 1;
}

Test(fs_ops, cancel)
{
    hk_loop_t *loop;
    hk_pool_t *pool;
    hk_fs_t *fs;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    hk_pool_options_t po = {.threads = 1, .cap = {1, 1}};
    cr_assert_eq(hk_pool_new(&pool, &po), 0);
    hk_fs_options_t o = {.pool = pool};
    cr_assert_eq(hk_fs_new(loop, &o, &fs), 0);

    hk_work_t blocker;
    memset(&blocker, 0, sizeof(blocker));
    cr_assert_eq(hk_work_submit(loop, pool, &blocker, HK_WORK_FAST, block_fn, block_done), 0);
    hk_fs_req_t req;
    struct done d = {0};
    struct stat st;
    req.data = &d;
    cr_assert_eq(hk_fs_stat(fs, &req, ".", &st, fx_on_done), 0);
    cr_assert_eq(hk_fs_cancel(&req), 0);
    atomic_store(&gate, 1);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert(blocker_done);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.result, -ECANCELED);
    cr_assert_eq(hk_fs_free(fs), 0);
    cr_assert_eq(hk_pool_free(pool), 0);
    cr_assert_eq(hk_loop_free(loop), 0);
}

/*
 * openat with RESOLVE_BENEATH: a warm path opens inline (served from the
 * dentry cache, no pool round trip), a cold one through the pool, and every
 * escape out of the directory fails with -EXDEV.
 */
Test(fs_ops, openat_beneath)
{
    setup_pool();
    hk_fs_req_t req;
    struct done d;
    char path[512], outside[512];
    fx_path(&fx, path, sizeof(path), "root");
    cr_assert_eq(mkdir(path, 0700), 0);
    fx_path(&fx, path, sizeof(path), "root/f.txt");
    int w = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(w, 0);
    cr_assert_eq(write(w, "x", 1), 1);
    close(w);
    fx_path(&fx, outside, sizeof(outside), "secret");
    w = open(outside, O_WRONLY | O_CREAT, 0600);
    close(w);
    fx_path(&fx, path, sizeof(path), "root/out");
    cr_assert_eq(symlink("../secret", path), 0);
    fx_path(&fx, path, sizeof(path), "root/abs");
    cr_assert_eq(symlink("/etc/passwd", path), 0);
    fx_path(&fx, path, sizeof(path), "root");
    int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(dirfd, 0);

    RUN(hk_fs_openat(fx.fs, &req, dirfd, "f.txt", O_RDONLY, 0, RESOLVE_BENEATH, fx_on_done));
    cr_assert_geq(d.result, 0, "%s", hk_strerror((int)d.result));
    cr_assert(fcntl((int)d.result, F_GETFD) & FD_CLOEXEC);
    close((int)d.result);
    /* The path was just walked: the second open is all in the dentry cache. */
    RUN(hk_fs_openat(fx.fs, &req, dirfd, "f.txt", O_RDONLY, 0, RESOLVE_BENEATH, fx_on_done));
    cr_assert_geq(d.result, 0);
    cr_assert_eq(d.served, HK_FS_SERVED_INLINE);
    /* Opened on the loop with O_NONBLOCK (see fifo test below), which is cleared again. */
    cr_assert_eq(fcntl((int)d.result, F_GETFL) & O_NONBLOCK, 0);
    close((int)d.result);

    const char *escapes[] = {"../secret", "out", "abs", "/etc/passwd"};
    for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++) {
        RUN(hk_fs_openat(fx.fs, &req, dirfd, escapes[i], O_RDONLY, 0, RESOLVE_BENEATH, fx_on_done));
        cr_assert_eq(d.result, -EXDEV, "%s: %s", escapes[i], hk_err_name((int)d.result));
    }
    RUN(hk_fs_openat(fx.fs, &req, dirfd, "missing", O_RDONLY, 0, RESOLVE_BENEATH, fx_on_done));
    cr_assert_eq(d.result, -ENOENT);
    /* O_CREAT never tries the cached path: it goes to the pool. */
    RUN(hk_fs_openat(fx.fs, &req, dirfd, "new", O_WRONLY | O_CREAT, 0600, RESOLVE_BENEATH,
                     fx_on_done));
    cr_assert_geq(d.result, 0);
    cr_assert_eq(d.served, 0);
    close((int)d.result);
    close(dirfd);
    teardown();
}

/*
 * The open on the loop thread must never sleep: a FIFO opened for reading
 * waits for a writer. The writer here opens only after hk_fs_openat has
 * returned (or, if it never returns, after 5 s, to end the test): blocking
 * on the loop thread shows as that give-up.
 */
static char fifo_path[512];
static atomic_int fifo_submitted;
static int fifo_gave_up;

static void *fifo_writer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500 && !atomic_load(&fifo_submitted); i++)
        usleep(10 * 1000);
    fifo_gave_up = !atomic_load(&fifo_submitted);
    int fd = open(fifo_path, O_WRONLY);
    if (fd >= 0)
        close(fd);
    return NULL;
}

Test(fs_ops, openat_fifo_does_not_block_the_loop)
{
    setup_pool();
    fx_path(&fx, fifo_path, sizeof(fifo_path), "fifo");
    cr_assert_eq(mkfifo(fifo_path, 0600), 0);
    char dir[512];
    fx_path(&fx, dir, sizeof(dir), "");
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(dirfd, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fifo_writer, NULL), 0);
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_openat(fx.fs, &req, dirfd, "fifo", O_RDONLY, 0, 0, fx_on_done), 0);
    atomic_store(&fifo_submitted, 1);
    fx_wait(&fx, &d);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_not(fifo_gave_up, "hk_fs_openat waited on the loop thread for a FIFO writer");
    cr_assert_geq(d.result, 0, "%s", hk_strerror((int)d.result));
    cr_assert_eq(d.served, 0, "a FIFO is opened on the pool");
    cr_assert_eq(fcntl((int)d.result, F_GETFL) & O_NONBLOCK, 0,
                 "the caller did not ask O_NONBLOCK");
    close((int)d.result);
    close(dirfd);
}

/*
 * The open tried on the loop thread must have no effect on the other end of
 * a FIFO. A reader already waiting in open() is released by any writer's
 * open; if the loop thread opened the FIFO for writing and closed it again
 * (it is not a regular file, so it goes to the pool), the reader would see
 * end of file before the real writer ever arrived. The pool's only worker is
 * held until the reader's first round of reads is over (or 1 s passes), so
 * that a transient open always shows as that early end of file.
 */
static atomic_int fifo_reader_tid;
static atomic_int fifo_reader_round; /* the reader's first open and reads are over */
static int fifo_early_eofs;          /* opens that ended with no byte read */
static char fifo_got[64];            /* what the reader finally read */

static void *fifo_reader(void *arg)
{
    (void)arg;
    atomic_store(&fifo_reader_tid, (int)gettid());
    /* At most two opens: with the bug the first ends at once, the second meets the pool's open. */
    for (int round = 0; round < 2; round++) {
        int fd = open(fifo_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break;
        size_t len = 0;
        ssize_t n;
        while ((n = read(fd, fifo_got + len, sizeof(fifo_got) - 1 - len)) > 0)
            len += (size_t)n;
        close(fd);
        if (len == 0)
            fifo_early_eofs++;
        atomic_store(&fifo_reader_round, 1);
        if (len > 0)
            break;
    }
    atomic_store(&fifo_reader_round, 1);
    return NULL;
}

/* Whether thread tid is inside the openat system call. */
static int in_openat(int tid)
{
    char p[64], buf[64] = {0};
    snprintf(p, sizeof(p), "/proc/self/task/%d/syscall", tid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n > 0 && atol(buf) == SYS_openat;
}

static void hold_worker_fn(hk_work_t *w)
{
    (void)w;
    for (int i = 0; i < 1000 && !atomic_load(&fifo_reader_round); i++)
        usleep(1000);
}

static void hold_worker_done(hk_work_t *w, int status)
{
    (void)w;
    (void)status;
}

Test(fs_ops, openat_fifo_for_writing_leaves_a_waiting_reader_alone)
{
    hk_pool_t *pool;
    hk_pool_options_t po = {.threads = 1, .cap = {1, 1}};
    cr_assert_eq(hk_pool_new(&pool, &po), 0);
    memset(&fx, 0, sizeof(fx));
    cr_assert_eq(hk_loop_new(&fx.loop, 0), 0);
    hk_fs_options_t o = {.pool = pool};
    cr_assert_eq(hk_fs_new(fx.loop, &o, &fx.fs), 0);
    const char *base = getenv("HK_TEST_TMPDIR");
    snprintf(fx.dir, sizeof(fx.dir), "%s/hk-fs-XXXXXX", base ? base : ".");
    cr_assert_not_null(mkdtemp(fx.dir));

    fx_path(&fx, fifo_path, sizeof(fifo_path), "wfifo");
    cr_assert_eq(mkfifo(fifo_path, 0600), 0);
    int dirfd = open(fx.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(dirfd, 0);
    struct stat st;
    cr_assert_eq(stat(fifo_path, &st), 0); /* warm: the loop thread's path walk succeeds */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fifo_reader, NULL), 0);
    /* Wait until the reader is in open(), then give it time to sleep there for a writer. */
    int tid;
    while ((tid = atomic_load(&fifo_reader_tid)) == 0 || !in_openat(tid))
        usleep(1000);
    usleep(20 * 1000);

    hk_work_t hold;
    memset(&hold, 0, sizeof(hold));
    cr_assert_eq(
        hk_work_submit(fx.loop, pool, &hold, HK_WORK_FAST, hold_worker_fn, hold_worker_done), 0);
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_openat(fx.fs, &req, dirfd, "wfifo", O_WRONLY, 0, 0, fx_on_done), 0);
    fx_wait(&fx, &d);
    cr_assert_geq(d.result, 0, "%s", hk_strerror((int)d.result));
    int fd = (int)d.result;
    cr_assert_eq(write(fd, "hello", 5), 5);
    close(fd);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(fifo_early_eofs, 0,
                 "the reader saw end of file before the writer's data (%d time(s)): the loop "
                 "thread opened the FIFO for writing and closed it again",
                 fifo_early_eofs);
    cr_assert_str_eq(fifo_got, "hello");
    close(dirfd);
    teardown();
    cr_assert_eq(hk_pool_free(pool), 0);
}
