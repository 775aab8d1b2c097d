/*
 * The loop as an M/G/1 server, and timers that run on schedule under load.
 *
 * What goes wrong: a loop runs one callback at a time. A timer whose deadline
 * comes while a callback of 2 ms runs is served when that callback returns, so
 * under load every tick is late, by the remaining service time of whatever is
 * running. Worse, hark checks timers at the top of an iteration against the
 * time cached when epoll returned: a timer that falls due during an io batch
 * waits for the rest of the batch and for the next batch too, when io is ready.
 *
 * What we do, only while the queue model is on (nothing changes otherwise):
 * the loop reads the clock after every io and timer callback (the time the
 * next one starts), feeding the service time into a Welford accumulator and
 * counting callbacks for their rate (queue.h keeps a horizon of one to two
 * windows). With an ONTIME timer active, the same clock read also serves as a
 * timer check: at every callback boundary the timers that fell due run, before
 * the next io callback. Such a timer then waits only for the callback in
 * progress; by PASTA its mean wait is the mean residual service seen at a
 * random moment, lambda E[S^2] / 2, finite at any load. We arm ONTIME timers
 * that much early (bounded by half the period), so that on average they run at
 * the grid point. Callbacks that wait in the ready queue see the
 * Pollaczek-Khinchine wait lambda E[S^2] / (2 (1 - rho)) instead; both are
 * reported by hk_loop_queue_stats. The grid is never moved: only the heap key
 * (the arming moment) is deadline - advance, while the timer keeps its grid
 * point in _deadline.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loop/queue.h"
#include "loop/stall.h"

/* ------------------------------------------------------------------------ */
/* The estimator (no loop involved)                                         */
/* ------------------------------------------------------------------------ */

void hk__queue_init(struct hk__queue *q, uint64_t now, uint64_t window)
{
    memset(q, 0, sizeof *q);
    q->window = window;
    q->cur.start = now;
    q->prev.start = now;
    q->mark = now;
}

static uint64_t hk__ns_round(double ns)
{
    if (!(ns < 1e18))
        return HK_FOREVER - 1; /* beyond any meaningful wait, but still "defined" */
    return (uint64_t)(ns + 0.5);
}

/* Moves the windows on so that now falls in the current one. */
static void hk__queue_roll(struct hk__qwin *cur, struct hk__qwin *prev, int *have_prev,
                           uint64_t window, uint64_t now)
{
    if (now < cur->start || now - cur->start < window)
        return;
    if (now - cur->start < 2 * window) {
        *prev = *cur;
        cur->start += window;
    } else {
        /* A whole window without a sample: everything older is out of the horizon. */
        hk_stats_welford_init(&prev->svc);
        hk_stats_welford_init(&prev->wake);
        prev->start = now - window;
        cur->start = now;
    }
    hk_stats_welford_init(&cur->svc);
    hk_stats_welford_init(&cur->wake);
    *have_prev = 1;
}

void hk__queue_sample(struct hk__queue *q, uint64_t now, uint64_t service_ns)
{
    hk__queue_roll(&q->cur, &q->prev, &q->have_prev, q->window, now);
    (void)hk_stats_welford_add(&q->cur.svc, (double)service_ns);
    q->callbacks++;
}

void hk__queue_wake_sample(struct hk__queue *q, uint64_t now, uint64_t late_ns)
{
    hk__queue_roll(&q->cur, &q->prev, &q->have_prev, q->window, now);
    (void)hk_stats_welford_add(&q->cur.wake, (double)late_ns);
}

/*
 * A callback in progress when a hold window opens still has, on average,
 * E[S^2] / (2 E[S]) to run (the length-biased residual; for exponential
 * service, E[S] itself). Three of those leave an exponential callback a
 * chance of e^-3 (5 %) to overrun the grid point; the loop's own wake-up must
 * fit too, twice over for its spread.
 */
