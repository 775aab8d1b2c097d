/*
 * bench/pipes/libuv.c: the pipes benchmark on libuv (uv_poll_t).
 *
 * Why: libuv is the most used epoll loop (Node.js) and the main peer hark is
 * compared with. uv_poll_t is its readiness watcher, the one that matches an
 * epoll io watcher (uv_tcp_t would add libuv's own reads and buffers). The
 * round ends with uv_stop from inside the last callback, so uv_run's full
 * iteration (timers, idle/prepare/check queues, time update) is counted.
 */
#include "common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

typedef struct pipes_libuv {
    uv_loop_t loop;
    uv_poll_t *polls;
} pipes_libuv_t;

/* The callback's context (the handle's data carries the socketpair's index). */
static pipes_bench_t *pipes_libuv_bench;

static void pipes_libuv_cb(uv_poll_t *handle, int status, int events)
{
    (void)status;
    (void)events;
    if (pipes_on_readable(pipes_libuv_bench, (int)(intptr_t)handle->data)) {
        uv_stop(handle->loop);
    }
}

static void pipes_libuv_teardown(pipes_bench_t *b)
{
    pipes_libuv_t *s = b->sys;
    for (int i = 0; i < b->n; i++) {
        if (s->polls[i].loop != NULL) {
            uv_close((uv_handle_t *)&s->polls[i], NULL);
        }
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    free(s->polls);
    free(s);
    b->sys = NULL;
}

static int pipes_libuv_setup(pipes_bench_t *b)
{
    pipes_libuv_t *s = malloc(sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->polls = calloc((size_t)b->n, sizeof(*s->polls));
    int err = s->polls == NULL ? UV_ENOMEM : uv_loop_init(&s->loop);
    if (err != 0) {
        free(s->polls);
        free(s);
        return err;
    }
    pipes_libuv_bench = b;
    b->sys = s;
    for (int i = 0; i < b->n; i++) {
        err = uv_poll_init(&s->loop, &s->polls[i], b->fds[2 * i]);
        s->polls[i].data = (void *)(intptr_t)i;
        if (err == 0) {
            err = uv_poll_start(&s->polls[i], UV_READABLE, pipes_libuv_cb);
        }
        if (err != 0) {
            pipes_libuv_teardown(b);
            return err;
        }
    }
    /* Let libuv register the fds with epoll before the clock starts. */
    uv_run(&s->loop, UV_RUN_NOWAIT);
    return 0;
}

PIPES_TIMED void pipes_timed_libuv(pipes_bench_t *b)
{
    pipes_libuv_t *s = b->sys;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

const pipes_system_t pipes_system = {
    .name = "libuv",
    .setup = pipes_libuv_setup,
    .timed = pipes_timed_libuv,
    .teardown = pipes_libuv_teardown,
};
