/*
 * bench/drift/hark.c: the tick on hark, a plain repeating timer (grid
 * first + k * period), or one started with HK_TIMER_ONTIME or HK_TIMER_HOLD.
 * The queue model is on in all three (hk_loop_queue_measure), so every row
 * reports the loop's own estimate; measuring alone does not change the order
 * of callbacks.
 */
#include "drift.h"

#include <errno.h>
#include <hark/loop.h>
#include <stdlib.h>

typedef struct drift_hark {
    hk_timer_t tick;
    drift_run_t *run;
    drift_load_t load;
    hk_io_t *ios;
} drift_hark_t;

static void drift_hark_io(hk_io_t *io, unsigned revents)
{
    (void)revents;
    drift_hark_t *h = io->base.data;
    drift_load_ready(&h->load, (int)(io - h->ios));
}

static void drift_hark_tick(hk_timer_t *t, uint64_t expirations)
{
    drift_hark_t *h = (drift_hark_t *)t;
    drift_run_t *r = h->run;
    /* The deadline is already the next grid point: this run served the one before. */
    drift_tick(r, drift_now(), hk_timer_deadline(t) - r->period);
    (void)expirations; /* merged grid points show as lost ticks in drift_tick */
    hk_loop_queue_t q;
    if (hk_loop_queue_stats(t->base.loop, &q) == 0 && q.samples >= HK_QUEUE_MIN_SAMPLES &&
        q.wait_ns != HK_FOREVER) {
        r->loop_wq_sum += (double)q.wait_ns;
        r->loop_res_sum += (double)q.residual_ns;
        r->loop_rho_sum += q.rho;
        r->loop_wake_sum += (double)q.wake_ns;
        r->loop_adv_sum += (double)q.advance_ns;
        r->loop_wqw_sum += (double)q.wait_wake_ns;
        r->loop_hold_sum += (double)q.hold_window_ns;
        r->loop_est_n++;
    }
    if (r->done >= r->ticks)
        hk_loop_stop(t->base.loop);
}

int drift_run_hark(drift_run_t *r)
{
    drift_hark_t h = {.run = r};
    hk_loop_t *loop;
    int err = hk_loop_new(&loop, 0);
    if (err < 0)
        return err;
    h.ios = calloc((size_t)r->nfds, sizeof *h.ios);
    err = h.ios ? drift_load_open(&h.load, r) : -ENOMEM;
    for (int i = 0; err >= 0 && i < r->nfds; i++) {
        err = hk_io_init(loop, &h.ios[i], h.load.fds[i]);
        h.ios[i].base.data = &h;
        if (err >= 0)
            err = hk_io_start(&h.ios[i], HK_READABLE, drift_hark_io);
    }
    if (err >= 0)
        err = hk_loop_queue_measure(loop, HK_QUEUE_WINDOW_DEFAULT_NS);
    if (err >= 0)
        err = hk_timer_init(loop, &h.tick);
    if (err >= 0)
        err = hk_timer_start_flags(&h.tick, drift_hark_tick, r->first, (int64_t)r->period,
                                   r->ontime == 2   ? HK_TIMER_HOLD
                                   : r->ontime == 1 ? HK_TIMER_ONTIME
                                                    : 0);
    if (err >= 0)
        err = hk_loop_run(loop, HK_RUN_DEFAULT);
    hk_loop_queue_t q;
    if (hk_loop_queue_stats(loop, &q) == 0) {
        r->holds = q.holds;
        r->holds_late = q.holds_late;
        r->held_ns = q.held_ns;
    }
    for (int i = 0; h.ios && i < r->nfds; i++) {
        if (h.ios[i].base.loop)
            hk_close(&h.ios[i].base, NULL);
    }
    if (h.tick.base.loop)
        hk_close(&h.tick.base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    hk_loop_free(loop);
    drift_load_close(&h.load);
    free(h.ios);
    return err < 0 ? err : 0;
}
