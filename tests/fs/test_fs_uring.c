/*
 * The io_uring backend: the same script of reads and writes gives the same
 * results and bytes as the pool backend; cold reads go to the ring; many
 * requests at once (more than the ring holds) all complete; and when
 * io_uring is turned off (HARK_FS_URING=0) or denied (a seccomp filter makes
 * io_uring_setup fail with EPERM, as container runtimes do) the context
 * falls back to the pool and says why.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "util.h"

static struct fx fx;

static void teardown(void)
{
    fx_teardown(&fx);
}

static int uring_in_use(void)
{
    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    return s.backend == HK_FS_BACKEND_URING;
}

/* ------------------------------------------------------------------------ */
/* The script                                                               */
/* ------------------------------------------------------------------------ */

#define STEPS 32

struct outcome {
    int64_t result[STEPS];
    int n;
    uint64_t sum; /* a checksum of every byte read */
};

static int64_t step_rw(int write, int fd, struct iovec *iov, int cnt, int64_t off)
{
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    int rc = write ? hk_fs_writev(fx.fs, &req, fd, iov, cnt, off, fx_on_done)
                   : hk_fs_readv(fx.fs, &req, fd, iov, cnt, off, fx_on_done);
    cr_assert_eq(rc, 0);
    fx_wait(&fx, &d);
    return d.result;
}

static void sum_bytes(struct outcome *o, const unsigned char *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        o->sum = o->sum * 31 + p[i];
}

static void run_script(struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    char path[512], dpath[512];
    fx_path(&fx, path, sizeof(path), "script");
    fx_path(&fx, dpath, sizeof(dpath), "dir");
    mkdir(dpath, 0700);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);

    static unsigned char w1[100000], w2[3000], r1[200000], r2[5000], r3[7];
    for (size_t i = 0; i < sizeof(w1); i++)
        w1[i] = fx_byte(9, i);
    for (size_t i = 0; i < sizeof(w2); i++)
        w2[i] = fx_byte(10, i);

    struct iovec wv[3] = {{w1, 50000}, {w2, 0}, {w1 + 50000, 50000}};
    o->result[o->n++] = step_rw(1, fd, wv, 3, 0);
    struct iovec wp[1] = {{w2, sizeof(w2)}};
    o->result[o->n++] = step_rw(1, fd, wp, 1, 4000);   /* overwrite inside */
    o->result[o->n++] = step_rw(1, fd, wp, 1, -1);     /* at the position: after 100000 */
    o->result[o->n++] = step_rw(1, fd, wp, 1, 200000); /* leaves a hole */

    struct iovec rv[3] = {{r2, sizeof(r2)}, {r3, 0}, {r3, sizeof(r3)}};
    for (int64_t off = 0; off < 210000; off += 37000) {
        memset(r2, 0, sizeof(r2));
        memset(r3, 0, sizeof(r3));
        int64_t n = step_rw(0, fd, rv, 3, off);
        o->result[o->n++] = n;
        sum_bytes(o, r2, sizeof(r2));
        sum_bytes(o, r3, sizeof(r3));
    }
    struct iovec rb[1] = {{r1, sizeof(r1)}};
    memset(r1, 0, sizeof(r1));
    o->result[o->n++] = step_rw(0, fd, rb, 1, 150000); /* across the hole to the end */
    sum_bytes(o, r1, sizeof(r1));
    o->result[o->n++] = step_rw(0, fd, rb, 1, 1 << 30); /* beyond the end */
    lseek(fd, 99990, SEEK_SET);
    o->result[o->n++] = step_rw(0, fd, rv, 3, -1); /* at the position */
    sum_bytes(o, r2, sizeof(r2));
    o->result[o->n++] = lseek(fd, 0, SEEK_CUR);

    /* errors */
    int dfd = open(dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    o->result[o->n++] = step_rw(0, dfd, rb, 1, 0);
    close(dfd);
    int bad = 1000;
    while (fcntl(bad, F_GETFD) != -1)
        bad++;
    o->result[o->n++] = step_rw(0, bad, rb, 1, 0);
    o->result[o->n++] = step_rw(1, bad, wp, 1, 0);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    o->result[o->n++] = step_rw(1, ro, wp, 1, 0);
    close(ro);
    close(fd);
    cr_assert_leq(o->n, STEPS);
}

static void script_with(hk_fs_backend_t backend, unsigned flags, struct outcome *o,
                        hk_fs_stats_t *s)
{
    fx_setup(&fx, backend, flags);
    run_script(o);
    hk_fs_stats(fx.fs, s);
    fx_teardown(&fx);
}

