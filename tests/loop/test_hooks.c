/*
 * prepare/check/idle hooks and deferred callbacks: their order within an
 * iteration, idle keeping the loop awake, and hk_defer's queueing rules.
 */
#include "util.h"

static char g_log[256];
static int g_nlog;

static void log_event(char c)
{
    if (g_nlog < (int)sizeof g_log - 1)
        g_log[g_nlog++] = c;
}

static void hook_cb(hk_hook_t *h)
{
    switch (h->kind) {
    case HK_HOOK_PREPARE:
        log_event('P');
        break;
    case HK_HOOK_CHECK:
        log_event('C');
        break;
    case HK_HOOK_IDLE:
        log_event('I');
        break;
    }
}

static void io_log_cb(hk_io_t *io, unsigned revents)
{
    (void)io;
    (void)revents;
    log_event('O');
}

static int count_char(const char *s, int n, char c)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += s[i] == c;
    return k;
}

static int index_of(const char *s, int n, char c)
{
    for (int i = 0; i < n; i++)
        if (s[i] == c)
            return i;
    return -1;
}

Test(hooks, prepare_io_check_order_per_iteration)
{
    hk_loop_t *loop = new_loop(0);
    int p[2];
    make_pipe(p);
    write_byte(p[1]); /* level-triggered: ready on every iteration */
    hk_io_t io;
    cr_assert_eq(hk_io_init(loop, &io, p[0]), 0);
    cr_assert_eq(hk_io_start(&io, HK_READABLE, io_log_cb), 0);
    hk_hook_t pre, chk, idl;
    cr_assert_eq(hk_hook_init(loop, &pre, HK_HOOK_PREPARE), 0);
    cr_assert_eq(hk_hook_init(loop, &chk, HK_HOOK_CHECK), 0);
    cr_assert_eq(hk_hook_init(loop, &idl, HK_HOOK_IDLE), 0);
    cr_assert_eq(pre.kind, HK_HOOK_PREPARE);
    cr_assert_eq(hk_hook_start(&pre, hook_cb), 0);
    cr_assert_eq(hk_hook_start(&chk, hook_cb), 0);
    cr_assert_eq(hk_hook_start(&idl, hook_cb), 0);
    for (int it = 0; it < 5; it++) {
        g_nlog = 0;
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
        g_log[g_nlog] = 0;
        cr_assert_eq(count_char(g_log, g_nlog, 'P'), 1, "iteration %d: log %s", it, g_log);
        cr_assert_eq(count_char(g_log, g_nlog, 'C'), 1, "iteration %d: log %s", it, g_log);
        cr_assert_eq(count_char(g_log, g_nlog, 'I'), 1, "iteration %d: log %s", it, g_log);
        cr_assert_eq(count_char(g_log, g_nlog, 'O'), 1, "iteration %d: log %s", it, g_log);
        int ip = index_of(g_log, g_nlog, 'P'), io_ = index_of(g_log, g_nlog, 'O'),
            ic = index_of(g_log, g_nlog, 'C');
        cr_assert_lt(ip, io_, "prepare runs before sleeping, so before io: %s", g_log);
        cr_assert_lt(io_, ic, "check runs after io callbacks: %s", g_log);
    }
    /* Stopped hooks no longer run. */
    cr_assert_eq(hk_hook_stop(&pre), 0);
    cr_assert_eq(hk_hook_stop(&pre), -EALREADY);
    cr_assert_eq(hk_hook_stop(&chk), 0);
    cr_assert_eq(hk_hook_stop(&idl), 0);
    g_nlog = 0;
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    g_log[g_nlog] = 0;
    cr_assert_str_eq(g_log, "O");
    hk_close(&io.base, NULL);
    hk_close(&pre.base, NULL);
    hk_close(&chk.base, NULL);
    hk_close(&idl.base, NULL);
    close_pair(p);
    finish_loop(loop);
}

static int g_idle_calls;

static void noop_timer_cb(hk_timer_t *t, uint64_t exp)
{
    int *calls = t->base.data;
    (void)exp;
    if (calls != NULL)
        (*calls)++;
}

static void idle_count_cb(hk_hook_t *h)
{
    (void)h;
    g_idle_calls++;
}

