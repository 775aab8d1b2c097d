/*
 * The queue model (hk_loop_queue_*) and HK_TIMER_ONTIME timers.
 *
 * The estimator is fed synthetic samples with synthetic times and compared
 * with the Pollaczek-Khinchine formula computed here the naive way; ONTIME
 * timers are checked for what the loop promises whatever the machine's load:
 * the deadline grid is kept, the arming moment is never more than half a
 * period (nor HK_TIMER_ONTIME_MAX_NS) early, nothing runs before its arming
 * moment, and every measured callback is counted. No wall-clock assertions.
 */
#include "util.h"

#include "loop/internal.h"
#include "loop/queue.h"

#define US(x) ((uint64_t)(x)*UINT64_C(1000))
#define SEC UINT64_C(1000000000)

static double rel_err(double got, double want)
{
    double d = got - want;
    if (d < 0)
        d = -d;
    return want != 0 ? d / (want < 0 ? -want : want) : d;
}

Test(queue, model_is_pollaczek_khinchine)
{
    /* M/M/1 at rho = 0.5 with E[S] = 200 us: Wq = rho / (1 - rho) E[S] = 200 us. */
    hk_loop_queue_t q = {.arrival_rate = 2500.0,
                         .service_mean_ns = 200000.0,
                         .service_m2_ns2 = 2.0 * 200000.0 * 200000.0};
    cr_assert_eq(hk_loop_queue_model(&q), 0);
    cr_assert_lt(rel_err(q.rho, 0.5), 1e-12);
    cr_assert_eq(q.wait_ns, 200000);
    cr_assert_eq(q.residual_ns, 100000, "residual = lambda E[S^2] / 2 = (1 - rho) Wq");

    /* Deterministic service (M/D/1), rho = 0.8: Wq = rho E[S] / (2 (1 - rho)). */
    q = (hk_loop_queue_t){.arrival_rate = 4000.0, .service_mean_ns = 2e5, .service_m2_ns2 = 4e10};
    cr_assert_eq(hk_loop_queue_model(&q), 0);
    cr_assert_eq(q.wait_ns, 400000);

    /* At and beyond saturation the mean wait is undefined; the residual is not. */
    q = (hk_loop_queue_t){.arrival_rate = 5000.0, .service_mean_ns = 2e5, .service_m2_ns2 = 8e10};
    cr_assert_eq(hk_loop_queue_model(&q), 0);
    cr_assert_eq(q.wait_ns, HK_FOREVER);
    cr_assert_eq(q.residual_ns, 200000);

    q = (hk_loop_queue_t){.arrival_rate = -1.0, .service_mean_ns = 1, .service_m2_ns2 = 1};
    cr_assert_eq(hk_loop_queue_model(&q), -EINVAL);
    q = (hk_loop_queue_t){.arrival_rate = 1.0, .service_mean_ns = 10, .service_m2_ns2 = 50};
    cr_assert_eq(hk_loop_queue_model(&q), -EINVAL, "E[S^2] < E[S]^2 is impossible");
    cr_assert_eq(hk_loop_queue_model(NULL), -EINVAL);
}

/*
 * 1499 callbacks, one ending every millisecond over 1.5 s, services cycling
 * through 50, 150, 400 and 1200 us: the estimate over both windows must be
 * the formula applied to exactly these samples, rate = n / 1.5 s.
 */
Test(queue, estimator_matches_formula_on_synthetic_samples)
{
    const uint64_t t0 = 10 * SEC;
    const uint64_t svc[4] = {US(50), US(150), US(400), US(1200)};
    struct hk__queue q = {0};
    hk__queue_init(&q, t0, SEC);
    double sum = 0, sum2 = 0;
    int n = 0;
    for (int k = 1; k < 1500; k++) {
        uint64_t s = svc[k % 4];
        hk__queue_sample(&q, t0 + (uint64_t)k * US(1000), s);
        sum += (double)s;
        sum2 += (double)s * (double)s;
        n++;
    }
    hk_loop_queue_t e;
    hk__queue_estimate(&q, t0 + 1500 * US(1000), &e);
    cr_assert_eq(e.samples, (uint64_t)n);
    cr_assert_eq(e.horizon_ns, 1500 * US(1000));
    double lambda = n / 1.5, es = sum / n, es2 = sum2 / n;
    double rho = lambda * es * 1e-9;
    double wq = lambda * es2 * 1e-9 / (2 * (1 - rho));
    cr_assert_lt(rel_err(e.arrival_rate, lambda), 1e-12);
    cr_assert_lt(rel_err(e.service_mean_ns, es), 1e-9);
    cr_assert_lt(rel_err(e.service_m2_ns2, es2), 1e-9);
    cr_assert_lt(rel_err(e.rho, rho), 1e-9);
    cr_assert_lt(rel_err((double)e.wait_ns, wq), 1e-6, "wait %llu, formula %.1f",
                 (unsigned long long)e.wait_ns, wq);
    cr_assert_lt(rel_err((double)e.residual_ns, wq * (1 - rho)), 1e-6);

    /* Half a second later the first window has left the horizon. */
    hk__queue_estimate(&q, t0 + 2 * SEC + US(1), &e);
    cr_assert_eq(e.samples, 500, "only the samples of [1 s, 1.5 s) remain, got %llu",
                 (unsigned long long)e.samples);
    /* After two idle windows nothing is left, and the estimate is all zeros. */
    hk__queue_estimate(&q, t0 + 4 * SEC, &e);
    cr_assert_eq(e.samples, 0);
    cr_assert_eq(e.wait_ns, 0);
    cr_assert_eq(e.arrival_rate, 0.0);
}

