/*
 * Which path served a read: RWF_NOWAIT inline for cached data, the pool for
 * cold data, both for a partly cached range. Asserted with the context's
 * counters and req->served, never with time. The cache state is set with
 * posix_fadvise(DONTNEED) and confirmed with mincore before asserting; a
 * file system that does not evict makes the cold tests skip.
 */
#include "util.h"

#define MiB (1024 * 1024)

static struct fx fx;
static char path[512];
static int fd = -1;
static unsigned char *buf;

static void setup_file(unsigned flags)
{
    fx_setup(&fx, HK_FS_BACKEND_POOL, flags);
    fx_path(&fx, path, sizeof(path), "data");
    fx_make_file(path, MiB, 5);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    buf = malloc(MiB);
}

static void setup(void)
{
    setup_file(0);
}

static void teardown(void)
{
    free(buf);
    close(fd);
    fx_teardown(&fx);
}

static hk_fs_stats_t stats(void)
{
    hk_fs_stats_t s;
    cr_assert_eq(hk_fs_stats(fx.fs, &s), 0);
    return s;
}

static struct done read_at(size_t len, int64_t off)
{
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, len, off, fx_on_done), 0);
    fx_wait(&fx, &d);
    return d;
}

static void make_cold(void)
{
    if (!fx_evict(path, MiB)) {
        teardown();
        cr_skip_test("posix_fadvise(DONTNEED) does not evict on this file system");
    }
}

Test(fs_nowait, cached_read_is_inline)
{
    setup();
    /* The file was just written: its pages are in the cache. */
    struct done d = read_at(65536, 4096);
    cr_assert_eq(d.result, 65536);
    cr_assert(fx_check_pattern(buf, 65536, 5, 4096));
    hk_fs_stats_t s = stats();
    cr_assert_eq(s.nowait, 1);
    cr_assert_eq(d.served, HK_FS_SERVED_INLINE);
    cr_assert_eq(s.reads_inline, 1);
    cr_assert_eq(s.reads_pool, 0);
    cr_assert_eq(s.ops_pool, 0);
    cr_assert_eq(s.bytes_inline, 65536);
    teardown();
}

Test(fs_nowait, cold_read_goes_to_pool)
{
    setup();
    make_cold();
    struct done d = read_at(65536, 0);
    cr_assert_eq(d.result, 65536);
    cr_assert(fx_check_pattern(buf, 65536, 5, 0));
    hk_fs_stats_t s = stats();
    cr_assert_eq(d.served, HK_FS_SERVED_POOL);
    cr_assert_eq(s.reads_pool, 1);
    cr_assert_eq(s.reads_inline, 0);
    cr_assert_eq(s.bytes_backend, 65536);

    /* The pool's read brought the pages in: the same range is now inline. */
    d = read_at(65536, 0);
    cr_assert_eq(d.result, 65536);
    s = stats();
    cr_assert_eq(d.served, HK_FS_SERVED_INLINE);
    cr_assert_eq(s.reads_inline, 1);
    cr_assert_eq(s.reads_pool, 1);
    teardown();
}

/* Page 0 cached, the rest cold: the first page inline, the rest in the pool. */
Test(fs_nowait, partly_cached_read_is_split)
{
    setup();
    make_cold();
    /* No readahead on this open file: the pread below caches its own page only. */
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    posix_fadvise(rfd, 0, 0, POSIX_FADV_RANDOM);
    char page[4096];
    cr_assert_eq(pread(rfd, page, sizeof(page), 0), 4096);
    unsigned char vec[16];
    fx_resident(rfd, 16 * 4096, vec);
    close(rfd);
    int state_ok = (vec[0] & 1) != 0;
    for (int i = 1; i < 16; i++)
        state_ok = state_ok && !(vec[i] & 1);
    if (!state_ok) {
        teardown();
        cr_skip_test("could not cache exactly the first page (readahead)");
    }

    struct done d = read_at(16 * 4096, 0);
    cr_assert_eq(d.result, 16 * 4096);
    cr_assert(fx_check_pattern(buf, 16 * 4096, 5, 0));
    hk_fs_stats_t s = stats();
    cr_assert(d.served & HK_FS_SERVED_INLINE);
    cr_assert_geq(s.bytes_inline, 4096);
    cr_assert_eq(s.bytes_inline + s.bytes_backend, 16 * 4096);
    /*
     * Reading page 0 inline may start async readahead of the next pages; on a
     * fast disk they can land before the next attempt, which then finishes
     * inline. Otherwise (the usual case) the rest went to the pool.
     */
    if (d.served & HK_FS_SERVED_POOL) {
        cr_assert_eq(s.reads_partial, 1);
        cr_assert_eq(s.reads_pool, 1);
        cr_assert_eq(s.reads_inline, 0);
    } else {
        cr_assert_eq(s.reads_inline, 1);
    }
}

