/*
 * Threads: several threads log at once and every line arrives whole, once,
 * in each thread's order, never interleaved with another; a full ring drops
 * and counts, and the "N messages dropped" lines add up to the count; the
 * rings of exited threads are drained and freed. Runs under TSan too
 * (label "threads").
 */
#include "util.h"

#include <pthread.h>
#include <sched.h>

LOG_TMPDIR_SUITE(log_threads, 60);

enum { THREADS = 4, LINES = 20000 };

static void *producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LINES; i++) {
        /* Retry on a full ring: this test is about integrity, not drops. */
        while (hk_log(HK_LOG_INFO, "tick", "thread=%d seq=%d pad=%s", id, i,
                      "0123456789abcdefghijklmnopqrstuvwxyz") == -EAGAIN)
            sched_yield();
    }
    return NULL;
}

typedef struct seen {
    int next[THREADS];
    size_t lines;
    size_t bad;
} seen_t;

static void check_line(const char *line, size_t len, void *arg)
{
    seen_t *s = arg;
    parsed_t p;
    if (memmem(line, len, " messages dropped\" dropped=", 27))
        return;
    s->lines++;
    if (parse_text(line, len, &p) != 0 || p.n != 5) {
        if (s->bad++ < 3)
            cr_log_error("broken line: %.*s", (int)len, line);
        return;
    }
    const kv_t *t = pget(&p, "thread"), *q = pget(&p, "seq"), *pad = pget(&p, "pad");
    cr_assert(t && q && pad);
    cr_assert_str_eq(pad->val, "0123456789abcdefghijklmnopqrstuvwxyz");
    int id = atoi(t->val), seq = atoi(q->val);
    cr_assert(id >= 0 && id < THREADS);
    cr_assert_eq(seq, s->next[id], "thread %d: seq %d after %d", id, seq, s->next[id] - 1);
    s->next[id]++;
}