/* The advance adds the wake-up latency for the share of time the loop sleeps. */
Test(queue, advance_adds_wake_up_latency_when_idle)
{
    const uint64_t t0 = 10 * SEC;
    struct hk__queue q = {0};
    hk__queue_init(&q, t0, SEC);
    /* 500 callbacks of 200 us in 0.5 s: rho = 0.2, residual = lambda E[S^2] / 2 = 20 us. */
    for (int k = 1; k <= 500; k++)
        hk__queue_sample(&q, t0 + (uint64_t)k * US(1000), US(200));
    for (int k = 1; k <= 10; k++)
        hk__queue_wake_sample(&q, t0 + (uint64_t)k * US(1000), k % 2 ? US(40) : US(60));
    hk_loop_queue_t e;
    hk__queue_estimate(&q, t0 + 500 * US(1000), &e);
    cr_assert_eq(e.wake_samples, 10);
    cr_assert_eq(e.wake_ns, US(50));
    cr_assert_lt(rel_err(e.rho, 0.2), 1e-9);
    cr_assert_eq(e.residual_ns, US(20));
    cr_assert_eq(e.advance_ns, US(20) + US(40), "residual + (1 - rho) wake = 20 + 0.8 * 50 us");
    cr_assert_eq(hk__queue_advance(&q, t0 + 500 * US(1000), 10 * US(1000)), US(60));
    /* Set-up time L: 50 us mean, E[L^2] = 2600 us^2; lambda = 1000/s = 1e-6 per ns. */
    double lam = 1e-6, l = 50000.0, l2 = 2600e6;
    double setup = (2 * l + lam * l2) / (2 * (1 + lam * l));
    cr_assert_lt(rel_err((double)(e.wait_wake_ns - e.wait_ns), setup), 1e-4, "set-up term %.1f ns",
                 setup);
}

Test(queue, estimator_needs_min_samples)
{
    struct hk__queue q = {0};
    hk__queue_init(&q, SEC, SEC);
    for (int k = 1; k < HK_QUEUE_MIN_SAMPLES; k++)
        hk__queue_sample(&q, SEC + (uint64_t)k * US(100), US(50));
    hk_loop_queue_t e;
    hk__queue_estimate(&q, SEC + US(10000), &e);
    cr_assert_eq(e.samples, HK_QUEUE_MIN_SAMPLES - 1);
    cr_assert_eq(e.residual_ns, 0);
    cr_assert_eq(hk__queue_advance(&q, SEC + US(10000), 10 * US(1000)), 0);
    hk__queue_sample(&q, SEC + US(10000), US(50));
    cr_assert_gt(hk__queue_advance(&q, SEC + US(10000), 10 * US(1000)), 0);
}

/*
 * Refills q with 100 callbacks of svc ns over the last half second: a residual
 * wait of svc^2 / 10 ms (svc = 20 ms: 40 ms), far above any bound. The loop's
 * switches (explicit, ONTIME count) are kept.
 */
static void overload(struct hk__queue *q, uint64_t now, uint64_t svc)
{
    int explicit_on = q->explicit_on;
    unsigned ontime = q->ontime;
    hk__queue_init(q, now - SEC / 2, SEC);
    q->explicit_on = explicit_on;
    q->ontime = ontime;
    for (int k = 0; k < 100; k++)
        hk__queue_sample(q, now - SEC / 2 + (uint64_t)k * (SEC / 200), svc);
}

Test(queue, advance_is_bounded)
{
    struct hk__queue q = {0};
    uint64_t now = 100 * SEC;
    overload(&q, now, 20 * US(1000));
    hk_loop_queue_t e;
    hk__queue_estimate(&q, now, &e);
    cr_assert_gt(e.residual_ns, 10 * US(1000));
    cr_assert_eq(hk__queue_advance(&q, now, 10 * US(1000)), 5 * US(1000), "half the period");
    cr_assert_eq(hk__queue_advance(&q, now, US(100)), US(50));
    cr_assert_eq(hk__queue_advance(&q, now, 0), HK_TIMER_ONTIME_MAX_NS, "one-shot: the cap");
    cr_assert_eq(hk__queue_advance(&q, now, 1000 * US(1000)), HK_TIMER_ONTIME_MAX_NS);
}