static uint64_t hk__hold_window(const hk_loop_queue_t *e, uint64_t period)
{
    double es = e->service_mean_ns;
    double excess = es > 0 ? e->service_m2_ns2 / (2.0 * es) : 0.0;
    uint64_t w = 2 * e->wake_ns + hk__ns_round(HK__HOLD_RESIDUALS * excess);
    if (w < HK_TIMER_HOLD_MIN_NS)
        w = HK_TIMER_HOLD_MIN_NS;
    uint64_t cap = HK_TIMER_ONTIME_MAX_NS;
    if (period > 0 && period / 4 < cap)
        cap = period / 4;
    /*
     * A held loop serves nothing, so holding takes window / period of its
     * capacity: keep it to half of what the load leaves (1 - rho), or a busy
     * loop would be pushed into overload by its own timer.
     */
    if (period > 0 && e->rho > 0) {
        double spare = e->rho < 1.0 ? 1.0 - e->rho : 0.0;
        uint64_t fair = hk__ns_round(spare * (double)period / 2.0);
        if (fair < cap)
            cap = fair;
    }
    return w < cap ? w : cap;
}

void hk__queue_estimate(const struct hk__queue *q, uint64_t now, hk_loop_queue_t *out)
{
    struct hk__qwin cur = q->cur, prev = q->prev;
    int have_prev = q->have_prev;
    hk__queue_roll(&cur, &prev, &have_prev, q->window, now);
    hk_welford_t all = cur.svc, wake = cur.wake;
    if (have_prev) {
        hk_stats_welford_merge(&all, &prev.svc);
        hk_stats_welford_merge(&wake, &prev.wake);
    }
    uint64_t from = have_prev ? prev.start : cur.start;
    uint64_t span = now > from ? now - from : 0;
    out->samples = all.n;
    out->horizon_ns = span;
    out->arrival_rate = out->service_mean_ns = out->service_m2_ns2 = out->rho = 0.0;
    out->wait_ns = out->residual_ns = out->wake_ns = out->advance_ns = out->wait_wake_ns = 0;
    out->hold_window_ns = 0;
    out->wake_samples = wake.n;
    /* The wake-up latency needs no rate: it is reported from its first sample. */
    out->wake_ns = hk__ns_round(hk_stats_welford_mean(&wake));
    if (all.n < HK_QUEUE_MIN_SAMPLES || span == 0) {
        out->hold_window_ns = hk__hold_window(out, 0);
        return;
    }
    double mean = hk_stats_welford_mean(&all);
    out->arrival_rate = (double)all.n * 1e9 / (double)span;
    out->service_mean_ns = mean;
    out->service_m2_ns2 = hk_stats_welford_pvariance(&all) + mean * mean;
    (void)hk_loop_queue_model(out);
    /*
     * A timer due while the loop sleeps (probability 1 - rho) also waits for the
     * wake-up: timer slack and scheduling, measured on the loop's own timeouts.
     */
    double idle = out->rho < 1.0 ? 1.0 - out->rho : 0.0;
    out->advance_ns = out->residual_ns + hk__ns_round(idle * (double)out->wake_ns);
    /* The wake-up as a set-up time of each busy period (M/G/1 with set-up times). */
    double l = hk_stats_welford_mean(&wake), l2 = hk_stats_welford_pvariance(&wake) + l * l;
    double lam = out->arrival_rate * 1e-9; /* per ns */
    out->hold_window_ns = hk__hold_window(out, 0);
    out->wait_wake_ns = out->wait_ns == HK_FOREVER
                            ? HK_FOREVER
                            : out->wait_ns + hk__ns_round((2 * l + lam * l2) / (2 * (1 + lam * l)));
}

uint64_t hk__queue_advance(const struct hk__queue *q, uint64_t now, uint64_t period)
{
    hk_loop_queue_t e;
    hk__queue_estimate(q, now, &e);
    uint64_t cap = HK_TIMER_ONTIME_MAX_NS;
    if (period > 0 && period / 2 < cap)
        cap = period / 2;
    return e.advance_ns < cap ? e.advance_ns : cap;
}

uint64_t hk__queue_hold_window(const struct hk__queue *q, uint64_t now, uint64_t period)
{
    hk_loop_queue_t e;
    hk__queue_estimate(q, now, &e);
    return hk__hold_window(&e, period);
}

