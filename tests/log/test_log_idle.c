/*
 * The idle writer: once nothing is logged it sleeps on its eventfd without a
 * short timer (its membarrier stands in for the producers' fence, writer.c),
 * so an idle process is not woken ten times a second; a line logged then
 * still wakes it at once. Counts the writer thread's voluntary context
 * switches (/proc/self/task/N/status), which a timer drives, not the load.
 * A closing writer keeps a short sleep: it waits for calls whose end wakes
 * nobody. Runs under TSan too (label "threads").
 */
#include "util.h"

#include <dirent.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <sys/syscall.h>

#include "log/internal.h"

LOG_TMPDIR_SUITE(log_idle, 60);

/* The writer thread's (named "hk-log") voluntary context switches so far, or -1. */
static long writer_switches(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    long n = -1;
    struct dirent *e;
    while (n < 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int got = fgets(comm, sizeof comm, f) != NULL;
        fclose(f);
        if (!got || strcmp(comm, "hk-log\n") != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        char line[128];
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
                break;
        if (f)
            fclose(f);
    }
    closedir(d);
    return n;
}

/* Reads from fd until buf holds a line ending in "\n" with want in it, or ms pass. */
static int read_line(int fd, const char *want, int ms)
{
    char buf[4096];
    size_t len = 0;
    uint64_t end = mono_ns() + (uint64_t)ms * MSEC;
    while (mono_ns() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, want) && buf[len - 1] == '\n')
            return 1;
        if (len == sizeof buf - 1)
            len = 0;
    }
    return 0;
}

Test(log_idle, an_idle_writer_sleeps_until_a_line_comes)
{
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
        /* (No skip in the TSan stand-in for Criterion.) */
        fprintf(stderr, "no membarrier here: the idle writer wakes every 100 ms by design\n");
        return;
    }
    int rd = log_open_pipe(1 << 16);
    cr_assert_eq(hk_log(HK_LOG_INFO, "first-line", "n=%d", 1), 0);
    cr_assert(read_line(rd, "first-line", 5000), "the first line did not come");
    /*
     * 64 idle passes of 1 ms, then the idle sleep: wait until the writer has
     * not woken for 300 ms (a loaded machine stretches the passes), 3 s at
     * most; a writer that never stops waking fails the count below.
     */
    long a = writer_switches();
    cr_assert_geq(a, 0, "no hk-log thread");
    for (int i = 0; i < 10; i++) {
        usleep(300 * 1000);
        long now = writer_switches();
        if (now == a)
            break;
        a = now;
    }
    usleep(1000 * 1000);
    long b = writer_switches();
    cr_assert_leq(b - a, 2, "the idle writer woke %ld times in 1 s", b - a);
    /* Asleep without a timer: the line's own wake-up must bring it out (not the 10 s bound). */
    cr_assert_eq(hk_log(HK_LOG_INFO, "second-line", "n=%d", 2), 0);
    cr_assert(read_line(rd, "second-line", 3000), "a line logged to an idle writer waited");
    cr_assert_eq(hk_log_close(2 * SEC), 0);
    close(rd);
}

static void *close_in_5s(void *arg)
{
    *(int *)arg = hk_log_close(5 * SEC);
    return NULL;
}

/*
 * A closing writer waits for every call between its open check and its end
 * (writer.c, no_call_running), but the end of a call wakes nobody (a line's
 * commit does, a call that ends without one, or is descheduled between the
 * two, does not). Its sleep must stay short while it waits, or close takes
 * its whole timeout: a call held here for 500 ms made hk_log_close(5 s) take
 * the 5 s. The call is made by hand (hk__log_call_begin, as hk_logv does)
 * so that it can last.
 */
Test(log_idle, a_close_that_waits_for_a_call_ends_soon_after_it)
{
    int rd = log_open_pipe(1 << 16);
    cr_assert_eq(hk_log(HK_LOG_INFO, "first-line", "n=%d", 1), 0);
    cr_assert(read_line(rd, "first-line", 5000), "the first line did not come");
    hk__log_ring_t *r = hk__log_ring_get();
    cr_assert_not_null(r);
    cr_assert(hk__log_call_begin(r, &hk__log.open), "the logger is open");
    int rc = -1;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, close_in_5s, &rc), 0);
    /* Long enough for the writer to see the call and go to sleep (64 short passes first). */
    usleep(500 * 1000);
    uint64_t ended = mono_ns();
    hk__log_call_end(r);
    pthread_join(t, NULL);
    uint64_t took = mono_ns() - ended;
    cr_assert_eq(rc, 0);
    cr_assert_lt(took, 2 * SEC, "close ended %llu ms after the call",
                 (unsigned long long)(took / MSEC));
    close(rd);
}

/* Waits until the writer has had time to reach its idle sleep (64 passes of 1 ms). */
static void let_the_writer_sleep(void)
{
    usleep(400 * 1000);
}

static void *log_then_idle(void *arg)
{
    (void)arg;
    cr_assert_eq(hk_log(HK_LOG_INFO, "from-a-thread", "n=%d", 1), 0);
    let_the_writer_sleep();
    return NULL;
}

/*
 * What wakes the idle writer besides a line: a thread's exit (its ring is
 * freed by the writer) and a drop (its notice). Each waited for the idle
 * sleep's end before: 9.6 s, by hand.
 */
Test(log_idle, an_exited_threads_ring_is_freed_at_once)
{
    int rd = log_open_pipe(1 << 16);
    cr_assert_eq(hk_log(HK_LOG_INFO, "first-line", "n=%d", 1), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, log_then_idle, NULL), 0);
    pthread_join(t, NULL);
    hk_log_stats_t st;
    uint64_t until = mono_ns() + 2 * SEC;
    do {
        hk_log_stats(&st);
        if (st.rings == 1)
            break;
        usleep(1000);
    } while (mono_ns() < until);
    cr_assert_eq(st.rings, 1, "the exited thread's ring is still there");
    cr_assert_eq(hk_log_close(2 * SEC), 0);
    close(rd);
}

Test(log_idle, a_drop_notice_comes_at_once)
{
    int rd = log_open_pipe(1 << 16);
    cr_assert_eq(hk_log_access_open(tmpdir_path(&td, "access.log")), 0);
    cr_assert_eq(hk_log(HK_LOG_INFO, "first-line", "n=%d", 1), 0);
    cr_assert(read_line(rd, "first-line", 5000), "the first line did not come");
    let_the_writer_sleep();
    static char big[HK_LOG_ACCESS_LINE_MAX];
    memset(big, 'a', sizeof big);
    cr_assert_eq(hk_log_access(big, sizeof big), -EMSGSIZE);
    cr_assert(read_line(rd, "1 access lines dropped", 2000), "no notice of the drop");
    cr_assert_eq(hk_log_close(2 * SEC), 0);
    close(rd);
}
