/*
 * Timers on an absolute CLOCK_MONOTONIC schedule.
 *
 * A repeating timer's deadlines form a grid, first + k * period. After a late
 * run the next deadline is the first grid point after now, never now + period:
 * computing from "now" lets each tick's lateness push all later ticks back,
 * which is how libuv's repeating timers drift. The callback is told how many
 * grid points passed (1 when on time), like a timerfd's expiration count.
 * An ONTIME timer keeps its grid point in _deadline but sits in the heap at
 * its arming moment, deadline - advance (queue.c).
 */
#include "loop/stall.h"

int hk_timer_init(hk_loop_t *loop, hk_timer_t *timer)
{
    if (!loop || !timer)
        return -EINVAL;
    hk__handle_init(loop, &timer->base, HK_HANDLE_TIMER);
    timer->_cb = NULL;
    timer->_deadline = 0;
    timer->_period = 0;
    timer->_seq = 0;
    timer->_heap_index = 0;
    return 0;
}

int hk_timer_start(hk_timer_t *timer, hk_timer_cb cb, uint64_t deadline_ns, int64_t period_ns)
{
    return hk_timer_start_flags(timer, cb, deadline_ns, period_ns, 0);
}

int hk_timer_start_flags(hk_timer_t *timer, hk_timer_cb cb, uint64_t deadline_ns, int64_t period_ns,
                         unsigned flags)
{
    if (!cb || period_ns < 0 || deadline_ns >= HK_DEADLINE_MAX ||
        (flags & ~(HK_TIMER_ONTIME | HK_TIMER_HOLD)))
        return -EINVAL;
    if (timer->base._flags & HK__ACTIVE)
        return -EBUSY;
    if (timer->base._flags & (HK__CLOSING | HK__CLOSED))
        return -EINVAL;
    hk_loop_t *loop = timer->base.loop;
    timer->_cb = cb;
    timer->_deadline = deadline_ns;
    timer->_period = (uint64_t)period_ns;
    uint64_t when = deadline_ns;
    if (flags & (HK_TIMER_ONTIME | HK_TIMER_HOLD)) {
        int r = hk__queue_ontime_start(loop, timer, flags, &when);
        if (r < 0)
            return r;
    }
    timer->_seq = ++loop->timer_seq;
    int r = hk__heap_push(loop, timer, when);
    if (r < 0) {
        if (flags & (HK_TIMER_ONTIME | HK_TIMER_HOLD))
            hk__queue_ontime_stop(loop, timer);
        return r;
    }
    hk__handle_start(&timer->base);
    return 0;
}

int hk_timer_start_in(hk_timer_t *timer, hk_timer_cb cb, int64_t delay_ns, int64_t period_ns)
{
    uint64_t now = timer->base.loop->now;
    if (delay_ns < 0 || (uint64_t)delay_ns >= HK_DEADLINE_MAX - now)
        return -EINVAL;
    return hk_timer_start(timer, cb, now + (uint64_t)delay_ns, period_ns);
}

int hk_timer_stop(hk_timer_t *timer)
{
    if (!(timer->base._flags & HK__ACTIVE))
        return -EALREADY;
    hk__heap_remove(timer->base.loop, timer);
    if (HK_UNLIKELY(timer->base._flags & HK__ONTIME))
        hk__queue_ontime_stop(timer->base.loop, timer);
    hk__handle_stop(&timer->base);
    return 0;
}

uint64_t hk_timer_deadline(const hk_timer_t *timer)
{
    return timer->_deadline;
}

/*
 * Runs every timer due at the loop's cached time. Timers started by these
 * callbacks wait for the next pass even when already due, so a callback
 * that re-arms itself with delay 0 cannot starve the loop. They are set
 * aside (parked) rather than ending the pass: one re-armed with a deadline
 * earlier than another due timer's would otherwise sit at the top of the
 * heap and end every pass before that timer, for as long as it re-arms.
 */
void hk__timers_run(hk_loop_t *loop)
{
    uint64_t now = loop->now;
    uint64_t seq_limit = loop->timer_seq;
    while (loop->heap_len > 0 && loop->heap[0].when <= now) {
        hk_timer_t *t = loop->heap[0].timer;
        if (t->_seq > seq_limit) {
            if (hk__heap_park_top(loop) < 0)
                break; /* no memory to set it aside: the rest waits for the next pass */
            continue;
        }
        uint64_t expirations = 1;
        if (HK_UNLIKELY(t->base._flags & HK__ONTIME)) {
            /* Armed early, so now may be before the deadline (queue.c). */
            expirations = hk__queue_ontime_fire(loop, t, now);
        } else {
            uint64_t late = now - t->_deadline;
            if (loop->metrics)
                hk__lag_record(loop, late);
            if (t->_period) {
                uint64_t missed = late / t->_period;
                uint64_t step = (missed + 1) * t->_period;
                expirations += missed;
                if (step >= HK_DEADLINE_MAX - t->_deadline) {
                    hk_timer_stop(t); /* the grid ran past any meaningful time */
                } else {
                    t->_deadline += step;
                    hk__heap_replace_top(loop, t->_deadline);
                }
            } else {
                hk__heap_remove(loop, t);
                hk__handle_stop(&t->base);
            }
        }
        loop->stats.timers_fired++;
        loop->stats.callbacks++;
        if (HK_UNLIKELY(loop->queue_on)) {
            hk__queue_timer_cb(loop, t, expirations); /* measured */
            continue;
        }
        hk__stall_enter(loop, (const void *)t->_cb);
        t->_cb(t, expirations);
        hk__stall_leave(loop);
    }
    if (loop->nparked > 0)
        hk__heap_unpark_all(loop);
}
