/*
 * HK_TIMER_HOLD: the hold window's arithmetic on synthetic samples, and what
 * the loop promises whatever the machine's load: a HOLD timer's callback
 * never runs before its grid point, the grid is kept, io that becomes ready
 * inside the window waits until the timer's callback has run, and the loop
 * counts its holds. No wall-clock assertions.
 */
#include "util.h"

#include <sys/timerfd.h>
#include <time.h>

#include "loop/internal.h"
#include "loop/queue.h"

#define US(x) ((uint64_t)(x)*UINT64_C(1000))
#define SEC UINT64_C(1000000000)

static uint64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

Test(hold, window_is_wake_ups_plus_residuals)
{
    const uint64_t t0 = 10 * SEC;
    struct hk__queue q = {0};
    hk__queue_init(&q, t0, SEC);
    hk_loop_queue_t e;
    /* No estimate yet: the minimum window. */
    cr_assert_eq(hk__queue_hold_window(&q, t0, 10 * US(1000)), HK_TIMER_HOLD_MIN_NS);
    /* 500 callbacks alternating 100 and 300 us: E[S] = 200 us, E[S^2] = 50000 us^2. */
    for (int k = 1; k <= 500; k++)
        hk__queue_sample(&q, t0 + (uint64_t)k * US(1000), k % 2 ? US(100) : US(300));
    for (int k = 1; k <= 10; k++)
        hk__queue_wake_sample(&q, t0 + (uint64_t)k * US(1000), US(40));
    uint64_t now = t0 + 500 * US(1000);
    /* Residual E[S^2] / (2 E[S]) = 125 us; window = 2 * 40 + 3 * 125 = 455 us. */
    cr_assert_eq(hk__queue_hold_window(&q, now, 10 * US(1000)), US(455));
    hk__queue_estimate(&q, now, &e);
    cr_assert_eq(e.hold_window_ns, US(455), "reported by the estimate, unbounded by a period");
    /* Bounded by a quarter of the period and by the cap. */
    cr_assert_eq(hk__queue_hold_window(&q, now, US(1000)), US(250));
    cr_assert_eq(hk__queue_hold_window(&q, now, US(200)), US(50), "below the minimum: the period");
    /* rho = 0.2 leaves 0.8: a hold takes at most 0.4 of the period. */
    cr_assert_eq(hk__queue_hold_window(&q, now, US(1000)), US(250), "a quarter is below 0.4");

    /* Near overload (rho = 0.9: 500 callbacks of 900 us in 0.5 s) the load's spare decides. */
    hk__queue_init(&q, t0, SEC);
    for (int k = 1; k <= 500; k++)
        hk__queue_sample(&q, t0 + (uint64_t)k * US(1000), US(900));
    hk__queue_estimate(&q, now, &e);
    cr_assert_gt(e.rho, 0.89);
    cr_assert_lt(e.rho, 0.91);
    uint64_t w = hk__queue_hold_window(&q, now, 10 * US(1000));
    cr_assert_leq(w, US(501), "(1 - rho) / 2 of 10 ms: %llu ns", (unsigned long long)w);
    cr_assert_geq(w, US(499));
}

/* A one-shot HOLD timer runs once, at or after its moment, and leaves the model off. */
static void hold_once(hk_timer_t *t, uint64_t expirations)
{
    uint64_t *at = t->base.data;
    *at = mono_now();
    cr_assert_eq(expirations, 1);
}

Test(hold, flags_accepted_and_released)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    uint64_t d = hk_loop_now(loop) + 50 * US(1000);
    cr_assert_eq(hk_timer_start_flags(&t, hold_once, d, 0, 0x4u), -EINVAL);
    cr_assert_eq(hk_timer_start_flags(&t, hold_once, d, 0, HK_TIMER_HOLD), 0);
    hk_loop_queue_t q;
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_timers, 1);
    cr_assert_eq(q.on, 1, "a HOLD timer turns the queue model on");
    cr_assert_eq(t.base._flags & HK__HOLD, HK__HOLD);
    /* Armed a window early (the minimum: no estimate), the grid point unchanged. */
    cr_assert_eq(hk_timer_deadline(&t), d);
    cr_assert_eq(loop->heap[0].when, d - HK_TIMER_HOLD_MIN_NS);
    cr_assert_eq(hk_timer_stop(&t), 0);
    cr_assert_eq(t.base._flags & (HK__HOLD | HK__ONTIME), 0);
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_timers, 0);
    cr_assert_eq(q.on, 0);
    hk_close(&t.base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    hk_loop_free(loop);
}