/* A short read at the end of a cached file is finished inline, without a hop. */
Test(fs_nowait, end_of_file_is_inline)
{
    setup();
    struct done d = read_at(65536, MiB - 1000);
    cr_assert_eq(d.result, 1000);
    cr_assert(fx_check_pattern(buf, 1000, 5, MiB - 1000));
    d = read_at(100, MiB + 5);
    cr_assert_eq(d.result, 0);
    hk_fs_stats_t s = stats();
    cr_assert_eq(s.reads_inline, 2);
    cr_assert_eq(s.reads_pool, 0);
    teardown();
}

/* Reads at the file position move it, whichever path serves them. */
Test(fs_nowait, file_position)
{
    setup();
    struct done d = read_at(1000, -1);
    cr_assert_eq(d.result, 1000);
    cr_assert(fx_check_pattern(buf, 1000, 5, 0));
    make_cold();
    d = read_at(3000, -1);
    cr_assert_eq(d.result, 3000);
    cr_assert(fx_check_pattern(buf, 3000, 5, 1000));
    cr_assert_eq(lseek(fd, 0, SEEK_CUR), 4000);
    hk_fs_stats_t s = stats();
    cr_assert_eq(s.reads_inline, 1);
    cr_assert_eq(s.reads_pool, 1);
    teardown();
}

/* readv over elements of odd sizes, empty ones included, split across paths. */
Test(fs_nowait, readv_split)
{
    setup();
    make_cold();
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    posix_fadvise(rfd, 0, 0, POSIX_FADV_RANDOM);
    char page[4096];
    cr_assert_eq(pread(rfd, page, sizeof(page), 8192), 4096); /* page 2 only */
    close(rfd);

    static unsigned char a[5000], b[7], c[30000];
    struct iovec iov[5] = {{a, 0}, {a, sizeof(a)}, {b, 0}, {b, sizeof(b)}, {c, sizeof(c)}};
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_readv(fx.fs, &req, fd, iov, 5, 8192, fx_on_done), 0);
    fx_wait(&fx, &d);
    cr_assert_eq(d.result, 5000 + 7 + 30000);
    cr_assert(fx_check_pattern(a, sizeof(a), 5, 8192));
    cr_assert(fx_check_pattern(b, sizeof(b), 5, 8192 + 5000));
    cr_assert(fx_check_pattern(c, sizeof(c), 5, 8192 + 5007));
    teardown();
}

