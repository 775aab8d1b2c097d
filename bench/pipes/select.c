/*
 * bench/pipes/select.c: a select(2) loop, the oldest baseline.
 *
 * Why: select is O(N) twice over, like poll, and also limited to fds below
 * FD_SETSIZE (1024): N socketpairs use 2N fds, so only the smallest N can run
 * (the harness skips the rest with a note). Each iteration copies the interest
 * set, because select overwrites it, and scans the watched fds for the ready
 * ones, stopping once it has found as many as select reported.
 */
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

typedef struct pipes_select {
    fd_set want;
    int nfds;
} pipes_select_t;

static int pipes_select_setup(pipes_bench_t *b)
{
    pipes_select_t *s = malloc(sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    FD_ZERO(&s->want);
    s->nfds = 0;
    for (int i = 0; i < b->n; i++) {
        int fd = b->fds[2 * i];
        if (fd >= FD_SETSIZE) {
            free(s);
            return -EMFILE;
        }
        FD_SET(fd, &s->want);
        s->nfds = fd + 1 > s->nfds ? fd + 1 : s->nfds;
    }
    b->sys = s;
    return 0;
}

PIPES_TIMED void pipes_timed_select(pipes_bench_t *b)
{
    pipes_select_t *s = b->sys;
    long iterations = 0; /* a register, not a store per iteration */
    int done = 0;
    while (!done) {
        iterations++;
        fd_set ready_set;
        memcpy(&ready_set, &s->want, sizeof(ready_set));
        int ready = select(s->nfds, &ready_set, NULL, NULL, NULL);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            b->failures++;
            break;
        }
        for (int i = 0; ready > 0 && i < b->n; i++) {
            if (FD_ISSET(b->fds[2 * i], &ready_set)) {
                ready--;
                done |= pipes_on_readable(b, i);
            }
        }
    }
    b->iterations += iterations;
}

static long pipes_select_iterations(pipes_bench_t *b)
{
    return b->iterations;
}

static void pipes_select_teardown(pipes_bench_t *b)
{
    free(b->sys);
    b->sys = NULL;
}

const pipes_system_t pipes_system = {
    .name = "select",
    .setup = pipes_select_setup,
    .timed = pipes_timed_select,
    .teardown = pipes_select_teardown,
    .iterations = pipes_select_iterations,
    .fd_limit = FD_SETSIZE,
};