int hk_loop_queue_model(hk_loop_queue_t *q)
{
    if (!q)
        return -EINVAL;
    double lambda = q->arrival_rate, es = q->service_mean_ns, es2 = q->service_m2_ns2;
    if (!isfinite(lambda) || !isfinite(es) || !isfinite(es2) || lambda < 0 || es < 0 ||
        es2 < es * es * (1.0 - 1e-12))
        return -EINVAL;
    double rho = lambda * es * 1e-9;
    double residual = lambda * es2 * 1e-9 / 2.0; /* lambda per s, E[S^2] in ns^2: ns */
    q->rho = rho;
    q->residual_ns = hk__ns_round(residual);
    q->wait_ns = rho < 1.0 ? hk__ns_round(residual / (1.0 - rho)) : HK_FOREVER;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The loop's side                                                          */
/* ------------------------------------------------------------------------ */

void hk__loop_hooks_changed(hk_loop_t *loop)
{
    struct hk__queue *q = loop->queue;
    uint8_t on = q && (q->explicit_on || q->ontime > 0);
    if (on && !loop->queue_on)
        q->mark = hk__clock_now(); /* turned on inside a callback: measure from here */
    loop->queue_on = on;
    loop->hooked = loop->stall != NULL || on;
}

int hk__queue_ensure(hk_loop_t *loop, uint64_t window)
{
    if (loop->queue) {
        if (window)
            loop->queue->window = window;
        return 0;
    }
    struct hk__queue *q = malloc(sizeof *q);
    if (!q)
        return -ENOMEM;
    hk__queue_init(q, loop->now, window ? window : HK_QUEUE_WINDOW_DEFAULT_NS);
    loop->queue = q;
    return 0;
}

void hk__queue_free(hk_loop_t *loop)
{
    free(loop->queue);
    loop->queue = NULL;
}

int hk_loop_queue_measure(hk_loop_t *loop, uint64_t window_ns)
{
    if (!loop || (window_ns && (window_ns < UINT64_C(1000000) || window_ns >= HK_DEADLINE_MAX)))
        return -EINVAL;
    if (window_ns == 0) {
        if (loop->queue)
            loop->queue->explicit_on = 0;
    } else {
        int r = hk__queue_ensure(loop, window_ns);
        if (r < 0)
            return r;
        loop->queue->explicit_on = 1;
    }
    hk__loop_hooks_changed(loop);
    return 0;
}

int hk_loop_queue_stats(const hk_loop_t *loop, hk_loop_queue_t *out)
{
    if (!loop || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    const struct hk__queue *q = loop->queue;
    if (!q)
        return 0;
    out->on = loop->queue_on;
    out->ontime_timers = q->ontime;
    out->callbacks = q->callbacks;
    out->ontime_runs = q->ontime_runs;
    out->ontime_early = q->ontime_early;
    out->ontime_early_ns = q->ontime_early_ns;
    out->holds = q->holds;
    out->holds_late = q->holds_late;
    out->held_ns = q->held_ns;
    if (loop->queue_on)
        hk__queue_estimate(q, loop->now, out);
    return 0;
}

/* Runs the timers due at t, a fresh clock read, when an ONTIME timer wants it. */
static void hk__queue_due_timers(hk_loop_t *loop, uint64_t t)
{
    if (loop->queue->ontime > 0 && loop->heap_len > 0 && loop->heap[0].when <= t) {
        loop->now = t;
        hk__timers_run(loop);
    }
}

void hk__queue_woke(hk_loop_t *loop, uint64_t deadline, uint64_t slept_at)
{
    /*
     * Only a sleep until a deadline still ahead when it began (one already
     * past returns at once and measures the callbacks, not the wake-up) that
     * ended after it: whatever woke the loop (the timeout, or io that came
     * later still), the kernel's timer was that late. Early returns for io say
     * nothing about the timer.
     */
    if (deadline == 0 || deadline == HK_FOREVER || deadline <= slept_at || loop->woke_at < deadline)
        return;
    hk__queue_wake_sample(loop->queue, loop->woke_at, loop->woke_at - deadline);
}

void hk__queue_batch_begin(hk_loop_t *loop)
{
    loop->queue->mark = loop->woke_at;
    hk__queue_due_timers(loop, loop->woke_at);
}

void hk__queue_after_cb(hk_loop_t *loop)
{
    struct hk__queue *q = loop->queue;
    uint64_t t = hk__clock_now();
    hk__queue_sample(q, t, t - q->mark);
    q->mark = t;
    hk__queue_due_timers(loop, t);
}

void hk__queue_timer_cb(hk_loop_t *loop, hk_timer_t *t, uint64_t expirations)
{
    struct hk__queue *q = loop->queue;
    uint64_t start = hk__clock_now();
    hk__stall_enter(loop, (const void *)t->_cb);
    t->_cb(t, expirations);
    hk__stall_leave(loop);
    uint64_t end = hk__clock_now();
    hk__queue_sample(q, end, end - start);
    q->mark = end;
}
