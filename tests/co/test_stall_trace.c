/*
 * Backtraces in the coroutine stall monitor's reports: the monitor signals
 * the stalled worker, which takes the backtrace of the coroutine while it
 * still runs. A coroutine that spins inside a function with a distinctive
 * name must be reported with frames that name it (the executable exports its
 * symbols, ENABLE_EXPORTS); one that switched away before the signal could
 * be handled is reported without frames, and nothing breaks.
 *
 * The monitor waits a few ms for the worker's answer, so a worker that does
 * not get a CPU meanwhile (a loaded machine) is reported without frames; the
 * spinner then spins again, and the tests wait for a report with frames (at
 * most one a second) rather than take the first one.
 *
 * ThreadSanitizer holds an asynchronous signal until the thread calls an
 * intercepted function and runs the handler from there, on the coroutine's
 * stack. The spinner calls clock_gettime (hk_time_now), which TSan
 * intercepts, so the frames are asserted under TSan too; a coroutine that
 * spins without such a call gets no frames under TSan.
 */
#include <criterion/criterion.h>
#include <execinfo.h>
#include <hark.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MS UINT64_C(1000000)
#define STALL (20 * MS)
#define LONG_WAIT (UINT64_C(20000) * MS) /* only a hang would reach it */
#define SPIN_NAME "hk_test_stall_trace_spin"

/*
 * What the callback saw, on the monitor's thread. reset() writes the rest
 * before it clears seen (release); the callback reads seen (acquire) before
 * the rest, and sets it (release) after writing them.
 */
static const char *want; /* the coroutine name to record */
static int want_frames;  /* pass over reports without frames */
static int seen;         /* atomic: a report named it */
static int nframes;
static int named; /* a symbolized frame names SPIN_NAME */
static char symbols[4096];
static uint64_t spin_ns;       /* one burst of the spinner; set before the runtime starts */
static int (*spin_done)(void); /* the spinner stops when it returns nonzero */

static int seen_done(void)
{
    return __atomic_load_n(&seen, __ATOMIC_ACQUIRE);
}

static void reset(const char *name, int frames)
{
    want = name;
    want_frames = frames;
    nframes = named = 0;
    symbols[0] = '\0';
    spin_ns = 3 * STALL;
    spin_done = seen_done;
    __atomic_store_n(&seen, 0, __ATOMIC_RELEASE);
}

static void on_stall(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    (void)arg;
    if (__atomic_load_n(&seen, __ATOMIC_ACQUIRE) || !info->symbol ||
        strcmp(info->symbol, want) != 0 || (want_frames && info->nframes == 0))
        return;
    nframes = info->nframes;
    char **syms = info->nframes > 0 ? backtrace_symbols(info->frames, info->nframes) : NULL;
    for (int i = 0; syms && i < info->nframes; i++) {
        named |= strstr(syms[i], SPIN_NAME) != NULL;
        size_t len = strlen(symbols);
        snprintf(symbols + len, sizeof symbols - len, "\n  %s", syms[i]);
    }
    free(syms);
    __atomic_store_n(&seen, 1, __ATOMIC_RELEASE);
}

/*
 * Spins min_ns without switching. Not static (-rdynamic exports it) and
 * neither inlined nor cloned, so that backtrace_symbols names it.
 */
#if defined(__clang__)
#define HK_TEST_KEEP __attribute__((noinline))
#else
#define HK_TEST_KEEP __attribute__((noinline, noclone))
#endif
HK_TEST_KEEP uint64_t hk_test_stall_trace_spin(uint64_t min_ns);
HK_TEST_KEEP uint64_t hk_test_stall_trace_spin(uint64_t min_ns)
{
    uint64_t start = hk_time_now();
    volatile uint64_t x = 0;
    while (hk_time_now() - start < min_ns)
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ull + 1;
    return x;
}

/*
 * Spins in bursts until spin_done(). One burst may not do: the monitor
 * considers each slice once and reports at most once a second.
 */
static void *spinner(void *arg)
{
    (void)arg;
    uint64_t start = hk_time_now();
    do {
        hk_test_stall_trace_spin(spin_ns);
        hk_co_yield();
    } while (!spin_done() && hk_time_now() - start < LONG_WAIT);
    return NULL;
}

