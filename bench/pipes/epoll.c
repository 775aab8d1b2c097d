/*
 * bench/pipes/epoll.c: a minimal hand-written epoll loop, the floor.
 *
 * Why: no event library can do less per ready fd than one epoll_wait over a
 * batch and a direct call, so this is the number the others are measured
 * against. Each fd is registered once, level-triggered, with its socketpair
 * index in data.u32; there is no handle lookup, no generation tag, no timer
 * check and no stop flag beyond the round's own count.
 */
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define PIPES_EPOLL_BATCH 256

typedef struct pipes_epoll {
    int epfd;
} pipes_epoll_t;

static int pipes_epoll_setup(pipes_bench_t *b)
{
    pipes_epoll_t *s = malloc(sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int err = -errno;
        free(s);
        return err;
    }
    for (int i = 0; i < b->n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, b->fds[2 * i], &ev) != 0) {
            int err = -errno;
            close(s->epfd);
            free(s);
            return err;
        }
    }
    b->sys = s;
    return 0;
}

PIPES_TIMED void pipes_timed_epoll(pipes_bench_t *b)
{
    pipes_epoll_t *s = b->sys;
    struct epoll_event events[PIPES_EPOLL_BATCH];
    long iterations = 0; /* a register, not a store per iteration */
    int done = 0;
    while (!done) {
        iterations++;
        int ready = epoll_wait(s->epfd, events, PIPES_EPOLL_BATCH, -1);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            b->failures++;
            break;
        }
        for (int i = 0; i < ready; i++) {
            done |= pipes_on_readable(b, (int)events[i].data.u32);
        }
    }
    b->iterations += iterations;
}

static long pipes_epoll_iterations(pipes_bench_t *b)
{
    return b->iterations;
}

static void pipes_epoll_teardown(pipes_bench_t *b)
{
    pipes_epoll_t *s = b->sys;
    close(s->epfd);
    free(s);
    b->sys = NULL;
}

const pipes_system_t pipes_system = {
    .name = "epoll",
    .setup = pipes_epoll_setup,
    .timed = pipes_timed_epoll,
    .teardown = pipes_epoll_teardown,
    .iterations = pipes_epoll_iterations,
};
