/*
 * Sinks: a pipe nobody reads cannot stop the loop, nor close, nor exit; log
 * rotation moves the output to a new file.
 *
 * The headline test: a hark loop runs a 1 ms repeating timer, and every tick
 * logs 1,000 lines into a pipe that nobody reads, 1,000,000 in all. A logger
 * that blocked would hang on the first full pipe; this one drops and counts,
 * the 1,000 ticks complete, and once someone reads the pipe the "N messages
 * dropped" line shows up.
 */
#include "util.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

LOG_TMPDIR_SUITE(log_sink, 120);

enum { TICKS = 1000, PER_TICK = 1000 };

typedef struct ticker {
    hk_timer_t timer;
    int ticks;
    uint64_t refused;
    uint64_t max_call_ns;
} ticker_t;

static void on_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    ticker_t *tk = (ticker_t *)t;
    for (int i = 0; i < PER_TICK; i++) {
        uint64_t t0 = mono_ns();
        int r = hk_log(HK_LOG_INFO, "tick", "tick=%d i=%d", tk->ticks, i);
        uint64_t dt = mono_ns() - t0;
        if (dt > tk->max_call_ns && (tk->ticks || i)) /* the first call allocates the ring */
            tk->max_call_ns = dt;
        cr_assert(r == 0 || r == -EAGAIN);
        tk->refused += r == -EAGAIN;
    }
    if (++tk->ticks == TICKS)
        hk_close(&t->base, NULL);
}

static int contains_drop_line(const char *buf)
{
    return strstr(buf, " messages dropped\" dropped=") != NULL;
}

Test(log_sink, million_lines_into_unread_pipe_do_not_block_the_loop)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    hk_log_options_t o = {0};
    o.fd = p[1];
    cr_assert_eq(hk_log_open(&o), 0);
    close(p[1]);

    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    ticker_t tk = {0};
    cr_assert_eq(hk_timer_init(loop, &tk.timer), 0);
    cr_assert_eq(hk_timer_start_in(&tk.timer, on_tick, MSEC, MSEC), 0);
    uint64_t t0 = mono_ns();
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    uint64_t elapsed = mono_ns() - t0;
    cr_assert_eq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(hk_loop_free(loop), 0);
    cr_assert_eq(tk.ticks, TICKS);
    cr_log_info("1000 ticks in %.0f ms, slowest log call %.1f us, %llu refused",
                (double)elapsed / 1e6, (double)tk.max_call_ns / 1e3,
                (unsigned long long)tk.refused);
    cr_assert_lt(elapsed, 60 * SEC);

    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.logged + st.dropped, (uint64_t)TICKS * PER_TICK);
    cr_assert_eq(st.dropped, tk.refused);
    cr_assert_gt(st.dropped, 0, "an unread pipe must overflow");

    /* Someone reads at last: space returns and the gap is reported. */
    size_t cap = 4 << 20, len = 0;
    char *buf = malloc(cap);
    uint64_t until = mono_ns() + 20 * SEC;
    while (mono_ns() < until) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        if (len + 65536 > cap) /* keep the tail: the notice comes late */
            len = 0;
        ssize_t n = read(p[0], buf + len, cap - len - 1);
        cr_assert_gt(n, 0);
        len += (size_t)n;
        buf[len] = '\0';
        if (contains_drop_line(buf))
            break;
        if (len > 256 && !contains_drop_line(buf)) { /* keep a little overlap */
            memmove(buf, buf + len - 256, 256);
            len = 256;
        }
    }
    cr_assert(contains_drop_line(buf), "no \"N messages dropped\" line once the pipe was read");
    free(buf);

    /* Stop reading again: close must still return within its bound. */
    for (int i = 0; i < 20000; i++)
        HK_LOGI("more", "i=%d pad=%s", i, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
    uint64_t c0 = mono_ns();
    int r = hk_log_close(200 * MSEC);
    uint64_t took = mono_ns() - c0;
    cr_assert_eq(r, -ETIMEDOUT);
    cr_assert_lt(took, 2 * SEC, "close took %.0f ms", (double)took / 1e6);
    hk_log_stats(&st);
    cr_assert_gt(st.lost, 0);
    close(p[0]);
    tmpdir_clean(&td);
}

