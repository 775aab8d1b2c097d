/*
 * bench/drift/libuv.c: the tick on libuv, uv_timer_start with a repeat of
 * period (libuv's own way to repeat). libuv re-arms a repeating timer at
 * "loop time when it ran + repeat", in milliseconds, so each tick's lateness
 * is added to all later ticks: that is the drift this benchmark shows.
 * The first tick is due at run->first exactly (a whole millisecond).
 */
#include "drift.h"

#include <errno.h>
#include <stdlib.h>
#include <uv.h>

typedef struct drift_uv {
    uv_timer_t tick;
    drift_run_t *run;
    drift_load_t load;
    uv_poll_t *polls;
} drift_uv_t;

static void drift_uv_io(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    drift_uv_t *u = p->data;
    drift_load_ready(&u->load, (int)(p - u->polls));
}

static void drift_uv_tick(uv_timer_t *t)
{
    drift_uv_t *u = t->data;
    drift_run_t *r = u->run;
    drift_tick(r, drift_now(), r->first + (uint64_t)r->done * r->period);
    if (r->done >= r->ticks)
        uv_stop(t->loop);
}

static void drift_uv_closed(uv_handle_t *h)
{
    (void)h;
}

int drift_run_libuv(drift_run_t *r)
{
    drift_uv_t u = {.run = r};
    uv_loop_t loop;
    int err = uv_loop_init(&loop);
    if (err < 0)
        return err;
    u.polls = calloc((size_t)r->nfds, sizeof *u.polls);
    err = u.polls ? drift_load_open(&u.load, r) : -ENOMEM;
    int npolls = 0;
    for (int i = 0; err >= 0 && i < r->nfds; i++) {
        err = uv_poll_init(&loop, &u.polls[i], u.load.fds[i]);
        if (err < 0)
            break;
        npolls++;
        u.polls[i].data = &u;
        err = uv_poll_start(&u.polls[i], UV_READABLE, drift_uv_io);
    }
    int timer = 0;
    if (err >= 0)
        err = uv_timer_init(&loop, &u.tick);
    if (err >= 0) {
        timer = 1;
        u.tick.data = &u;
        uv_update_time(&loop);
        /* uv_now is CLOCK_MONOTONIC in ms (maybe the coarse clock): due = now + timeout. */
        uint64_t first_ms = r->first / 1000000u;
        uint64_t now_ms = uv_now(&loop);
        uint64_t period_ms = r->period / 1000000u;
        err = uv_timer_start(&u.tick, drift_uv_tick, first_ms > now_ms ? first_ms - now_ms : 0,
                             period_ms);
    }
    if (err >= 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < npolls; i++)
        uv_close((uv_handle_t *)&u.polls[i], drift_uv_closed);
    if (timer)
        uv_close((uv_handle_t *)&u.tick, drift_uv_closed);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    drift_load_close(&u.load);
    free(u.polls);
    return err < 0 ? err : 0;
}