/* Runs spinner as a coroutine named arg and waits for it. */
static void *spawn_join(void *arg)
{
    hk_co_t *co;
    cr_assert_eq(hk_co_spawn(NULL, spinner, NULL, &(hk_co_attr_t){.name = arg}, &co), 0);
    cr_assert_eq(hk_co_join(co, NULL, HK_FOREVER), 0);
    return NULL;
}

static void assert_spinner_frames(void)
{
    cr_assert(__atomic_load_n(&seen, __ATOMIC_ACQUIRE), "no report of '%s' with frames", want);
    cr_assert(named, "no frame names " SPIN_NAME ":%s", symbols);
    /* The unwinder stopped at the coroutine's boot frame, well before the buffer's end. */
    cr_assert_lt(nframes, 32, "%d frames:%s", nframes, symbols);
}

Test(stall_trace, a_report_carries_the_stalled_coroutines_backtrace, .timeout = 60)
{
    reset("spinner", 1);
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2, .stall_ns = STALL, .stall_cb = on_stall};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    cr_assert_eq(hk_co_run(rt, spawn_join, "spinner", NULL), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    assert_spinner_frames();
}

/*
 * Blocks every signal on its worker, so the monitor's request goes unanswered
 * and the report comes without frames; then switches away and unblocks them:
 * the pending signal is handled in a later slice, whose frames must not be
 * taken for the stalled one's. The runtime has one worker, so the coroutine
 * unblocks on the thread where it blocked.
 */
static void *dodger(void *arg)
{
    (void)arg;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    uint64_t start = hk_time_now();
    while (!__atomic_load_n(&seen, __ATOMIC_ACQUIRE) && hk_time_now() - start < LONG_WAIT)
        ;
    hk_co_yield();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return NULL;
}

static void *dodge_then_spin(void *arg)
{
    (void)arg;
    hk_co_t *co;
    cr_assert_eq(hk_co_spawn(NULL, dodger, NULL, &(hk_co_attr_t){.name = "dodger"}, &co), 0);
    cr_assert_eq(hk_co_join(co, NULL, HK_FOREVER), 0);
    cr_assert(__atomic_load_n(&seen, __ATOMIC_ACQUIRE), "no report named 'dodger'");
    cr_assert_eq(nframes, 0, "the dodger's report has frames:%s", symbols);
    /* The late answer left the worker ready for the next request. */
    reset("spinner", 1);
    return spawn_join("spinner");
}

Test(stall_trace, a_coroutine_that_switched_away_is_reported_without_frames, .timeout = 60)
{
    reset("dodger", 0);
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 1, .stall_ns = STALL, .stall_cb = on_stall};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    cr_assert_eq(hk_co_run(rt, dodge_then_spin, NULL, NULL), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    assert_spinner_frames();
}

/* The default report goes to stderr, here a file that the spinner reads. */
static int report_fd = -1;
static char report[16384];

static int report_done(void)
{
    ssize_t n = pread(report_fd, report, sizeof report - 1, 0);
    report[n > 0 ? n : 0] = '\0';
    return strstr(report, SPIN_NAME) != NULL;
}

Test(stall_trace, the_default_report_prints_the_frames, .timeout = 60)
{
    char path[] = "/tmp/hk-stall-trace-XXXXXX";
    report_fd = mkstemp(path);
    cr_assert_geq(report_fd, 0);
    unlink(path);
    int saved = dup(2);
    cr_assert_geq(saved, 0);
    cr_assert_eq(dup2(report_fd, 2), 2);
    reset("spinner", 1);
    spin_done = report_done;
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2, .stall_ns = STALL};
    int r = hk_co_runtime_new(&rt, &o);
    if (r == 0) {
        r = hk_co_run(rt, spawn_join, "spinner", NULL);
        hk_co_runtime_free(rt);
    }
    dup2(saved, 2);
    close(saved);
    int done = report_done();
    close(report_fd);
    cr_assert_eq(r, 0);
    cr_assert(strstr(report, "hark: coroutine 'spinner' has held its worker"), "%s", report);
    cr_assert(done, "no frame names " SPIN_NAME ":\n%s", report);
}