Test(log_sink, close_with_stalled_sink_is_bounded)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    hk_log_options_t o = {0};
    o.fd = p[1];
    o.ring_bytes = 1 << 20;
    cr_assert_eq(hk_log_open(&o), 0);
    for (int i = 0; i < 20000; i++)
        HK_LOGW("stuck", "i=%d pad=%s", i, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(hk_log_flush(50 * MSEC), -ETIMEDOUT);
    uint64_t t0 = mono_ns();
    cr_assert_eq(hk_log_close(300 * MSEC), -ETIMEDOUT);
    uint64_t took = mono_ns() - t0;
    cr_assert_geq(took, 250 * MSEC, "close gave up early: %.0f ms", (double)took / 1e6);
    cr_assert_lt(took, 2 * SEC, "close took %.0f ms", (double)took / 1e6);
    hk_log_stats_t st2;
    hk_log_stats(&st2);
    cr_assert_gt(st2.lost, 0);
    /* Drop notices are lines too. */
    cr_assert_eq(st2.written + st2.lost, st2.logged + st2.drop_reports,
                 "written %llu + lost %llu != logged %llu + notices %llu",
                 (unsigned long long)st2.written, (unsigned long long)st2.lost,
                 (unsigned long long)st2.logged, (unsigned long long)st2.drop_reports);
    /* The close released the sink: the pipe's write end is ours only. */
    close(p[1]);
    close(p[0]);

    /* A zero timeout is one attempt, and the logger can be opened again. */
    o.fd = 0;
    o.path = tmpdir_path(&td, "again.log");
    cr_assert_eq(hk_log_open(&o), 0);
    HK_LOGI("again");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    cr_assert_eq(hk_log_close(0), 0);
    char *out = slurp(o.path, NULL);
    cr_assert(strstr(out, "msg=\"again\""));
    free(out);
    tmpdir_clean(&td);
}

Test(log_sink, reopen_moves_output)
{
    char a[128], a1[128], b[128], bad[128];
    snprintf(a, sizeof a, "%s", tmpdir_path(&td, "app.log"));
    snprintf(a1, sizeof a1, "%s", tmpdir_path(&td, "app.log.1"));
    snprintf(b, sizeof b, "%s", tmpdir_path(&td, "other.log"));
    snprintf(bad, sizeof bad, "%s", tmpdir_path(&td, "no/such/dir.log"));
    hk_log_options_t o = opts_path(a, HK_LOG_TEXT);
    cr_assert_eq(hk_log_open(&o), 0);
    HK_LOGI("one");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    /* logrotate: rename, then reopen the same path. */
    cr_assert_eq(rename(a, a1), 0);
    cr_assert_eq(hk_log_reopen(NULL), 0);
    HK_LOGI("two");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    /* Another path. */
    cr_assert_eq(hk_log_reopen(b), 0);
    HK_LOGI("three");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    /* A failed reopen keeps the current sink and says so there. */
    cr_assert_eq(hk_log_reopen(bad), 0);
    HK_LOGI("four");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.reopens, 2);
    cr_assert_eq(st.reopen_errors, 1);
    cr_assert_eq(hk_log_close(5 * SEC), 0);

    char *s1 = slurp(a1, NULL), *s2 = slurp(a, NULL), *s3 = slurp(b, NULL);
    cr_assert(strstr(s1, "msg=\"one\"") && !strstr(s1, "msg=\"two\""), "%s", s1);
    cr_assert(strstr(s2, "msg=\"two\"") && !strstr(s2, "msg=\"three\""), "%s", s2);
    cr_assert(strstr(s3, "msg=\"three\"") && strstr(s3, "msg=\"four\""), "%s", s3);
    cr_assert(strstr(s3, "level=error msg=\"log reopen failed\" errno=2 path="), "%s", s3);
    free(s1);
    free(s2);
    free(s3);

    /* An fd sink has no path to reopen. */
    o.path = NULL;
    cr_assert_eq(hk_log_open(&o), 0);
    cr_assert_eq(hk_log_reopen(NULL), -EINVAL);
    cr_assert_eq(hk_log_close(SEC), 0);
    tmpdir_clean(&td);
}