Test(fs_uring, same_results_as_pool)
{
    struct outcome pool, ring, ring_nowait;
    hk_fs_stats_t sp, sr, srn;
    script_with(HK_FS_BACKEND_POOL, HK_FS_NO_NOWAIT, &pool, &sp);
    script_with(HK_FS_BACKEND_URING, HK_FS_NO_NOWAIT, &ring, &sr);
    script_with(HK_FS_BACKEND_URING, 0, &ring_nowait, &srn);
    cr_assert_eq(pool.n, ring.n);
    for (int i = 0; i < pool.n; i++) {
        cr_expect_eq(pool.result[i], ring.result[i], "step %d: pool %lld, io_uring %lld", i,
                     (long long)pool.result[i], (long long)ring.result[i]);
        cr_expect_eq(pool.result[i], ring_nowait.result[i], "step %d (nowait)", i);
    }
    cr_assert_eq(pool.sum, ring.sum);
    cr_assert_eq(pool.sum, ring_nowait.sum);
    cr_assert_eq(pool.result[0], 100000);
    cr_assert_eq(pool.result[pool.n - 4], -EISDIR);
    cr_assert_eq(pool.result[pool.n - 3], -EBADF);
    cr_assert_eq(sp.reads_uring + sp.writes_uring, 0);
    if (sr.backend != HK_FS_BACKEND_URING)
        cr_skip_test("io_uring unavailable here (%s): only the pool was compared",
                     hk_err_name(sr.uring_error));
    cr_assert_eq(sr.reads_pool + sr.writes_pool, 0);
    cr_assert_gt(sr.reads_uring, 0);
    cr_assert_gt(sr.writes_uring, 0);
    cr_assert_eq(sr.uring_fallbacks, 0);
    cr_assert_gt(srn.reads_inline, 0);
}

static void setup_uring(void)
{
    fx_setup(&fx, HK_FS_BACKEND_URING, 0);
}

Test(fs_uring, cold_read_uses_ring)
{
    setup_uring();
    if (!uring_in_use()) {
        teardown();
        cr_skip_test("io_uring unavailable here");
    }
    char path[512];
    fx_path(&fx, path, sizeof(path), "cold");
    fx_make_file(path, 1 << 20, 2);
    if (!fx_evict(path, 1 << 20)) {
        teardown();
        cr_skip_test("posix_fadvise(DONTNEED) does not evict on this file system");
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    static unsigned char buf[1 << 20];
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, sizeof(buf), 0, fx_on_done), 0);
    fx_wait(&fx, &d);
    cr_assert_eq(d.result, 1 << 20);
    cr_assert(fx_check_pattern(buf, sizeof(buf), 2, 0));
    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    cr_assert(d.served & HK_FS_SERVED_URING);
    cr_assert_eq(s.reads_uring, 1);
    cr_assert_eq(s.reads_pool, 0);
    cr_assert_eq(s.reads_inline, 0);
    close(fd);
    teardown();
}

/* An idle ring does not keep the loop running; one with requests does. */
Test(fs_uring, idle_ring_lets_loop_exit)
{
    setup_uring();
    cr_assert_eq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    teardown();
}

/* 600 reads at once on an 8-entry ring: all complete, the excess via the pool. */
Test(fs_uring, more_requests_than_the_ring_holds)
{
    fx_setup(&fx, HK_FS_BACKEND_URING, HK_FS_NO_NOWAIT);
    hk_fs_free(fx.fs);
    hk_loop_run(fx.loop, HK_RUN_NOWAIT);
    hk_fs_options_t o = {
        .backend = HK_FS_BACKEND_URING, .flags = HK_FS_NO_NOWAIT, .uring_entries = 8};
    cr_assert_eq(hk_fs_new(fx.loop, &o, &fx.fs), 0);
    char path[512];
    fx_path(&fx, path, sizeof(path), "many");
    fx_make_file(path, 600 * 512, 4);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    enum { N = 600 };
    static hk_fs_req_t reqs[N];
    static struct done ds[N];
    static unsigned char bufs[N][512];
    for (int i = 0; i < N; i++) {
        reqs[i].data = &ds[i];
        cr_assert_eq(hk_fs_read(fx.fs, &reqs[i], fd, bufs[i], 512, (int64_t)i * 512, fx_on_done),
                     0);
    }
    cr_assert_eq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(ds[i].calls, 1);
        cr_assert_eq(ds[i].result, 512);
        cr_assert(fx_check_pattern(bufs[i], 512, 4, (uint64_t)i * 512));
    }
    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    cr_assert_eq(s.in_flight, 0);
    if (s.backend == HK_FS_BACKEND_URING) {
        cr_assert_gt(s.reads_uring, 0);
        cr_assert_eq(s.reads_uring + s.reads_pool, N);
        cr_assert_eq(s.uring_fallbacks, s.reads_pool);
    }
    close(fd);
    fx_teardown(&fx);
}

