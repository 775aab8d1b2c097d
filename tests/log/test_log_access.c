/*
 * The access channel: lines arrive verbatim and in order in their own sink
 * while hk_log lines go to the main one; rotation moves both sinks; a
 * stalled access sink makes callers drop (counted, reported in the main
 * sink), never block; several threads at once. Runs under TSan too.
 */
#include "util.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>

LOG_TMPDIR_SUITE(log_access, 60);

/* Sums the N of every "N access lines dropped" notice in the main sink's text. */
static uint64_t access_notices(const char *s, uint64_t *count)
{
    uint64_t sum = 0;
    *count = 0;
    const char *p = s;
    while ((p = strstr(p, " access lines dropped\" dropped=")) != NULL) {
        p += strlen(" access lines dropped\" dropped=");
        sum += strtoull(p, NULL, 10);
        (*count)++;
    }
    return sum;
}

Test(log_access, lines_verbatim_in_order_apart_from_main)
{
    char mainp[128], accp[128];
    snprintf(mainp, sizeof mainp, "%s", tmpdir_path(&td, "main.log"));
    snprintf(accp, sizeof accp, "%s", tmpdir_path(&td, "access.log"));

    cr_assert_eq(hk_log_access_open(accp), -EBADF, "the logger is not open yet");
    cr_assert_eq(hk_log_access("x", 1), -EBADF);
    hk_log_options_t o = opts_path(mainp, HK_LOG_TEXT);
    cr_assert_eq(hk_log_open(&o), 0);
    cr_assert_eq(hk_log_access("x", 1), -EBADF, "no access sink yet");
    cr_assert_eq(hk_log_access_open(NULL), -EINVAL);
    cr_assert_eq(hk_log_access_open(tmpdir_path(&td, "no/such/dir")), -ENOENT);
    cr_assert_eq(hk_log_access_open(accp), 0);
    cr_assert_eq(hk_log_access_open(accp), -EBUSY);

    /* Verbatim: quotes, backslashes, tabs and UTF-8 untouched; no timestamp, no level. */
    static const char *const lines[] = {
        "127.0.0.1 - - [27/Nov/2026:13:15:39 +0000] \"GET /a?q HTTP/1.1\" 200 12",
        "{\"remote\":\"::1\",\"target\":\"/\\\"q\\\"\",\"status\":404}\n",
        "tab\there back\\slash caf\xc3\xa9 level=info msg=x",
        "",
    };
    char want[4096] = "";
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(hk_log(HK_LOG_INFO, "main", "i=%d", i), 0);
        cr_assert_eq(hk_log_access(lines[i], strlen(lines[i])), 0);
        strcat(want, lines[i]);
        if (!*lines[i] || lines[i][strlen(lines[i]) - 1] != '\n')
            strcat(want, "\n");
    }
    /* Only the first len bytes count. */
    cr_assert_eq(hk_log_access("prefix-and-more", 6), 0);
    strcat(want, "prefix\n");
    /* The longest line fits, one byte more is refused and counted. */
    static char big[HK_LOG_ACCESS_LINE_MAX + 1];
    memset(big, 'b', sizeof big);
    cr_assert_eq(hk_log_access(big, HK_LOG_ACCESS_LINE_MAX - 1), 0);
    cr_assert_eq(hk_log_access(big, HK_LOG_ACCESS_LINE_MAX), -EMSGSIZE);
    /* A second line inside one call would break the one-call-one-line count. */
    cr_assert_eq(hk_log_access("a\nb", 3), -EINVAL);
    cr_assert_eq(hk_log_access(NULL, 1), -EINVAL);
    cr_assert_eq(hk_log_access("last\n", 5), 0);
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.access_lines, 7);
    cr_assert_eq(st.access_written, 7);
    cr_assert_eq(st.access_dropped, 1);
    cr_assert_eq(st.access_drop_reports, 1);
    cr_assert_eq(st.access_lost, 0);
    cr_assert_eq(st.logged, 4);
    cr_assert_eq(st.written, 4 + 1, "4 lines and the notice");

    size_t alen;
    char *acc = slurp(accp, &alen);
    cr_assert_eq(st.access_bytes, alen);
    size_t wl = strlen(want);
    cr_assert_eq(memcmp(acc, want, wl), 0, "access file: %s", acc);
    cr_assert_eq(alen, wl + HK_LOG_ACCESS_LINE_MAX - 1 + strlen("\nlast\n"));
    cr_assert_eq(memcmp(acc + wl, big, HK_LOG_ACCESS_LINE_MAX - 1), 0);
    cr_assert_str_eq(acc + wl + HK_LOG_ACCESS_LINE_MAX - 1, "\nlast\n");
    free(acc);

    char *m = slurp(mainp, NULL);
    cr_assert_eq(count_lines_in(m), 5, "%s", m);
    cr_assert(strstr(m, "msg=\"main\" i=3"), "%s", m);
    cr_assert(!strstr(m, "GET /a") && !strstr(m, "prefix"), "an access line in the main sink");
    cr_assert(strstr(m, "level=warn msg=\"1 access lines dropped\" dropped=1 tid="), "%s", m);
    uint64_t n;
    cr_assert_eq(access_notices(m, &n), 1);
    free(m);

    /* Close flushes and closes the access sink; a new logger starts without one. */
    cr_assert_eq(hk_log_access("at close", 8), 0);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    acc = slurp(accp, NULL);
    cr_assert(strstr(acc, "\nlast\nat close\n"));
    free(acc);
    cr_assert_eq(hk_log_access("x", 1), -EBADF);
    cr_assert_eq(hk_log_open(&o), 0);
    cr_assert_eq(hk_log_access("x", 1), -EBADF);
    cr_assert_eq(hk_log_access_open(accp), 0);
    cr_assert_eq(hk_log_access("again", 5), 0);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    acc = slurp(accp, NULL);
    cr_assert(strstr(acc, "\nat close\nagain\n"), "%s", acc);
    free(acc);
    tmpdir_clean(&td);
}