static void nop_timer(hk_timer_t *t, uint64_t e)
{
    (void)t;
    (void)e;
}

Test(queue, ontime_start_arms_early_by_bounded_advance)
{
    hk_loop_t *loop = new_loop(0);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    uint64_t d = hk_loop_now(loop) + (uint64_t)MS(100);
    cr_assert_eq(hk_timer_start_flags(&t, nop_timer, d, MS(10), 0x80), -EINVAL);
    cr_assert_eq(hk_loop_queue_measure(loop, US(500)), -EINVAL, "window below 1 ms");
    cr_assert_eq(hk_loop_queue_measure(loop, SEC), 0);
    overload(loop->queue, hk_loop_now(loop), 10 * US(1000));

    cr_assert_eq(hk_timer_start_flags(&t, nop_timer, d, MS(10), HK_TIMER_ONTIME), 0);
    cr_assert_eq(hk_timer_deadline(&t), d, "the deadline is the grid point");
    cr_assert_eq(loop->heap[t._heap_index].when, d - (uint64_t)MS(5), "armed half a period early");
    hk_loop_queue_t q;
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_timers, 1);
    cr_assert_eq(hk_timer_stop(&t), 0);

    /* A one-shot is armed at most HK_TIMER_ONTIME_MAX_NS early. */
    overload(loop->queue, hk_loop_now(loop), 20 * US(1000));
    cr_assert_eq(hk_timer_start_flags(&t, nop_timer, d, 0, HK_TIMER_ONTIME), 0);
    cr_assert_eq(loop->heap[t._heap_index].when, d - HK_TIMER_ONTIME_MAX_NS);
    cr_assert_eq(hk_timer_stop(&t), 0);
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_timers, 0);
    cr_assert_eq(q.on, 1, "still on: measured explicitly");

    /* Plain timers are untouched by the model. */
    cr_assert_eq(hk_timer_start(&t, nop_timer, d, MS(10)), 0);
    cr_assert_eq(loop->heap[t._heap_index].when, d);
    cr_assert_eq(hk_loop_queue_measure(loop, 0), 0);
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.on, 0);
    hk_close(&t.base, NULL);
    finish_loop(loop);
}

/*
 * An ONTIME timer on a loop kept busy by a level-triggered fd whose callback
 * spins: after every run the deadline is still first + E * period (E the sum
 * of expirations so far), the next arming moment is within half a period of
 * it, and the run happened at or after the arming moment it was due at.
 */
static int g_spins; /* io callbacks of the busy loop */

typedef struct ontime_case {
    hk_timer_t t;
    uint64_t first, period;
    uint64_t exp_total;
    uint64_t key; /* the heap key the run was due at */
    int runs, bad_grid, bad_key, ran_before_key;
    int spins_at_stop; /* io callbacks before the timer stopped (measured ones) */
} ontime_case_t;

static uint64_t heap_key(const hk_timer_t *t)
{
    return t->base.loop->heap[t->_heap_index].when;
}

static void ontime_cb(hk_timer_t *timer, uint64_t expirations)
{
    ontime_case_t *c = (ontime_case_t *)timer;
    hk_loop_t *loop = timer->base.loop;
    if (hk_loop_now(loop) < c->key)
        c->ran_before_key++;
    c->exp_total += expirations;
    c->runs++;
    if (hk_timer_deadline(timer) != c->first + c->exp_total * c->period)
        c->bad_grid++;
    uint64_t adv = hk_timer_deadline(timer) - heap_key(timer);
    if (heap_key(timer) > hk_timer_deadline(timer) || adv > c->period / 2)
        c->bad_key++;
    c->key = heap_key(timer);
    if (c->runs == 25) {
        hk_timer_stop(timer);
        c->spins_at_stop = g_spins;
    }
}

static void spin_cb(hk_io_t *io, unsigned revents)
{
    (void)io;
    (void)revents;
    g_spins++;
    busy_wait_ns(300000);
}

/* A loop kept busy: a pipe with one byte never read, watched level-triggered by spin_cb. */
typedef struct busy {
    hk_loop_t *loop;
    guard_t g;
    int p[2];
    hk_io_t io;
} busy_t;

static void busy_open(busy_t *b, unsigned flags)
{
    b->loop = new_loop(flags);
    guard_start(b->loop, &b->g, 20000);
    make_pipe(b->p);
    write_byte(b->p[1]);
    cr_assert_eq(hk_io_init(b->loop, &b->io, b->p[0]), 0);
    cr_assert_eq(hk_io_start(&b->io, HK_READABLE, spin_cb), 0);
    g_spins = 0;
}