/* Reads and writes still work after falling back, and the stats say why. */
static void check_fallback(int expected_error)
{
    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    cr_assert_eq(s.backend, HK_FS_BACKEND_POOL);
    cr_assert_eq(s.uring_error, expected_error, "uring_error %s", hk_err_name(s.uring_error));
    char path[512];
    fx_path(&fx, path, sizeof(path), "fb");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct iovec iov = {"abcdef", 6};
    cr_assert_eq(step_rw(1, fd, &iov, 1, 0), 6);
    char buf[8] = {0};
    struct iovec rv = {buf, sizeof(buf)};
    cr_assert_eq(step_rw(0, fd, &rv, 1, 0), 6);
    cr_assert_str_eq(buf, "abcdef");
    hk_fs_stats(fx.fs, &s);
    cr_assert_eq(s.reads_uring + s.writes_uring, 0);
    cr_assert_eq(s.writes_pool, 1);
    close(fd);
}

Test(fs_uring, disabled_by_environment)
{
    setenv("HARK_FS_URING", "0", 1);
    fx_setup(&fx, HK_FS_BACKEND_URING, HK_FS_NO_NOWAIT);
    check_fallback(-ENOTSUP);
    teardown();
}

Test(fs_uring, denied_by_seccomp)
{
    /* Every test runs in its own process: the filter dies with it. */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
                 strerror(errno));
    fx_setup(&fx, HK_FS_BACKEND_URING, HK_FS_NO_NOWAIT);
    check_fallback(-EPERM);
    teardown();
}

Test(fs_uring, pool_backend_reports_no_error)
{
    fx_setup(&fx, HK_FS_BACKEND_POOL, HK_FS_NO_NOWAIT);
    check_fallback(0);
    teardown();
}

/*
 * io_uring_submit failing with EAGAIN (no kernel memory for requests) while
 * nothing is in the kernel: no completion will come to trigger a retry, so
 * the ring retries on a timer, and after enough failures in a row gives the
 * requests to the pool. HARK_FS_URING_SUBMIT_EAGAIN=n fakes n failures.
 * Without the retry, hk_loop_run would wait forever (the test times out).
 */
static void read_with_failing_submits(const char *fails, int64_t *result, unsigned *served)
{
    setenv("HARK_FS_URING_SUBMIT_EAGAIN", fails, 1);
    fx_setup(&fx, HK_FS_BACKEND_URING, HK_FS_NO_NOWAIT);
    unsetenv("HARK_FS_URING_SUBMIT_EAGAIN");
    if (!uring_in_use()) {
        teardown();
        cr_skip_test("io_uring unavailable here");
    }
    char path[512];
    fx_path(&fx, path, sizeof(path), "eagain");
    fx_make_file(path, 3 * 4096, 6);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    static unsigned char buf[3][4096];
    hk_fs_req_t reqs[3];
    struct done ds[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        reqs[i].data = &ds[i];
        cr_assert_eq(hk_fs_read(fx.fs, &reqs[i], fd, buf[i], 4096, i * 4096, fx_on_done), 0);
    }
    cr_assert_eq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ds[i].calls, 1);
        cr_assert_eq(ds[i].result, 4096);
        cr_assert(fx_check_pattern(buf[i], 4096, 6, (uint64_t)i * 4096));
    }
    *result = ds[0].result;
    *served = ds[0].served;
    close(fd);
}

Test(fs_uring, temporary_submit_failure_is_retried)
{
    int64_t result;
    unsigned served;
    read_with_failing_submits("3", &result, &served);
    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    cr_assert_eq(s.backend, HK_FS_BACKEND_URING);
    cr_assert_eq(s.reads_uring, 3);
    cr_assert_eq(s.reads_pool, 0);
    cr_assert_eq(s.in_flight, 0);
    cr_assert(served & HK_FS_SERVED_URING);
    teardown();
}

Test(fs_uring, lasting_submit_failure_falls_back_to_pool)
{
    int64_t result;
    unsigned served;
    read_with_failing_submits("1000000", &result, &served);
    hk_fs_stats_t s;
    hk_fs_stats(fx.fs, &s);
    cr_assert_eq(s.backend, HK_FS_BACKEND_POOL);
    cr_assert_eq(s.uring_error, -EAGAIN);
    cr_assert_eq(s.reads_pool, 3);
    cr_assert_eq(s.uring_fallbacks, 3);
    cr_assert_eq(s.in_flight, 0);
    cr_assert(served & HK_FS_SERVED_POOL);
    /* The broken ring is never used again: later reads go to the pool at once. */
    teardown();
}
