/*
 * bench/drift/libev.c: the tick on libev, an ev_periodic (libev's timer on an
 * absolute grid: offset + k * interval, in wall-clock time). Its lateness is
 * measured in the same clock, CLOCK_REALTIME, against the grid it was given,
 * so a slewing wall clock cannot bias it. An ev_periodic fires at the first
 * grid point after "now", so it is started by a one-shot ev_timer half a
 * period before the first tick, to keep the warm-up free of ticks.
 */
#include "drift.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>

typedef struct drift_ev {
    ev_periodic tick;
    ev_timer starter;
    drift_run_t *run;
    drift_load_t load;
    ev_io *ios;
    uint64_t rt_first; /* the first tick in CLOCK_REALTIME ns */
} drift_ev_t;

static drift_ev_t *drift_ev_self(void *w)
{
    return ((ev_watcher *)w)->data;
}

static void drift_ev_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    drift_ev_t *e = drift_ev_self(w);
    drift_load_ready(&e->load, (int)(w - e->ios));
}

static void drift_ev_tick(struct ev_loop *loop, ev_periodic *w, int revents)
{
    (void)revents;
    drift_ev_t *e = drift_ev_self(w);
    drift_run_t *r = e->run;
    /* Rescheduled before the callback: ev_periodic_at is the next grid point already. */
    uint64_t next = (uint64_t)(ev_periodic_at(w) * 1e9 + 0.5);
    uint64_t k = (next - e->rt_first + r->period / 2) / r->period; /* whole periods */
    drift_tick(r, drift_realtime(), e->rt_first + (k - 1) * r->period);
    if (r->done >= r->ticks)
        ev_break(loop, EVBREAK_ALL);
}

static void drift_ev_start(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    drift_ev_t *e = drift_ev_self(w);
    ev_periodic_init(&e->tick, drift_ev_tick, (double)e->rt_first / 1e9,
                     (double)e->run->period / 1e9, 0);
    e->tick.data = e;
    ev_periodic_start(loop, &e->tick);
}

int drift_run_libev(drift_run_t *r)
{
    drift_ev_t e = {.run = r};
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
    if (!loop)
        return -ENOMEM;
    e.ios = calloc((size_t)r->nfds, sizeof *e.ios);
    int err = e.ios ? drift_load_open(&e.load, r) : -ENOMEM;
    for (int i = 0; err >= 0 && i < r->nfds; i++) {
        ev_io_init(&e.ios[i], drift_ev_io, e.load.fds[i], EV_READ);
        e.ios[i].data = &e;
        ev_io_start(loop, &e.ios[i]);
    }
    if (err >= 0) {
        uint64_t mono = drift_now(), rt = drift_realtime();
        e.rt_first = rt + (r->first - mono);
        double start_in = (double)(r->first - mono - r->period / 2) / 1e9;
        ev_timer_init(&e.starter, drift_ev_start, start_in > 0 ? start_in : 0, 0);
        e.starter.data = &e;
        ev_timer_start(loop, &e.starter);
        ev_run(loop, 0);
    }
    for (int i = 0; e.ios && i < r->nfds; i++)
        ev_io_stop(loop, &e.ios[i]);
    ev_periodic_stop(loop, &e.tick);
    ev_timer_stop(loop, &e.starter);
    ev_loop_destroy(loop);
    drift_load_close(&e.load);
    free(e.ios);
    return err < 0 ? err : 0;
}
