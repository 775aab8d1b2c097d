/*
 * bench/pipes/libev.c: the pipes benchmark on libev (ev_io).
 *
 * Why: libev is the lean classic reactor and a usual reference for cost per
 * event. The loop is asked for the epoll backend explicitly, so a build that
 * would pick another backend (linuxaio, io_uring) still measures epoll. The
 * round ends with ev_break from inside the last callback, so ev_run's own
 * iteration (time update, pending queue, fd change list) is all counted.
 */
#include "common.h"

#include <errno.h>
#include <ev.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct pipes_libev {
    struct ev_loop *loop;
    ev_io *ios;
} pipes_libev_t;

/* The callback's context: a static is one load, ev_userdata() is a call. */
static pipes_bench_t *pipes_libev_bench;

static void pipes_libev_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    if (pipes_on_readable(pipes_libev_bench, (int)(intptr_t)w->data)) {
        ev_break(loop, EVBREAK_ALL);
    }
}

static int pipes_libev_setup(pipes_bench_t *b)
{
    pipes_libev_t *s = malloc(sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->ios = calloc((size_t)b->n, sizeof(*s->ios));
    s->loop = ev_loop_new(EVBACKEND_EPOLL);
    if (s->ios == NULL || s->loop == NULL) {
        if (s->loop != NULL) {
            ev_loop_destroy(s->loop);
        }
        free(s->ios);
        free(s);
        return -ENOMEM;
    }
    pipes_libev_bench = b;
    for (int i = 0; i < b->n; i++) {
        ev_io_init(&s->ios[i], pipes_libev_cb, b->fds[2 * i], EV_READ);
        s->ios[i].data = (void *)(intptr_t)i;
        ev_io_start(s->loop, &s->ios[i]);
    }
    b->sys = s;
    /* Let libev push its fd changes to epoll before the clock starts. */
    ev_run(s->loop, EVRUN_NOWAIT);
    return 0;
}

PIPES_TIMED void pipes_timed_libev(pipes_bench_t *b)
{
    pipes_libev_t *s = b->sys;
    ev_run(s->loop, 0);
}

static void pipes_libev_teardown(pipes_bench_t *b)
{
    pipes_libev_t *s = b->sys;
    for (int i = 0; i < b->n; i++) {
        ev_io_stop(s->loop, &s->ios[i]);
    }
    ev_loop_destroy(s->loop);
    free(s->ios);
    free(s);
    b->sys = NULL;
}

const pipes_system_t pipes_system = {
    .name = "libev",
    .setup = pipes_libev_setup,
    .timed = pipes_timed_libev,
    .teardown = pipes_libev_teardown,
};