Test(log_threads, concurrent_lines_intact_and_ordered)
{
    const char *path = tmpdir_path(&td, "threads.log");
    hk_log_options_t o = opts_path(path, HK_LOG_TEXT);
    o.ring_bytes = 64 * 1024;
    cr_assert_eq(hk_log_open(&o), 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, producer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(hk_log_flush(20 * SEC), 0);

    /* Every producer has exited: its ring is drained and freed. */
    hk_log_stats_t st;
    uint64_t until = mono_ns() + 5 * SEC;
    do {
        hk_log_stats(&st);
        if (st.rings == 0)
            break;
        usleep(1000);
    } while (mono_ns() < until);
    cr_assert_eq(st.rings, 0, "rings of exited threads are freed (%llu left)",
                 (unsigned long long)st.rings);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    hk_log_stats(&st);
    cr_assert_eq(st.logged, (uint64_t)THREADS * LINES);
    /* Retried lines were counted as drops, and reported. */
    cr_assert_eq(st.written, (uint64_t)THREADS * LINES + st.drop_reports);
    cr_assert_eq(st.lost, 0);

    char *out = slurp(path, NULL);
    seen_t s = {0};
    for_lines(out, check_line, &s);
    cr_assert_eq(s.bad, 0, "%zu broken lines", s.bad);
    cr_assert_eq(s.lines, (size_t)THREADS * LINES);
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(s.next[i], LINES);
    free(out);
    tmpdir_clean(&td);
}

/* A reader thread: reads fd to EOF into a growing buffer. */
typedef struct reader {
    int fd;
    char *buf;
    size_t len;
    pthread_t th;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *rd = arg;
    size_t cap = 1 << 20;
    rd->buf = malloc(cap);
    for (;;) {
        if (cap - rd->len < 65536) {
            cap *= 2;
            rd->buf = realloc(rd->buf, cap);
        }
        ssize_t n = read(rd->fd, rd->buf + rd->len, cap - rd->len - 1);
        if (n <= 0)
            break;
        rd->len += (size_t)n;
    }
    rd->buf[rd->len] = '\0';
    return NULL;
}

typedef struct drops {
    uint64_t lines, notices, notice_sum;
    int bad;
} drops_t;

static void count_drop_line(const char *line, size_t len, void *arg)
{
    drops_t *d = arg;
    parsed_t p;
    if (parse_text(line, len, &p) != 0) {
        d->bad++;
        return;
    }
    const kv_t *m = pget(&p, "msg");
    if (m && strstr(m->val, " messages dropped")) {
        d->notices++;
        const kv_t *n = pget(&p, "dropped");
        cr_assert_not_null(n);
        cr_assert_eq(strtoull(m->val, NULL, 10), strtoull(n->val, NULL, 10));
        d->notice_sum += strtoull(n->val, NULL, 10);
        const kv_t *lv = pget(&p, "level");
        cr_assert_str_eq(lv->val, "warn");
    } else {
        d->lines++;
    }
}

Test(log_threads, full_ring_drops_are_counted_and_reported)
{
    int rfd = log_open_pipe(16 * 1024);

    /* Nobody reads yet: the pipe, the writer's buffer and the ring fill up. */
    uint64_t refused = 0;
    for (int i = 0; i < 50000; i++) {
        int r = hk_log(HK_LOG_INFO, "fill", "i=%d pad=%s", i,
                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        cr_assert(r == 0 || r == -EAGAIN, "hk_log: %d", r);
        refused += r == -EAGAIN;
    }
    cr_assert_gt(refused, 0, "the ring never filled");
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.dropped, refused);
    cr_assert_eq(st.logged + st.dropped, 50000);

    /* Now read: space returns, the writer reports the gap. */
    reader_t rd = {.fd = rfd};
    cr_assert_eq(pthread_create(&rd.th, NULL, reader_main, &rd), 0);
    HK_LOGI("after", "k=%d", 1);
    cr_assert_eq(hk_log_close(20 * SEC), 0); /* closes the last write end: EOF */
    pthread_join(rd.th, NULL);
    close(rfd);
    char *out = rd.buf;
    drops_t d = {0};
    for_lines(out, count_drop_line, &d);
    cr_assert_eq(d.bad, 0);
    hk_log_stats(&st);
    cr_assert_geq(d.notices, 1, "no \"N messages dropped\" line");
    /* The "after" line may have been dropped too: compare with the final count. */
    cr_assert_eq(d.notice_sum, st.dropped, "notices add up to %llu, dropped %llu",
                 (unsigned long long)d.notice_sum, (unsigned long long)st.dropped);
    cr_assert_eq(d.lines, st.logged);
    cr_assert_eq(st.drop_reports, d.notices);
    free(out);
    tmpdir_clean(&td);
}

/*
 * fork(): the child gets an eventfd of its own and none of the parent's
 * pending lines. The parent's writer is stuck on a pipe nobody reads, so its
 * buffer and both rings (another thread's and this one's) hold lines when
 * the child forks; a logger the child opens must write the child's line
 * only, never the parent's again.
 */
#include <dirent.h>
#include <sys/wait.h>

#if defined(__SANITIZE_THREAD__)
#define HK_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HK_TEST_TSAN 1
#endif
#endif

/* The eventfd-ids of this process's eventfds (from fdinfo); -1 when the kernel does not say. */
static int eventfd_ids(long *ids, int max)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0, known = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[300], link[64];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(p, link, sizeof link - 1);
        if (l <= 0)
            continue;
        link[l] = 0;
        if (strcmp(link, "anon_inode:[eventfd]") != 0)
            continue;
        snprintf(p, sizeof p, "/proc/self/fdinfo/%s", e->d_name);
        char *info = slurp(p, NULL);
        const char *id = info ? strstr(info, "eventfd-id:") : NULL;
        if (!id)
            known = 0;
        else if (n < max)
            ids[n++] = strtol(id + 11, NULL, 10);
        free(info);
    }
    closedir(d);
    return known ? n : -1;
}

static int fork_thread_go;

static void *fork_filler(void *arg)
{
    (void)arg;
    /* Until the ring stays full: the writer's buffer and the pipe are full too. */
    for (int full = 0; full < 3;) {
        int r = hk_log(HK_LOG_INFO, "parent-pending", "pad=%s", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
        if (r == -EAGAIN) {
            full++;
            usleep(20000);
        } else {
            full = 0;
        }
    }
    __atomic_store_n(&fork_thread_go, 1, __ATOMIC_RELEASE);
    /* Stay alive (its ring with it) until the parent has forked. */
    while (__atomic_load_n(&fork_thread_go, __ATOMIC_ACQUIRE) != 2)
        usleep(1000);
    return NULL;
}

static int child_checks(const char *path, const long *pids, int np)
{
    hk_log_stats_t st;
    hk_log_stats(&st);
    if (st.rings != 1)
        return 10; /* the other thread's ring was kept */
    if (np >= 0) {
        long cids[64];
        int nc = eventfd_ids(cids, 64);
        int fresh = 0;
        for (int i = 0; i < nc; i++) {
            int old = 0;
            for (int j = 0; j < np; j++)
                old |= cids[i] == pids[j];
            fresh += !old;
        }
        if (nc != np || fresh != 1)
            return 11; /* the parent's eventfd is still shared */
    }
#ifndef HK_TEST_TSAN /* TSan kills a child of a threaded process that starts a thread */
    hk_log_options_t o = opts_path(path, HK_LOG_TEXT);
    if (hk_log_open(&o) != 0)
        return 12;
    hk_log(HK_LOG_INFO, "child-line", NULL);
    if (hk_log_close(5 * SEC) != 0)
        return 13;
    char *out = slurp(path, NULL);
    if (!out)
        return 14;
    int bad = count_lines_in(out) != 1 || !strstr(out, "child-line") ||
              strstr(out, "parent-pending") || strstr(out, "main-pending");
    free(out);
    if (bad)
        return 15; /* the parent's lines were written again */
#else
    (void)path;
#endif
    return 0;
}

Test(log_threads, fork_child_shares_nothing_pending)
{
    int rfd = log_open_pipe(16 * 1024);
    long pids[64];
    int np = eventfd_ids(pids, 64);

    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fork_filler, NULL), 0);
    while (__atomic_load_n(&fork_thread_go, __ATOMIC_ACQUIRE) != 1)
        usleep(1000);
    hk_log(HK_LOG_INFO, "main-pending", NULL);

    char *path = strdup(tmpdir_path(&td, "child.log"));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_checks(path, pids, np));
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child died: status %d", status);
    cr_assert_eq(WEXITSTATUS(status), 0, "child check %d failed", WEXITSTATUS(status));

    __atomic_store_n(&fork_thread_go, 2, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    (void)hk_log_close(0); /* the pipe is full: the rest is lost, by design */
    close(rfd);
    free(path);
    tmpdir_clean(&td);
}

