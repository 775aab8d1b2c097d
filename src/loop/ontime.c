/*
 * Timers that run on schedule under load: HK_TIMER_ONTIME and HK_TIMER_HOLD.
 *
 * Both keep their grid point in _deadline and sit in the heap at an earlier
 * arming moment; the grid first + k * period never moves, so nothing
 * accumulates. While one is active the queue model is on (queue.c), which
 * also runs due timers at every callback boundary, so a timer waits only for
 * the callback in progress, never for the rest of an io batch.
 *
 * ONTIME arms early by the model's mean wait (R + (1 - rho) L, queue.c):
 * the callback runs at its grid point on average, early or late by the
 * spread of that wait. HOLD arms earlier, by a window sized to contain the
 * wait almost always, and then reserves the loop: from the first callback
 * boundary in the window it starts nothing else, sleeps until shortly before
 * the grid point and spins on the clock to it. Why sleep and then spin: a
 * sleeping thread wakes up late by its wake-up latency (timer slack,
 * scheduling; tens of microseconds in a VM, and variable), which is as large
 * as the lateness we are removing; the loop measures that latency and spins
 * through twice its mean, so the timer's own wake-up never decides when it
 * runs. Waking from the sleep is itself a wake-up sample.
 */
#include <errno.h>
#include <time.h>

#include "loop/queue.h"
#include "loop/stall.h"

/* The spin before the grid point: twice the mean wake-up, and at least this. */
#define HK__HOLD_SPIN_MIN_NS (UINT64_C(20) * 1000)

static uint64_t hk__ontime_arming(hk_loop_t *loop, const hk_timer_t *t, uint64_t now)
{
    const struct hk__queue *q = loop->queue;
    if (t->base._flags & HK__HOLD)
        return hk__queue_hold_window(q, now, t->_period);
    return hk__queue_advance(q, now, t->_period);
}

int hk__queue_ontime_start(hk_loop_t *loop, hk_timer_t *t, unsigned flags, uint64_t *when)
{
    int r = hk__queue_ensure(loop, 0);
    if (r < 0)
        return r;
    struct hk__queue *q = loop->queue;
    t->base._flags |= HK__ONTIME;
    if (flags & HK_TIMER_HOLD)
        t->base._flags |= HK__HOLD;
    uint64_t adv = hk__ontime_arming(loop, t, loop->now);
    *when = t->_deadline > adv ? t->_deadline - adv : 0;
    q->ontime++;
    hk__loop_hooks_changed(loop);
    return 0;
}

void hk__queue_ontime_stop(hk_loop_t *loop, hk_timer_t *t)
{
    t->base._flags &= (uint16_t) ~(HK__ONTIME | HK__HOLD);
    loop->queue->ontime--;
    hk__loop_hooks_changed(loop);
}

static uint64_t hk__hold_spin(const struct hk__queue *q, uint64_t now)
{
    hk_loop_queue_t e;
    hk__queue_estimate(q, now, &e);
    uint64_t spin = 2 * e.wake_ns;
    return spin > HK__HOLD_SPIN_MIN_NS ? spin : HK__HOLD_SPIN_MIN_NS;
}

/*
 * Holds the loop from now until the grid point d; returns the time the hold
 * ended (>= d). The stall detector is told the loop sleeps meanwhile: holding
 * is what the timer asked for, not a stalled callback.
 */
static uint64_t hk__hold_until(hk_loop_t *loop, uint64_t now, uint64_t d)
{
    struct hk__queue *q = loop->queue;
    uint64_t spin = hk__hold_spin(q, now);
    uint64_t start = now;
    if (d - now > spin) {
        uint64_t until = d - spin;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        if (loop->stall)
            hk__stall_sleeping(loop);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        now = hk__clock_now();
        if (loop->stall)
            hk__stall_awake(loop);
        if (now >= until)
            hk__queue_wake_sample(q, now, now - until);
    }
    /*
     * No PAUSE in this spin: each iteration is a clock read already, and
     * under KVM a tight PAUSE loop can be taken for a lock waiter's spin
     * (pause-loop exiting) and descheduled, which is the lateness we spin to
     * avoid.
     */
    while (now < d)
        now = hk__clock_now();
    q->holds++;
    q->held_ns += now - start;
    return now;
}

/*
 * An ONTIME or HOLD timer at the top of the heap runs at now >= its arming
 * moment. Its run covers every grid point whose arming moment has passed (the
 * expirations), and the next grid point is armed with the current estimate.
 */
uint64_t hk__queue_ontime_fire(hk_loop_t *loop, hk_timer_t *t, uint64_t now)
{
    struct hk__queue *q = loop->queue;
    uint64_t d = t->_deadline;
    if (t->base._flags & HK__HOLD) {
        if (now < d)
            now = loop->now = hk__hold_until(loop, now, d);
        else
            q->holds_late++;
    }
    if (loop->metrics)
        hk__lag_record(loop, now > d ? now - d : 0);
    q->ontime_runs++;
    if (now < d) {
        q->ontime_early++;
        q->ontime_early_ns += d - now;
    }
    if (!t->_period) {
        hk__heap_remove(loop, t);
        hk__queue_ontime_stop(loop, t);
        hk__handle_stop(&t->base);
        return 1;
    }
    uint64_t adv = hk__ontime_arming(loop, t, now);
    uint64_t eff = now + adv;
    uint64_t missed = eff >= d ? (eff - d) / t->_period : 0;
    uint64_t step = (missed + 1) * t->_period;
    if (step >= HK_DEADLINE_MAX - d) {
        hk_timer_stop(t); /* the grid ran past any meaningful time */
    } else {
        /* The new grid point is beyond now + adv, so its arming moment is in the future. */
        t->_deadline = d + step;
        hk__heap_replace_top(loop, t->_deadline - adv);
    }
    return missed + 1;
}