Test(log_access, rotation_moves_both_sinks)
{
    char a[128], a1[128], m[128], m1[128], b[128];
    snprintf(a, sizeof a, "%s", tmpdir_path(&td, "access.log"));
    snprintf(a1, sizeof a1, "%s", tmpdir_path(&td, "access.log.1"));
    snprintf(m, sizeof m, "%s", tmpdir_path(&td, "main.log"));
    snprintf(m1, sizeof m1, "%s", tmpdir_path(&td, "main.log.1"));
    snprintf(b, sizeof b, "%s", tmpdir_path(&td, "other-access.log"));
    hk_log_options_t o = opts_path(m, HK_LOG_JSON);
    cr_assert_eq(hk_log_open(&o), 0);
    cr_assert_eq(hk_log_access_reopen(NULL), -EBADF);
    cr_assert_eq(hk_log_access_open(a), 0);
    cr_assert_eq(hk_log_access("one", 3), 0);
    HK_LOGI("m-one");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    /* logrotate renames both files, then signals: one reopen opens both paths again. */
    cr_assert_eq(rename(a, a1), 0);
    cr_assert_eq(rename(m, m1), 0);
    cr_assert_eq(hk_log_reopen(NULL), 0);
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    cr_assert_eq(hk_log_access("two", 3), 0);
    HK_LOGI("m-two");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    /* The access sink alone, to another path, then a failed move that keeps it. */
    cr_assert_eq(hk_log_access_reopen(b), 0);
    cr_assert_eq(hk_log_flush(5 * SEC), 0, "a reopen is queued: wait until it is done");
    cr_assert_eq(hk_log_access("three", 5), 0);
    cr_assert_eq(hk_log_access_reopen(tmpdir_path(&td, "no/such/dir.log")), 0);
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    cr_assert_eq(hk_log_access("four", 4), 0);
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.reopens, 1);
    cr_assert_eq(st.access_reopens, 2);
    cr_assert_eq(st.reopen_errors, 1);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    hk_log_stats(&st);
    cr_assert_eq(st.written + st.lost,
                 st.logged + st.drop_reports + st.access_drop_reports + st.reopen_errors);

    char *s = slurp(a1, NULL);
    cr_assert_str_eq(s, "one\n");
    free(s);
    s = slurp(a, NULL);
    cr_assert_str_eq(s, "two\n");
    free(s);
    s = slurp(b, NULL);
    cr_assert_str_eq(s, "three\nfour\n");
    free(s);
    s = slurp(m1, NULL);
    cr_assert(strstr(s, "\"msg\":\"m-one\"") && !strstr(s, "m-two"), "%s", s);
    free(s);
    s = slurp(m, NULL);
    cr_assert(strstr(s, "\"msg\":\"m-two\""), "%s", s);
    cr_assert(strstr(s, "\"level\":\"error\",\"msg\":\"access log reopen failed\",\"errno\":2,"),
              "%s", s);
    free(s);
    tmpdir_clean(&td);
}

