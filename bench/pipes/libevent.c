/*
 * bench/pipes/libevent.c: the pipes benchmark on libevent 2 (the bench's home).
 *
 * Why: this is the system libevent's own test/bench.c measures, with the same
 * persistent read events (EV_READ | EV_PERSIST) and the socketpair index as
 * the callback argument. The default base picks epoll on Linux; it is checked
 * so that the numbers are never silently for another backend. The round ends
 * with event_base_loopbreak from inside the last callback.
 */
#include "common.h"

#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pipes_libevent {
    struct event_base *base;
    struct event **events;
} pipes_libevent_t;

/* The callback's context (the argument carries the socketpair's index). */
static pipes_bench_t *pipes_libevent_bench;
static struct event_base *pipes_libevent_base;

static void pipes_libevent_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    if (pipes_on_readable(pipes_libevent_bench, (int)(intptr_t)arg)) {
        event_base_loopbreak(pipes_libevent_base);
    }
}

static void pipes_libevent_free(pipes_libevent_t *s, int n)
{
    for (int i = 0; i < n; i++) {
        if (s->events[i] != NULL) {
            event_free(s->events[i]);
        }
    }
    free(s->events);
    if (s->base != NULL) {
        event_base_free(s->base);
    }
    free(s);
}

static int pipes_libevent_setup(pipes_bench_t *b)
{
    pipes_libevent_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->events = calloc((size_t)b->n, sizeof(*s->events));
    s->base = event_base_new();
    if (s->events == NULL || s->base == NULL) {
        pipes_libevent_free(s, 0);
        return -ENOMEM;
    }
    if (strcmp(event_base_get_method(s->base), "epoll") != 0) {
        fprintf(stderr, "pipes: libevent chose %s, not epoll\n", event_base_get_method(s->base));
        pipes_libevent_free(s, 0);
        return -ENOTSUP;
    }
    for (int i = 0; i < b->n; i++) {
        s->events[i] = event_new(s->base, b->fds[2 * i], EV_READ | EV_PERSIST, pipes_libevent_cb,
                                 (void *)(intptr_t)i);
        if (s->events[i] == NULL || event_add(s->events[i], NULL) != 0) {
            pipes_libevent_free(s, i + 1);
            return -ENOMEM;
        }
    }
    pipes_libevent_bench = b;
    pipes_libevent_base = s->base;
    b->sys = s;
    /* Apply the change list to epoll before the clock starts. */
    event_base_loop(s->base, EVLOOP_NONBLOCK);
    return 0;
}

PIPES_TIMED void pipes_timed_libevent(pipes_bench_t *b)
{
    pipes_libevent_t *s = b->sys;
    event_base_loop(s->base, 0);
}

static void pipes_libevent_teardown(pipes_bench_t *b)
{
    pipes_libevent_free(b->sys, b->n);
    pipes_libevent_bench = NULL;
    pipes_libevent_base = NULL;
    b->sys = NULL;
}

const pipes_system_t pipes_system = {
    .name = "libevent",
    .setup = pipes_libevent_setup,
    .timed = pipes_timed_libevent,
    .teardown = pipes_libevent_teardown,
};