/* exit() with lines stuck in an unread pipe: the exit handler gives up in time. */
Test(log_sink, exit_with_stalled_sink_does_not_hang)
{
    int p[2];
    cr_assert_eq(pipe2(p, 0), 0);
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", p[1]);
    char *argv[] = {(char *)LOG_EXIT_HELPER, fdarg, NULL};
    pid_t pid;
    uint64_t t0 = mono_ns();
    cr_assert_eq(posix_spawn(&pid, LOG_EXIT_HELPER, NULL, NULL, argv, environ), 0);
    close(p[1]);
    int status = 0;
    pid_t w = 0;
    while (mono_ns() - t0 < 20 * SEC && (w = waitpid(pid, &status, WNOHANG)) == 0)
        usleep(5000);
    uint64_t took = mono_ns() - t0;
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert_fail("the helper hung at exit");
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "helper status %#x", status);
    cr_assert_lt(took, 10 * SEC, "exit took %.0f ms", (double)took / 1e6);
    char buf[4096];
    ssize_t n = read(p[0], buf, sizeof buf - 1); /* something reached the pipe */
    cr_assert_gt(n, 0);
    close(p[0]);
    tmpdir_clean(&td);
}

/*
 * A sink that fails after taking part of a line (a full disk; here a file
 * size limit, which makes write(2) short and then fail with EFBIG): the cut
 * line is lost and counted, and the next line still starts a line of its
 * own. It once went on right after the fragment, one unparsable JSON line.
 */