/*
 * A 20 ms HOLD timer, and a timerfd that fires 40 us before each grid point,
 * inside every window (at least HK_TIMER_HOLD_MIN_NS = 100 us). A plain
 * timer would run after that io; the HOLD timer runs first, never before its
 * grid point, and the io right after it.
 */
typedef struct hold_case {
    hk_timer_t tick;
    hk_io_t io;
    int tfd;
    int ticks, ios;
    int early;     /* tick callbacks that saw the clock before their grid point */
    int io_first;  /* io callbacks that ran before the tick they preceded */
    int tick_seen; /* the tick of the current period ran */
    uint64_t grid; /* the grid point the next tick serves */
    uint64_t first;
    uint64_t expirations;
} hold_case_t;

#define HOLD_PERIOD (20 * US(1000))
#define HOLD_TICKS 10

static void hold_arm_io(hold_case_t *c)
{
    uint64_t at = c->grid - US(40);
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(at / SEC), .tv_nsec = (long)(at % SEC)}};
    cr_assert_eq(timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL), 0);
}

static void hold_tick(hk_timer_t *t, uint64_t expirations)
{
    hold_case_t *c = (hold_case_t *)t;
    uint64_t now = mono_now();
    /* The deadline is already the next grid point. */
    uint64_t served = hk_timer_deadline(t) - HOLD_PERIOD * expirations;
    cr_assert_eq(served, c->grid, "the grid is kept");
    if (now < served || hk_loop_now(t->base.loop) < served)
        c->early++;
    c->expirations += expirations;
    c->ticks++;
    c->tick_seen = 1;
    c->grid = hk_timer_deadline(t);
    if (c->ticks >= HOLD_TICKS)
        hk_loop_stop(t->base.loop);
}

static void hold_io(hk_io_t *io, unsigned revents)
{
    (void)revents;
    hold_case_t *c = io->base.data;
    uint64_t n;
    cr_assert_eq(read(c->tfd, &n, sizeof n), (ssize_t)sizeof n);
    if (!c->tick_seen)
        c->io_first++;
    c->tick_seen = 0;
    c->ios++;
    hold_arm_io(c);
}

Test(hold, io_inside_the_window_waits_for_the_tick)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    hold_case_t c = {0};
    c.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    cr_assert_geq(c.tfd, 0);
    cr_assert_eq(hk_io_init(loop, &c.io, c.tfd), 0);
    c.io.base.data = &c;
    cr_assert_eq(hk_io_start(&c.io, HK_READABLE, hold_io), 0);
    cr_assert_eq(hk_timer_init(loop, &c.tick), 0);
    c.first = c.grid = mono_now() + 5 * HOLD_PERIOD;
    hold_arm_io(&c);
    cr_assert_eq(
        hk_timer_start_flags(&c.tick, hold_tick, c.first, (int64_t)HOLD_PERIOD, HK_TIMER_HOLD), 0);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 2);
    cr_assert_eq(c.ticks, HOLD_TICKS);
    cr_assert_eq(c.early, 0, "a HOLD timer never runs before its grid point");
    cr_assert_eq(c.io_first, 0, "io ready inside the window ran before the tick");
    cr_assert_geq(c.ios, HOLD_TICKS - 1);
    hk_loop_queue_t q;
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_runs, c.ticks);
    cr_assert_eq(q.holds + q.holds_late, q.ontime_runs, "every run held, or came late");
    cr_assert_eq(q.ontime_early, 0);
    cr_assert_gt(q.held_ns, 0, "holds %llu late %llu", (unsigned long long)q.holds,
                 (unsigned long long)q.holds_late);
    hk_close(&c.io.base, NULL);
    hk_close(&c.tick.base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    hk_loop_free(loop);
    close(c.tfd);
}

Test(hold, one_shot)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    hk_timer_t t;
    uint64_t ran = 0;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    t.base.data = &ran;
    uint64_t d = mono_now() + 30 * US(1000);
    cr_assert_eq(hk_timer_start_flags(&t, hold_once, d, 0, HK_TIMER_HOLD), 0);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert_geq(ran, d);
    hk_loop_queue_t q;
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_timers, 0);
    cr_assert_eq(q.holds + q.holds_late, 1);
    hk_close(&t.base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    hk_loop_free(loop);
}
