/*
 * bench/pipes/poll.c: a poll(2) loop over every fd, each iteration.
 *
 * Why: poll is the O(N) baseline. The kernel walks all N fds on every call
 * (and the caller walks the result), however few are ready, so its cost per
 * event grows with N while epoll's does not. The scan stops once it has seen
 * as many ready entries as poll returned, which is the best a poll loop can do.
 */
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

static int pipes_poll_setup(pipes_bench_t *b)
{
    struct pollfd *pfd = calloc((size_t)b->n, sizeof(*pfd));
    if (pfd == NULL) {
        return -ENOMEM;
    }
    for (int i = 0; i < b->n; i++) {
        pfd[i].fd = b->fds[2 * i];
        pfd[i].events = POLLIN;
    }
    b->sys = pfd;
    return 0;
}

PIPES_TIMED void pipes_timed_poll(pipes_bench_t *b)
{
    struct pollfd *pfd = b->sys;
    long iterations = 0; /* a register, not a store per iteration */
    int done = 0;
    while (!done) {
        iterations++;
        int ready = poll(pfd, (nfds_t)b->n, -1);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            b->failures++;
            break;
        }
        for (int i = 0; ready > 0 && i < b->n; i++) {
            if (pfd[i].revents != 0) {
                ready--;
                done |= pipes_on_readable(b, i);
            }
        }
    }
    b->iterations += iterations;
}

static long pipes_poll_iterations(pipes_bench_t *b)
{
    return b->iterations;
}

static void pipes_poll_teardown(pipes_bench_t *b)
{
    free(b->sys);
    b->sys = NULL;
}

const pipes_system_t pipes_system = {
    .name = "poll",
    .setup = pipes_poll_setup,
    .timed = pipes_timed_poll,
    .teardown = pipes_poll_teardown,
    .iterations = pipes_poll_iterations,
};