enum { FAIR_LINES = 2400 };

static void *fair_logger(void *arg)
{
    const char *who = arg;
    char pad[201];
    memset(pad, 'x', 200);
    pad[200] = '\0';
    for (int i = 0; i < FAIR_LINES; i++)
        cr_assert_eq(HK_LOGI("fair", "who=%s seq=%d pad=%s", who, i, pad), 0);
    return NULL;
}

/*
 * A slow sink is shared fairly between rings: two threads' lines, waiting in
 * their rings behind a sink that takes a few KiB at a time, come out
 * interleaved. The writer used to start every pass at the newest ring, which
 * took all the room the sink freed, so an older ring was not read while the
 * newer one had lines (under sustained load from both, it only dropped).
 * Nobody logs while the test reads, so the order depends on the writer alone.
 */
Test(log_threads, busy_ring_does_not_starve_an_older_one)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    /* A full pipe: the writer can write nothing until the test reads. */
    int cap = fcntl(p[1], F_GETPIPE_SZ);
    cr_assert_gt(cap, 0);
    char *fill = malloc((size_t)cap);
    memset(fill, '\n', (size_t)cap);
    cr_assert_eq(write(p[1], fill, (size_t)cap), cap);
    free(fill);
    hk_log_options_t o = {0};
    o.fd = p[1];
    o.ring_bytes = 1 << 20;
    o.flush_interval_ns = 1 * MSEC;
    cr_assert_eq(hk_log_open(&o), 0);
    close(p[1]);
    int rd = p[0];

    /* The older ring's lines fill the writer's buffer, the rest wait in its ring. */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fair_logger, "old"), 0);
    pthread_join(t, NULL);
    usleep(1200 * 1000); /* past the writer's 500 ms retry: its buffer is full by now */
    cr_assert_eq(pthread_create(&t, NULL, fair_logger, "new"), 0);
    pthread_join(t, NULL);

    /* A slow reader, 4 KiB at a time, to the end. */
    size_t max = (size_t)cap + 2 * FAIR_LINES * 400, len = 0;
    char *buf = malloc(max);
    cr_assert_not_null(buf);
    hk_log_stats_t st;
    for (;;) {
        ssize_t n = read(rd, buf + len, max - len < 4096 ? max - len : 4096);
        cr_assert_gt(n, 0);
        len += (size_t)n;
        hk_log_stats(&st);
        if (st.written == 2 * FAIR_LINES && st.bytes + (size_t)cap == len)
            break;
        usleep(100);
    }
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    close(rd);
    cr_assert_eq(st.dropped, 0);

    /* How many of the older ring's lines came out among the newer ring's. */
    const char *first_new = memmem(buf, len, "who=new ", 8), *last_new = NULL;
    cr_assert_not_null(first_new);
    for (const char *q = first_new; q;
         q = memmem(q + 8, len - (size_t)(q + 8 - buf), "who=new ", 8))
        last_new = q;
    size_t between = 0;
    for (const char *q = first_new; (q = memmem(q, (size_t)(last_new - q), "who=old ", 8)) != NULL;
         q += 8)
        between++;
    free(buf);
    cr_assert_geq(between, 100,
                  "the older ring is read while the newer one has lines: %zu of its lines "
                  "among the newer ring's",
                  between);
    tmpdir_clean(&td);
}