Test(log_sink, line_cut_by_a_failing_sink_does_not_glue_the_next)
{
    char path[128];
    snprintf(path, sizeof path, "%s", tmpdir_path(&td, "cut.log"));
    hk_log_options_t o = opts_path(path, HK_LOG_JSON);
    cr_assert_eq(hk_log_open(&o), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 5000;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    for (int i = 0; i < 200; i++)
        HK_LOGI("before", "i=%d pad=%s", i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    (void)hk_log_flush(5 * SEC);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0); /* the disk has room again */
    for (int j = 0; j < 20; j++)
        HK_LOGI("after", "j=%d", j);
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_geq(st.write_errors, 1);
    cr_assert_geq(st.lost, 1);
    cr_assert_eq(hk_log_close(5 * SEC), 0);

    char *s = slurp(path, NULL);
    int after = 0;
    for (char *line = s, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert_not_null(nl, "the file ends inside a line");
        *nl = '\0';
        char *ts = strstr(line, "{\"ts\"");
        cr_assert(ts == NULL || strstr(ts + 1, "{\"ts\"") == NULL, "two lines glued: %s", line);
        if (strstr(line, "\"msg\":\"after\"")) {
            cr_assert_eq(line[0], '{', "an 'after' line does not start a line: %s", line);
            after++;
        }
    }
    cr_assert_eq(after, 20);
    free(s);
    tmpdir_clean(&td);
}

static size_t count_lines_in_n(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

/* Whether every line of s[0 .. len) parses as a text line; counts them. */
static int all_lines_parse(const char *s, size_t len, size_t *lines)
{
    const char *p = s, *end = s + len;
    *lines = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return 0; /* a line without its end */
        parsed_t pr;
        if (parse_text(p, (size_t)(nl - p), &pr) != 0)
            return 0;
        (*lines)++;
        p = nl + 1;
    }
    return 1;
}

/*
 * The log opened on a fifo app.fifo (ring of 1 MiB), its path for the new
 * file (new.log) in b; returns the fifo's non-blocking reader and its
 * capacity in *cap.
 */
static int open_log_on_fifo(char b[128], int *cap)
{
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s", tmpdir_path(&td, "app.fifo"));
    snprintf(b, 128, "%s", tmpdir_path(&td, "new.log"));
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    cr_assert_geq(rd, 0);
    *cap = fcntl(rd, F_GETPIPE_SZ);
    hk_log_options_t o = opts_path(fifo, HK_LOG_TEXT);
    o.ring_bytes = 1 << 20;
    cr_assert_eq(hk_log_open(&o), 0);
    return rd;
}

enum { FIFO_LINES = 200 };

/*
 * Lines of 1000-odd bytes, more than the fifo holds: it fills, and the
 * writer waits for room. "Full" is not FIONREAD == capacity: a pipe holds
 * its bytes in page slots, and when the writer takes the lines one at a
 * time (a slow writer thread, as under TSan) each page keeps only three
 * whole lines, so the slots run out first. The fifo counts as full once it
 * holds at least half its capacity and has stopped growing for 100 ms.
 */
static void fill_fifo(int rd, int cap)
{
    char pad[1001];
    memset(pad, 'p', 1000);
    pad[1000] = '\0';
    for (int i = 0; i < FIFO_LINES; i++)
        cr_assert_eq(HK_LOGI("line", "seq=%04d pad=%s", i, pad), 0);
    int queued = 0, last = -1, still = 0;
    for (int i = 0; i < 20000 && still < 100; i++) {
        cr_assert_eq(ioctl(rd, FIONREAD, &queued), 0);
        still = queued == last && queued >= cap / 2 ? still + 1 : 0;
        last = queued;
        usleep(1000);
    }
    cr_assert_eq(still, 100, "the writer filled the fifo (%d of %d bytes)", queued, cap);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_lt(st.written, FIFO_LINES, "lines wait behind the full fifo");
}

/*
 * A reopen while the old sink (a fifo) took only part of a line: the rest
 * of that line must not go to the new file. Each line goes whole into one
 * file: the old one, which gets the rest once its reader reads on.
 */
Test(log_sink, reopen_never_splits_a_line_across_files)
{
    char b[128];
    int cap;
    int rd = open_log_on_fifo(b, &cap);
    cr_assert_gt(cap, 0);
    fill_fifo(rd, cap);

    cr_assert_eq(hk_log_reopen(b), 0);
    /* Let the writer take the request while the fifo is still full (it swaps, or waits). */
    hk_log_stats_t st;
    for (int i = 0; i < 200; i++) {
        hk_log_stats(&st);
        if (st.reopens)
            break;
        usleep(1000);
    }
    HK_LOGI("after");
    /* Read the fifo until the reopen (and the lines before the flush) are done. */
    size_t max = (size_t)FIFO_LINES * 1200 + 4096, len = 0;
    char *old = malloc(max);
    cr_assert_not_null(old);
    for (int i = 0;; i++) {
        cr_assert_lt(i, 1000, "flush never completed");
        ssize_t n;
        while ((n = read(rd, old + len, max - len)) > 0)
            len += (size_t)n;
        if (hk_log_flush(20 * MSEC) == 0)
            break;
    }
    ssize_t n;
    while ((n = read(rd, old + len, max - len)) > 0)
        len += (size_t)n;
    cr_assert_eq(hk_log_close(5 * SEC), 0);
    close(rd);

    size_t nb = 0, lines_old = 0, lines_new = 0;
    char *nw = slurp(b, &nb);
    cr_assert_gt(len, (size_t)cap);
    cr_assert_eq(old[len - 1], '\n', "the fifo's last line is whole");
    cr_assert(all_lines_parse(old, len, &lines_old), "every line in the fifo parses");
    cr_assert(all_lines_parse(nw, nb, &lines_new), "every line in the new file parses: %.80s", nw);
    hk_log_stats(&st);
    cr_assert_eq(lines_old + lines_new, FIFO_LINES + 1);
    cr_assert_eq(st.lost, 0);
    cr_assert(strstr(nw, "msg=\"after\"") && !memmem(old, len, "msg=\"after\"", 11),
              "a line logged after the request: the new file");
    free(old);
    free(nw);
    tmpdir_clean(&td);
}

/*
 * Rotation: lines logged before hk_log_reopen go to the old file, lines
 * logged after it to the new one, even when the earlier ones were still
 * waiting in their rings when the writer took the request (hark-httpd's
 * "listening" line, logged just before a quick reload, went to the new file).
 */
Test(log_sink, lines_before_reopen_go_to_the_old_file)
{
    char a[128], a1[128];
    snprintf(a, sizeof a, "%s", tmpdir_path(&td, "app.log"));
    snprintf(a1, sizeof a1, "%s", tmpdir_path(&td, "app.log.1"));
    hk_log_options_t o = opts_path(a, HK_LOG_TEXT);
    /* A writer that sleeps between passes: logged lines wait in the ring. */
    o.flush_interval_ns = 30 * SEC;
    cr_assert_eq(hk_log_open(&o), 0);
    HK_LOGI("first");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);

    enum { BEFORE = 100 };
    for (int i = 0; i < BEFORE; i++)
        cr_assert_eq(HK_LOGI("before", "seq=%d", i), 0);
    cr_assert_eq(rename(a, a1), 0);
    cr_assert_eq(hk_log_reopen(NULL), 0);
    HK_LOGI("after");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    cr_assert_eq(hk_log_close(5 * SEC), 0);

    char *olds = slurp(a1, NULL), *news = slurp(a, NULL);
    size_t in_old = 0, in_new = 0;
    for (const char *p = olds; (p = strstr(p, "msg=\"before\"")) != NULL; p++)
        in_old++;
    for (const char *p = news; (p = strstr(p, "msg=\"before\"")) != NULL; p++)
        in_new++;
    cr_assert_eq(in_old, BEFORE,
                 "logged before the reopen: the old file (%zu there, %zu in the new)", in_old,
                 in_new);
    cr_assert_eq(in_new, 0);
    cr_assert(strstr(news, "msg=\"after\"") && !strstr(olds, "msg=\"after\""), "%s", news);
    free(olds);
    free(news);
    tmpdir_clean(&td);
}