/* Past the per-iteration inline time budget, cached reads go to the pool untried. */
Test(fs_nowait, inline_budget)
{
    fx_setup(&fx, HK_FS_BACKEND_POOL, 0);
    hk_fs_free(fx.fs);
    hk_fs_options_t o = {.inline_budget_ns = 1}; /* spent by the first attempt */
    cr_assert_eq(hk_fs_new(fx.loop, &o, &fx.fs), 0);
    fx_path(&fx, path, sizeof(path), "data");
    fx_make_file(path, MiB, 5);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    buf = malloc(MiB);
    hk_fs_req_t r1, r2, r3;
    struct done d1 = {0}, d2 = {0}, d3 = {0};
    r1.data = &d1;
    r2.data = &d2;
    r3.data = &d3;
    /* Same iteration: the loop has not woken up between the calls. */
    cr_assert_eq(hk_fs_read(fx.fs, &r1, fd, buf, 65536, 0, fx_on_done), 0);
    cr_assert_eq(hk_fs_read(fx.fs, &r2, fd, buf + 65536, 65536, 65536, fx_on_done), 0);
    cr_assert_eq(hk_fs_read(fx.fs, &r3, fd, buf + 131072, 30000, 131072, fx_on_done), 0);
    cr_assert_geq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(d1.served, HK_FS_SERVED_INLINE);
    cr_assert_eq(d2.served, HK_FS_SERVED_POOL);
    cr_assert_eq(d3.served, HK_FS_SERVED_POOL);
    cr_assert(fx_check_pattern(buf, 161072, 5, 0));
    hk_fs_stats_t s = stats();
    cr_assert_eq(s.reads_over_budget, 2);
    cr_assert_eq(s.reads_inline, 1);
    /* The next iteration has a fresh budget. */
    hk_fs_req_t r4;
    struct done d4 = {0};
    r4.data = &d4;
    cr_assert_eq(hk_fs_read(fx.fs, &r4, fd, buf, 4096, 0, fx_on_done), 0);
    cr_assert_geq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(d4.served, HK_FS_SERVED_INLINE);
    /* Reads above HK_FS_INLINE_MAX are never tried inline. */
    static unsigned char big[HK_FS_INLINE_MAX + 4096];
    struct done d5 = {0};
    r4.data = &d5;
    cr_assert_eq(hk_fs_read(fx.fs, &r4, fd, big, sizeof(big), 0, fx_on_done), 0);
    cr_assert_geq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(d5.served, HK_FS_SERVED_POOL);
    cr_assert_eq(d5.result, MiB);
    teardown();
}

static void setup_no_nowait(void)
{
    setup_file(HK_FS_NO_NOWAIT);
}

Test(fs_nowait, option_off_uses_pool)
{
    setup_no_nowait();
    struct done d = read_at(4096, 0);
    cr_assert_eq(d.result, 4096);
    hk_fs_stats_t s = stats();
    cr_assert_eq(s.nowait, 0);
    cr_assert_eq(d.served, HK_FS_SERVED_POOL);
    cr_assert_eq(s.reads_inline, 0);
    cr_assert_eq(s.reads_pool, 1);
    teardown();
}

/* readahead warms a cold file, after which reads are inline. */
Test(fs_nowait, readahead_warms)
{
    setup();
    make_cold();
    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_readahead(fx.fs, &req, fd, 0, 256 * 1024, fx_on_done), 0);
    fx_wait(&fx, &d);
    cr_assert_eq(d.result, 0);
    /* WILLNEED starts the I/O; wait (off the loop) until it has landed. */
    unsigned char vec[64];
    for (int i = 0; i < 2000 && fx_resident(fd, 256 * 1024, vec) < 64; i++)
        usleep(1000);
    cr_assert_eq(fx_resident(fd, 256 * 1024, vec), 64);
    d = read_at(256 * 1024, 0);
    cr_assert_eq(d.result, 256 * 1024);
    cr_assert_eq(d.served, HK_FS_SERVED_INLINE);
    teardown();
}

/*
 * A read begun inline whose rest waits in the pool: the bytes read inline are
 * never lost. Cancelling it gives -EBUSY (they are in the buffer already); a
 * cancellation by the pool itself (hk_pool_free) and a pool that refuses the
 * rest both complete it with the inline count, as read(2) would.
 */
static int blocker_pipe[2];
static int blocker_running;

