/*
 * A HOLD timer and deferred work that keeps queueing itself inside the hold
 * window: loop.h says such work waits until the timer's callback has run.
 * The defer rounds once never looked at due timers, and the timer ran 5 ms
 * late behind 24 deferred callbacks.
 */
#include "util.h"

#include <time.h>

static uint64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct {
    hk_timer_t hold, kick;
    hk_defer_t defer;
    uint64_t d;         /* the HOLD timer's grid point */
    uint64_t ran;       /* when the HOLD callback ran */
    int defers_after_d; /* deferred callbacks started after d while the HOLD timer waited */
} hold_defer_t;

static hold_defer_t g;

static void on_hold(hk_timer_t *t, uint64_t exp)
{
    (void)t;
    (void)exp;
    g.ran = mono();
}

static void chain(hk_defer_t *d)
{
    uint64_t start = mono();
    if (!g.ran && start >= g.d)
        g.defers_after_d++;
    while (mono() - start < 200000) /* 200 us of work per deferred callback */
        ;
    if (!g.ran && mono() < g.d + 5000000)
        hk_defer(g.kick.base.loop, d, chain); /* more work, queued inside the window */
}

static void on_kick(hk_timer_t *t, uint64_t exp)
{
    (void)exp;
    hk_defer(t->base.loop, &g.defer, chain);
}

Test(hold_defer, deferred_work_queued_inside_the_window_waits, .timeout = 20)
{
    hk_loop_t *loop = new_loop(0);
    memset(&g, 0, sizeof g);
    g.d = mono() + MS(30);
    cr_assert_eq(hk_timer_init(loop, &g.hold), 0);
    cr_assert_eq(hk_timer_init(loop, &g.kick), 0);
    cr_assert_eq(hk_timer_start_flags(&g.hold, on_hold, g.d, 0, HK_TIMER_HOLD), 0);
    cr_assert_eq(hk_timer_start(&g.kick, on_kick, g.d - MS(3), 0), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    hk_loop_queue_t q;
    hk_loop_queue_stats(loop, &q);
    cr_expect_eq(g.defers_after_d, 0,
                 "%d deferred callbacks queued inside the hold window started after the grid "
                 "point; the HOLD timer ran %llu us late (holds %llu, holds_late %llu)",
                 g.defers_after_d, (unsigned long long)((g.ran - g.d) / 1000),
                 (unsigned long long)q.holds, (unsigned long long)q.holds_late);
    hk_close(&g.hold.base, NULL);
    hk_close(&g.kick.base, NULL);
    finish_loop(loop);
}