/* "-" is standard output: a private description made when the sink opens. */
Test(log_access, stdout_sink)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_eq(dup2(p[1], STDOUT_FILENO), STDOUT_FILENO);
    hk_log_options_t o = opts_path(tmpdir_path(&td, "main.log"), HK_LOG_TEXT);
    cr_assert_eq(hk_log_open(&o), 0);
    int r = hk_log_access_open("-");
    dup2(saved, STDOUT_FILENO); /* the sink keeps its own description of the pipe */
    close(saved);
    close(p[1]);
    cr_assert_eq(r, 0);
    cr_assert_eq(hk_log_access_reopen(NULL), -EINVAL, "standard output has no path");
    cr_assert_eq(hk_log_reopen(NULL), 0, "the main sink has one");
    cr_assert_eq(hk_log_access("to stdout", 9), 0);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    char buf[64] = "";
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    cr_assert_eq(n, 10);
    cr_assert_str_eq(buf, "to stdout\n");
    close(p[0]);
    tmpdir_clean(&td);
}

enum { STALL_LINES = 20000 };

/*
 * An access sink that is a pipe nobody reads, full before the first line
 * (of empty lines), so that what the writer can hold (its buffer, the ring)
 * is all that is accepted whatever the timing: callers drop, nobody blocks.
 */
static int open_stalled(int p[2], hk_log_options_t *o, const char *mainp)
{
    cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    char fill[4096];
    memset(fill, '\n', sizeof fill);
    while (write(p[1], fill, sizeof fill) > 0)
        ;
    cr_assert_eq(errno, EAGAIN);
    *o = opts_path(mainp, HK_LOG_TEXT);
    o->ring_bytes = 16 * 1024;
    cr_assert_eq(hk_log_open(o), 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    cr_assert_eq(hk_log_access_open(path), 0);
    close(p[1]);
    uint64_t refused = 0;
    char line[160];
    for (int i = 0; i < STALL_LINES; i++) {
        int n = snprintf(line, sizeof line, "seq=%d %s", i,
                         "padpadpadpadpadpadpadpadpadpadpadpadpadpadpadpadpadpadpadpadpadpad");
        int r = hk_log_access(line, (size_t)n);
        cr_assert(r == 0 || r == -EAGAIN, "r=%d", r);
        refused += r == -EAGAIN;
    }
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.access_lines + st.access_dropped, STALL_LINES);
    cr_assert_eq(st.access_dropped, refused);
    cr_assert_gt(refused, 0, "1.7 MB cannot fit the writer's buffer and a ring");
    return (int)refused;
}

typedef struct seq_check {
    int next;
    uint64_t lines;
    char part[256];
    size_t plen;
} seq_check_t;

/* Feeds pipe bytes; checks every whole line is "seq=N pad..." with N increasing. */
static void seq_feed(seq_check_t *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && c->plen == 0)
            continue; /* the filler */
        if (p[i] != '\n') {
            cr_assert_lt(c->plen, sizeof c->part - 1);
            c->part[c->plen++] = p[i];
            continue;
        }
        c->part[c->plen] = '\0';
        int seq = -1;
        cr_assert_eq(sscanf(c->part, "seq=%d ", &seq), 1, "broken line: %s", c->part);
        cr_assert_geq(seq, c->next, "out of order: %d after %d", seq, c->next - 1);
        cr_assert_eq(c->plen, strlen("seq= ") + (size_t)snprintf(NULL, 0, "%d", seq) + 66);
        c->next = seq + 1;
        c->lines++;
        c->plen = 0;
    }
}