Test(hooks, idle_keeps_loop_from_sleeping)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 5000);
    /* Keeps the loop alive with something far away. */
    hk_timer_t far;
    cr_assert_eq(hk_timer_init(loop, &far), 0);
    far.base.data = NULL;
    cr_assert_eq(hk_timer_start_in(&far, noop_timer_cb, MS(60000), 0), 0);
    hk_hook_t idl;
    cr_assert_eq(hk_hook_init(loop, &idl, HK_HOOK_IDLE), 0);
    cr_assert_eq(hk_hook_start(&idl, idle_count_cb), 0);
    hk_loop_stats_t a = get_stats(loop);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(hk_loop_run(loop, HK_RUN_ONCE), 2, "timer and idle hook are active");
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_not(g.fired, "HK_RUN_ONCE slept although an idle hook was active");
    cr_assert_eq(g_idle_calls, 200);
    cr_assert_eq(b.iterations - a.iterations, 200);
    cr_assert_eq(b.timers_fired - a.timers_fired, 0);

    /* Without the idle hook, ONCE sleeps until the next timer: here a short one. */
    cr_assert_eq(hk_hook_stop(&idl), 0);
    hk_timer_t soon;
    int soon_calls = 0;
    cr_assert_eq(hk_timer_init(loop, &soon), 0);
    soon.base.data = &soon_calls;
    cr_assert_eq(hk_timer_start_in(&soon, noop_timer_cb, MS(20), 0), 0);
    RUN_UNTIL(loop, &g, soon_calls > 0);
    cr_assert_eq(g_idle_calls, 200);
    hk_close(&idl.base, NULL);
    hk_close(&far.base, NULL);
    hk_close(&soon.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

/* Deferred callbacks. */
static hk_loop_t *g_loop;
static char g_c1 = '1', g_c2 = '2', g_c3 = '3';
static hk_defer_t g_d1, g_d2, g_d3;
static int g_defer_r1 = 1, g_defer_r2 = 1, g_cancel_r = 1, g_cancel_r2 = 1;

static void defer_log_cb(hk_defer_t *d)
{
    log_event(*(char *)d->data);
}

static void chain_cb(hk_defer_t *d)
{
    log_event(*(char *)d->data);
    g_d3.data = &g_c3;
    cr_assert_eq(hk_defer(g_loop, &g_d3, defer_log_cb), 0);
}

static void defer_timer_cb(hk_timer_t *t, uint64_t exp)
{
    (void)t;
    (void)exp;
    log_event('T');
    g_d1.data = &g_c1;
    g_defer_r1 = hk_defer(g_loop, &g_d1, defer_log_cb);
    g_defer_r2 = hk_defer(g_loop, &g_d1, defer_log_cb); /* already queued */
    g_d2.data = &g_c2;
    cr_assert_eq(hk_defer(g_loop, &g_d2, defer_log_cb), 0);
    g_cancel_r = hk_defer_cancel(g_loop, &g_d2);
    g_cancel_r2 = hk_defer_cancel(g_loop, &g_d2);
    log_event('t'); /* end of the callback */
}

Test(hooks, defer_runs_after_callback_cancel_and_ebusy)
{
    hk_loop_t *loop = new_loop(0);
    g_loop = loop;
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, defer_timer_cb, 0, 0), 0);
    g_nlog = 0;
    RUN_UNTIL(loop, &g, index_of(g_log, g_nlog, 't') >= 0);
    g_log[g_nlog] = 0;
    cr_assert_eq(g_defer_r1, 0);
    cr_assert_eq(g_defer_r2, -EBUSY);
    cr_assert_eq(g_cancel_r, 0);
    cr_assert_eq(g_cancel_r2, -EALREADY);
    cr_assert_str_eq(g_log, "Tt1", "deferred callback runs once, after the callback returns");
    cr_assert_eq(hk_defer_cancel(loop, &g_d1), -EALREADY, "already ran");
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    g_log[g_nlog] = 0;
    cr_assert_str_eq(g_log, "Tt1", "cancelled deferred callback must never run");
    hk_close(&t.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

Test(hooks, defer_from_outside_runs_without_sleeping)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 5000);
    hk_timer_t far;
    cr_assert_eq(hk_timer_init(loop, &far), 0);
    far.base.data = NULL;
    cr_assert_eq(hk_timer_start_in(&far, noop_timer_cb, MS(60000), 0), 0);
    g_nlog = 0;
    g_d1.data = &g_c1;
    cr_assert_eq(hk_defer(loop, &g_d1, defer_log_cb), 0);
    cr_assert_eq(hk_defer(loop, &g_d1, defer_log_cb), -EBUSY);
    cr_assert(hk_loop_alive(loop));
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert_not(g.fired, "the loop slept with a deferred callback queued");
    g_log[g_nlog] = 0;
    cr_assert_str_eq(g_log, "1");

    /* A chain: the second runs in a later round of the same iteration. */
    g_nlog = 0;
    g_d2.data = &g_c2;
    g_loop = loop;
    cr_assert_eq(hk_defer(loop, &g_d2, chain_cb), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert_not(g.fired);
    g_log[g_nlog] = 0;
    cr_assert_eq(g_nlog, 2, "chain: log %s", g_log);
    cr_assert_str_eq(g_log, "23");
    hk_close(&far.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

/* A deferred callback that re-queues itself: 64 rounds, then the next iteration. */
static int g_requeue_left, g_requeue_calls;

static void requeue_cb(hk_defer_t *d)
{
    g_requeue_calls++;
    if (--g_requeue_left > 0)
        cr_assert_eq(hk_defer(g_loop, d, requeue_cb), 0);
}

Test(hooks, defer_requeue_is_bounded_per_iteration)
{
    hk_loop_t *loop = new_loop(0);
    g_loop = loop;
    guard_t g;
    guard_start(loop, &g, 5000);
    hk_timer_t far;
    cr_assert_eq(hk_timer_init(loop, &far), 0);
    far.base.data = NULL;
    cr_assert_eq(hk_timer_start_in(&far, noop_timer_cb, MS(60000), 0), 0);
    hk_defer_t d;
    memset(&d, 0, sizeof d);
    g_requeue_left = 200;
    cr_assert_eq(hk_defer(loop, &d, requeue_cb), 0);
    int runs = 0;
    while (g_requeue_calls < 200 && !g.fired && runs < 1000) {
        int before = g_requeue_calls;
        hk_loop_stats_t a = get_stats(loop);
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
        hk_loop_stats_t b = get_stats(loop);
        runs++;
        cr_assert_eq(b.iterations - a.iterations, 1, "HK_RUN_ONCE is one iteration");
        /* 64 rounds, then the next iteration (one more allowed for how rounds are counted). */
        cr_assert_leq(g_requeue_calls - before, 65,
                      "run %d: %d rounds of a self-requeueing deferred callback in one iteration",
                      runs, g_requeue_calls - before);
    }
    cr_assert_not(g.fired, "the loop slept: deferred work was pending when HK_RUN_ONCE was called");
    cr_assert_eq(g_requeue_calls, 200);
    cr_assert_geq(runs, 4);
    hk_close(&far.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}