/* Closes what busy_open made; the caller has closed its own handles. */
static void busy_close(busy_t *b)
{
    hk_close(&b->io.base, NULL);
    guard_close(&b->g);
    finish_loop(b->loop);
    close_pair(b->p);
}

static void ontime_under_load(unsigned flags)
{
    busy_t b;
    busy_open(&b, flags);
    hk_loop_t *loop = b.loop;
    ontime_case_t c = {.period = (uint64_t)MS(4)};
    cr_assert_eq(hk_timer_init(loop, &c.t), 0);
    hk_loop_update_time(loop);
    c.first = hk_loop_now(loop) + (uint64_t)MS(2);
    cr_assert_eq(hk_timer_start_flags(&c.t, ontime_cb, c.first, (int64_t)c.period, HK_TIMER_ONTIME),
                 0);
    c.key = heap_key(&c.t);
    hk_loop_stats_t s0 = get_stats(loop);
    RUN_UNTIL(loop, &b.g, !hk_is_active(&c.t.base));
    hk_loop_stats_t s1 = get_stats(loop);

    cr_assert_eq(c.runs, 25);
    cr_assert_eq(c.bad_grid, 0, "deadline left the grid first + k * period");
    cr_assert_eq(c.bad_key, 0, "armed more than half a period early");
    cr_assert_eq(c.ran_before_key, 0, "ran before its arming moment");
    hk_loop_queue_t q;
    cr_assert_eq(hk_loop_queue_stats(loop, &q), 0);
    cr_assert_eq(q.ontime_runs, 25);
    cr_assert_eq(q.ontime_timers, 0);
    cr_assert_eq(q.on, 0, "off again once the last ONTIME timer stopped");
    /*
     * Every io and timer callback was measured while the model was on: until
     * the last ONTIME timer stopped (io may run after it in the same call).
     */
    cr_assert_eq(q.callbacks, (uint64_t)c.spins_at_stop + 25);
    cr_assert_eq(s1.callbacks - s0.callbacks, (uint64_t)g_spins + 25);
    hk_close(&c.t.base, NULL);
    busy_close(&b);
}

Test(queue, ontime_keeps_grid_under_load)
{
    ontime_under_load(0);
}

Test(queue, ontime_keeps_grid_under_load_timerfd)
{
    ontime_under_load(HK_LOOP_TIMERFD);
}

Test(queue, ontime_with_stall_detector)
{
    hk_loop_t *loop = new_loop(0);
    cr_assert_eq(hk_loop_stall_detect(loop, HK_STALL_DEFAULT_NS, NULL, NULL), 0);
    cr_assert(loop->hooked);
    cr_assert_eq(hk_loop_stall_detect(loop, 0, NULL, NULL), 0);
    cr_assert_not(loop->hooked, "nothing hooked: the io hot path is the plain one");
    finish_loop(loop);
    ontime_under_load(0); /* and with it on: */
    loop = new_loop(0);
    cr_assert_eq(hk_loop_queue_measure(loop, SEC), 0);
    cr_assert_eq(hk_loop_stall_detect(loop, HK_STALL_DEFAULT_NS, NULL, NULL), 0);
    cr_assert_eq(hk_loop_stall_detect(loop, 0, NULL, NULL), 0);
    cr_assert(loop->hooked, "the queue model still hooks dispatch");
    finish_loop(loop);
}

/* Measuring counts every io callback and leaves the order alone. */
Test(queue, measure_counts_io_callbacks)
{
    busy_t b;
    busy_open(&b, 0);
    cr_assert_eq(hk_loop_queue_measure(b.loop, SEC), 0);
    RUN_UNTIL(b.loop, &b.g, g_spins >= 40);
    hk_loop_queue_t q;
    cr_assert_eq(hk_loop_queue_stats(b.loop, &q), 0);
    cr_assert_eq(q.callbacks, (uint64_t)g_spins);
    cr_assert_eq(q.samples, (uint64_t)g_spins, "all within one window");
    cr_assert_geq(q.service_mean_ns, 300000.0, "each callback spins 300 us at least");
    cr_assert_geq(q.service_m2_ns2, q.service_mean_ns * q.service_mean_ns);
    cr_assert_eq(hk_loop_queue_measure(b.loop, 0), 0);
    int before = g_spins;
    RUN_UNTIL(b.loop, &b.g, g_spins >= before + 5);
    cr_assert_eq(hk_loop_queue_stats(b.loop, &q), 0);
    cr_assert_eq(q.callbacks, (uint64_t)before, "off: not measured");
    busy_close(&b);
}