Test(log_access, stalled_sink_drops_then_recovers)
{
    int p[2];
    hk_log_options_t o;
    char mainp[128];
    snprintf(mainp, sizeof mainp, "%s", tmpdir_path(&td, "main.log"));
    int refused = open_stalled(p, &o, mainp);
    cr_assert_eq(hk_log_flush(50 * MSEC), -ETIMEDOUT);

    /* Someone reads at last: every accepted line arrives, whole and in order. */
    seq_check_t c = {0};
    char buf[65536];
    uint64_t until = mono_ns() + 30 * SEC;
    int flushed = 0;
    while (!flushed && mono_ns() < until) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        if (poll(&pfd, 1, 10) > 0) {
            ssize_t n = read(p[0], buf, sizeof buf);
            cr_assert_gt(n, 0);
            seq_feed(&c, buf, (size_t)n);
            continue;
        }
        flushed = hk_log_flush(10 * MSEC) == 0;
    }
    cr_assert(flushed, "the access sink never caught up");
    while (poll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, 0) > 0) {
        ssize_t n = read(p[0], buf, sizeof buf);
        cr_assert_gt(n, 0);
        seq_feed(&c, buf, (size_t)n);
    }
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(c.plen, 0, "a partial line");
    cr_assert_eq(c.lines, st.access_written);
    cr_assert_eq(st.access_written, st.access_lines);
    cr_assert_eq(st.access_lines + (uint64_t)refused, STALL_LINES);

    /* The gaps are reported in the main sink, and the reports add up. */
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    char *m = slurp(mainp, NULL);
    uint64_t notices;
    cr_assert_eq(access_notices(m, &notices), (uint64_t)refused, "%s", m);
    cr_assert_eq(notices, st.access_drop_reports);
    free(m);
    close(p[0]);
    tmpdir_clean(&td);
}

Test(log_access, close_with_stalled_access_sink_is_bounded)
{
    int p[2];
    hk_log_options_t o;
    open_stalled(p, &o, tmpdir_path(&td, "main.log"));
    HK_LOGI("held back behind the access lines");
    cr_assert_eq(hk_log_close(200 * MSEC), -ETIMEDOUT);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_gt(st.access_lost, 0);
    cr_assert_eq(st.access_written + st.access_lost, st.access_lines);
    close(p[0]);
    tmpdir_clean(&td);
}

enum { THREADS = 4, LINES = 20000 };

static void *producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char line[96];
    for (int i = 0; i < LINES; i++) {
        int n = snprintf(line, sizeof line, "t=%d seq=%d \"GET / HTTP/1.1\" 200 0", id, i);
        /* Retry on a full ring: this test is about integrity, not drops. */
        while (hk_log_access(line, (size_t)n) == -EAGAIN)
            sched_yield();
        if (i % 8 == 0)
            while (hk_log(HK_LOG_INFO, "tick", "thread=%d seq=%d", id, i) == -EAGAIN)
                sched_yield();
    }
    return NULL;
}

Test(log_access, threads_lines_whole_and_ordered)
{
    char mainp[128], accp[128];
    snprintf(mainp, sizeof mainp, "%s", tmpdir_path(&td, "main.log"));
    snprintf(accp, sizeof accp, "%s", tmpdir_path(&td, "access.log"));
    hk_log_options_t o = opts_path(mainp, HK_LOG_TEXT);
    o.ring_bytes = 64 * 1024;
    cr_assert_eq(hk_log_open(&o), 0);
    cr_assert_eq(hk_log_access_open(accp), 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, producer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(hk_log_close(20 * SEC), 0);

    char *s = slurp(accp, NULL);
    int next[THREADS] = {0};
    size_t lines = 0;
    for (char *l = s, *nl; (nl = strchr(l, '\n')) != NULL; l = nl + 1) {
        *nl = '\0';
        int id = -1, seq = -1, len = 0;
        cr_assert_eq(sscanf(l, "t=%d seq=%d \"GET / HTTP/1.1\" 200 0%n", &id, &seq, &len), 2,
                     "broken line: %s", l);
        cr_assert_eq((size_t)len, strlen(l), "broken line: %s", l);
        cr_assert(id >= 0 && id < THREADS);
        cr_assert_eq(seq, next[id], "thread %d: %d after %d", id, seq, next[id] - 1);
        next[id]++;
        lines++;
    }
    cr_assert_eq(lines, (size_t)THREADS * LINES);
    free(s);
    /* Refused calls were retried but count as drops, with their notices. */
    hk_log_stats_t st;
    hk_log_stats(&st);
    s = slurp(mainp, NULL);
    cr_assert_eq(count_lines_in(s),
                 (size_t)THREADS * (LINES / 8) + st.drop_reports + st.access_drop_reports);
    cr_assert(!strstr(s, "GET /"));
    uint64_t notices;
    cr_assert_eq(access_notices(s, &notices), st.access_dropped);
    free(s);
    cr_assert_eq(st.access_written, (uint64_t)THREADS * LINES);
    cr_assert_eq(st.access_lines, (uint64_t)THREADS * LINES);
    tmpdir_clean(&td);
}