/*
 * The same with an old sink nobody reads: after a second the reopen gives up
 * on it. The rest of the line begun there is lost (counted), the lines that
 * waited for it go to the new file, whole.
 */
Test(log_sink, reopen_gives_up_on_a_stuck_old_sink)
{
    char b[128];
    int cap;
    int rd = open_log_on_fifo(b, &cap);
    fill_fifo(rd, cap);
    cr_assert_eq(hk_log_reopen(b), 0);
    HK_LOGI("after");
    cr_assert_eq(hk_log_flush(10 * SEC), 0, "the reopen gave up on the fifo");
    cr_assert_eq(hk_log_close(5 * SEC), 0);

    char *old = malloc((size_t)cap + 1);
    ssize_t n = read(rd, old, (size_t)cap);
    cr_assert_gt(n, 0);
    close(rd);
    size_t nb = 0, lines_new = 0;
    char *nw = slurp(b, &nb);
    cr_assert(all_lines_parse(nw, nb, &lines_new), "the new file starts whole: %.80s", nw);
    size_t lines_old = count_lines_in_n(old, (size_t)n);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(old[n - 1] == '\n' ? 0u : 1u, st.lost, "the cut line is the one lost");
    cr_assert_eq(lines_old + lines_new + st.lost, FIFO_LINES + 1);
    cr_assert_eq(st.written + st.lost, st.logged + st.drop_reports);
    cr_assert(strstr(nw, "msg=\"after\""));
    free(old);
    free(nw);
    tmpdir_clean(&td);
}
