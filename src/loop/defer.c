/*
 * Deferred callbacks: "run this after the current callback, before sleeping".
 * Rounds are bounded so that a callback deferring itself forever cannot keep
 * the loop from polling; the rest waits for the next iteration, which does
 * not sleep while the queue is non-empty.
 */
#include "loop/stall.h"

#define HK__DEFER_ROUNDS 64

int hk_defer(hk_loop_t *loop, hk_defer_t *defer, hk_defer_cb cb)
{
    if (!loop || !defer || !cb)
        return -EINVAL;
    if (defer->_queued)
        return -EBUSY;
    defer->_cb = cb;
    defer->_queued = 1;
    hk__list_insert_tail(&loop->defers, &defer->_link);
    return 0;
}

int hk_defer_cancel(hk_loop_t *loop, hk_defer_t *defer)
{
    (void)loop;
    if (!defer->_queued)
        return -EALREADY;
    hk__list_remove(&defer->_link);
    defer->_queued = 0;
    return 0;
}

/* The budget of rounds is per iteration: hk_loop_run resets it at each one. */
void hk__defers_run(hk_loop_t *loop)
{
    for (; loop->defer_rounds < HK__DEFER_ROUNDS && !hk__list_empty(&loop->defers);
         loop->defer_rounds++) {
        struct hk__link tmp;
        hk__list_move(&loop->defers, &tmp);
        while (!hk__list_empty(&tmp)) {
            struct hk__link *l = tmp._next;
            hk__list_remove(l);
            hk_defer_t *d = HK_CONTAINER_OF(l, hk_defer_t, _link);
            d->_queued = 0;
            loop->stats.callbacks++;
            hk__stall_enter(loop, (const void *)d->_cb);
            d->_cb(d);
            hk__stall_leave(loop);
            /*
             * A callback boundary, as between io callbacks: an ONTIME or HOLD
             * timer due now runs before the next deferred callback (loop.h:
             * deferred work ready inside a hold window waits for the timer).
             */
            if (HK_UNLIKELY(loop->queue_on))
                hk__queue_after_cb(loop);
        }
    }
}