static void blocker_work(hk_work_t *w)
{
    (void)w;
    __atomic_store_n(&blocker_running, 1, __ATOMIC_RELEASE);
    char c;
    while (read(blocker_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
}

static void count_done(hk_work_t *w, int status)
{
    (void)status;
    ++*(int *)w->data;
}

static void *pool_free_main(void *arg)
{
    hk_pool_free(arg);
    return NULL;
}

/* Caches exactly page first (no readahead), the next 15 staying cold; 0 when it cannot. */
static int cache_one_page(int page)
{
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    posix_fadvise(rfd, 0, 0, POSIX_FADV_RANDOM);
    char p[4096];
    cr_assert_eq(pread(rfd, p, sizeof(p), (off_t)page * 4096), 4096);
    unsigned char vec[256];
    fx_resident(rfd, MiB, vec);
    close(rfd);
    int ok = (vec[page] & 1) != 0;
    for (int i = page + 1; i < page + 16; i++)
        ok = ok && !(vec[i] & 1);
    return ok;
}

Test(fs_nowait, partial_inline_bytes_survive_cancel_and_refusal)
{
    fx_setup(&fx, HK_FS_BACKEND_POOL, 0);
    hk_pool_t *pool;
    hk_pool_options_t po = {.threads = 1};
    cr_assert_eq(hk_pool_new(&pool, &po), 0);
    hk_fs_free(fx.fs);
    hk_fs_options_t o = {.backend = HK_FS_BACKEND_POOL, .pool = pool};
    cr_assert_eq(hk_fs_new(fx.loop, &o, &fx.fs), 0);
    fx_path(&fx, path, sizeof(path), "data");
    fx_make_file(path, MiB, 5);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    buf = malloc(MiB);
    make_cold();
    if (!cache_one_page(0) || !cache_one_page(128)) {
        teardown();
        cr_skip_test("could not cache exactly one page (readahead)");
    }

    /* The pool's only worker is busy: what goes to the pool stays queued. */
    cr_assert_eq(pipe(blocker_pipe), 0);
    int blocker_done = 0;
    hk_work_t blocker = {.data = &blocker_done};
    cr_assert_eq(hk_work_submit(fx.loop, pool, &blocker, HK_WORK_FAST, blocker_work, count_done),
                 0);
    /* Running, not queued: hk_pool_free must wait for it, so the pool outlives the probes. */
    while (!__atomic_load_n(&blocker_running, __ATOMIC_ACQUIRE))
        usleep(1000);

    hk_fs_req_t req;
    struct done d = {0};
    req.data = &d;
    cr_assert_eq(hk_fs_read(fx.fs, &req, fd, buf, 16 * 4096, 0, fx_on_done), 0);
    if (!(req.served & HK_FS_SERVED_POOL)) {
        /* Readahead landed between the two attempts: all of it was inline. */
        cr_assert_eq(write(blocker_pipe[1], "x", 1), 1);
        fx_wait(&fx, &d);
        hk_pool_free(pool);
        teardown();
        cr_skip_test("the whole read was served inline");
    }
    cr_assert(req.served & HK_FS_SERVED_INLINE);
    cr_assert_eq(hk_fs_cancel(&req), -EBUSY);

    /* hk_pool_free cancels the queued rest, then waits for the blocked worker. */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, pool_free_main, pool), 0);
    static hk_work_t probes[5000];
    int probes_done = 0, nprobes = 0, r = 0;
    for (; nprobes < 5000; nprobes++) {
        probes[nprobes].data = &probes_done;
        r = hk_work_submit(fx.loop, pool, &probes[nprobes], HK_WORK_FAST, blocker_work, count_done);
        if (r == -ESHUTDOWN)
            break;
        cr_assert_eq(r, 0);
        usleep(1000);
    }
    cr_assert_eq(r, -ESHUTDOWN);

    /* The pool refuses the rest of a second partly inline read. */
    hk_fs_req_t req2;
    struct done d2 = {0};
    req2.data = &d2;
    unsigned char *buf2 = malloc(16 * 4096);
    cr_assert_eq(hk_fs_read(fx.fs, &req2, fd, buf2, 16 * 4096, 128 * 4096, fx_on_done), 0);

    cr_assert_eq(write(blocker_pipe[1], "x", 1), 1);
    pthread_join(t, NULL);
    cr_assert_geq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);

    cr_assert_eq(d.calls, 1);
    cr_assert_gt(d.result, 0, "result %lld", (long long)d.result);
    cr_assert_lt(d.result, 16 * 4096);
    cr_assert(fx_check_pattern(buf, (size_t)d.result, 5, 0));
    cr_assert_eq(d2.calls, 1);
    cr_assert_gt(d2.result, 0, "result %lld", (long long)d2.result);
    cr_assert(fx_check_pattern(buf2, (size_t)d2.result, 5, 128 * 4096));
    cr_assert_eq(blocker_done, 1);
    cr_assert_eq(probes_done, nprobes);
    free(buf2);
    close(blocker_pipe[0]);
    close(blocker_pipe[1]);
    teardown();
}
