/*
 * Stall detector: a timer callback that sleeps 100 ms (a blocking call) and
 * one that computes for 100 ms are both reported with the callback's name, a
 * backtrace taken while they ran, and the CPU they used; reports are rate
 * limited while every stall is counted. The executable is linked with
 * -rdynamic (ENABLE_EXPORTS) so dladdr can name its functions.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <execinfo.h>
#include <hark.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Exported (not static) so that the detector can name them. */
void hk_test_stall_sleeper(hk_timer_t *t, uint64_t expirations);
void hk_test_stall_spinner(hk_timer_t *t, uint64_t expirations);
void hk_test_quick(hk_timer_t *t, uint64_t expirations);

#define MS(x) ((int64_t)(x)*1000000)

typedef struct report {
    int count;
    hk_stall_info_t info;
    char symbol[128];
    int frames_mention_sleeper;
    int nframes;
} report_t;

static void on_stall(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    report_t *r = arg;
    r->count++;
    r->info = *info;
    snprintf(r->symbol, sizeof r->symbol, "%s", info->symbol ? info->symbol : "");
    r->nframes = info->nframes;
    char **names = backtrace_symbols((void *const *)info->frames, info->nframes);
    for (int i = 0; names && i < info->nframes; i++) {
        if (strstr(names[i], "hk_test_stall_"))
            r->frames_mention_sleeper = 1;
    }
    free(names);
}

void hk_test_stall_sleeper(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
    struct timespec ts = {0, 100 * 1000 * 1000};
    while (nanosleep(&ts, &ts) < 0) {
    }
}

void hk_test_stall_spinner(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
    uint64_t end = hk_time_now() + (uint64_t)MS(100);
    volatile uint64_t x = 0;
    while (hk_time_now() < end)
        x++;
}

void hk_test_quick(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
}

static void run_one(hk_loop_t *loop, hk_timer_cb cb)
{
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, cb, 0, 0), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    hk_close(&t.base, NULL);
    hk_loop_run(loop, HK_RUN_DEFAULT);
}

Test(stall, a_sleeping_callback_is_named_with_a_backtrace)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    report_t r = {0};
    cr_assert_eq(hk_loop_stall_detect(loop, HK_STALL_DEFAULT_NS, on_stall, &r), 0);
    run_one(loop, hk_test_stall_sleeper);
    hk_loop_stats_t st;
    hk_loop_stats(loop, &st);
    cr_assert_eq(st.stalls, 1);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(r.symbol, "hk_test_stall_sleeper");
    cr_assert_geq(r.info.duration_ns, (uint64_t)MS(100));
    cr_assert_eq(r.info.threshold_ns, HK_STALL_DEFAULT_NS);
    cr_assert_gt(r.nframes, 0, "no backtrace was taken while the callback ran");
    cr_assert(r.frames_mention_sleeper, "the backtrace does not show the stalled function");
    /* It slept: it used far less CPU than wall time. */
    cr_assert_lt(r.info.cpu_ns, r.info.duration_ns / 2, "cpu %llu of %llu ns",
                 (unsigned long long)r.info.cpu_ns, (unsigned long long)r.info.duration_ns);
    cr_assert_eq(hk_loop_free(loop), 0);
}

Test(stall, a_computing_callback_is_named_and_reports_are_rate_limited)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    report_t r = {0};
    cr_assert_eq(hk_loop_stall_detect(loop, MS(25), on_stall, &r), 0);
    run_one(loop, hk_test_stall_spinner);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(r.symbol, "hk_test_stall_spinner");
    cr_assert_gt(r.nframes, 0);
    /* Within a second of the first report: counted, not reported. */
    run_one(loop, hk_test_stall_sleeper);
    hk_loop_stats_t st;
    hk_loop_stats(loop, &st);
    cr_assert_eq(st.stalls, 2);
    cr_assert_eq(r.count, 1, "the rate limit let a second report through");
    cr_assert_eq(hk_loop_free(loop), 0);
}

Test(stall, quick_callbacks_and_a_disabled_detector_report_nothing)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    report_t r = {0};
    cr_assert_eq(hk_loop_stall_detect(loop, MS(25), on_stall, &r), 0);
    for (int i = 0; i < 20; i++)
        run_one(loop, hk_test_quick);
    cr_assert_eq(hk_loop_stall_detect(loop, 0, NULL, NULL), 0);
    run_one(loop, hk_test_stall_sleeper);
    hk_loop_stats_t st;
    hk_loop_stats(loop, &st);
    cr_assert_eq(st.stalls, 0);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(hk_loop_stall_detect(loop, 1000, on_stall, &r), -EINVAL, "below 1 ms");
    cr_assert_eq(hk_loop_free(loop), 0);
}

/* Turning the detector off inside the first callback of a batch must not crash the second. */
static int g_off_calls;
static void off_cb(hk_io_t *io, unsigned revents)
{
    (void)revents;
    char b;
    if (read(io->fd, &b, 1) < 0) {
    }
    if (g_off_calls++ == 0)
        cr_assert_eq(hk_loop_stall_detect(io->base.loop, 0, NULL, NULL), 0);
    hk_io_stop(io);
}

Test(stall, turned_off_inside_a_batch)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    report_t r = {0};
    cr_assert_eq(hk_loop_stall_detect(loop, MS(25), on_stall, &r), 0);
    int p1[2], p2[2];
    cr_assert_eq(pipe(p1), 0);
    cr_assert_eq(pipe(p2), 0);
    cr_assert_eq(write(p1[1], "x", 1), 1);
    cr_assert_eq(write(p2[1], "x", 1), 1);
    hk_io_t a, b;
    hk_io_init(loop, &a, p1[0]);
    hk_io_init(loop, &b, p2[0]);
    hk_io_start(&a, HK_READABLE, off_cb);
    hk_io_start(&b, HK_READABLE, off_cb);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_eq(g_off_calls, 2);
    hk_close(&a.base, NULL);
    hk_close(&b.base, NULL);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    for (int i = 0; i < 2; i++) {
        close(p1[i]);
        close(p2[i]);
    }
    cr_assert_eq(r.count, 0);
    cr_assert_eq(hk_loop_free(loop), 0);
}

/* Turned on from inside a callback: no bogus report for that callback, real ones later. */
static report_t g_on_report;
static void turn_on_cb(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    cr_assert_eq(hk_loop_stall_detect(t->base.loop, MS(25), on_stall, &g_on_report), 0);
}

Test(stall, turned_on_inside_a_callback)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    run_one(loop, turn_on_cb);
    cr_assert_eq(g_on_report.count, 0, "a bogus stall was reported for the enabling callback");
    run_one(loop, hk_test_stall_spinner);
    cr_assert_eq(g_on_report.count, 1);
    cr_assert_str_eq(g_on_report.symbol, "hk_test_stall_spinner");
    cr_assert_lt(g_on_report.info.duration_ns, (uint64_t)MS(1000));
    cr_assert_gt(g_on_report.nframes, 0, "backtraces stopped after enabling inside a callback");
    cr_assert_eq(hk_loop_free(loop), 0);
}
