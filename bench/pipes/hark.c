/*
 * bench/pipes/hark.c: the pipes benchmark on hark (hk_io_t).
 *
 * Why: this is the number the rest of the benchmark is for. The watchers are
 * plain level-triggered HK_READABLE io watchers in one array (hark's
 * watchers are embedded, so registering them allocates nothing), the
 * socketpair's index rides in the handle's data, and the round ends with
 * hk_loop_stop from inside the last callback, so a whole hk_loop_run
 * iteration (time update, stale-event check, deferred work, hooks) is counted,
 * as it is for libuv, libev and libevent.
 *
 * Built twice: pipes-hark with the loop's default metrics, and, with
 * PIPES_HARK_NO_METRICS, pipes-hark-nometrics with HK_LOOP_NO_METRICS, to
 * show what the metrics' clock reads cost.
 */
#include "common.h"

#include <errno.h>
#include <hark/loop.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef PIPES_HARK_NO_METRICS
#define PIPES_HARK_NAME "hark-nometrics"
#define PIPES_HARK_FLAGS HK_LOOP_NO_METRICS
#define PIPES_HARK_TIMED pipes_timed_hark_nometrics
#else
#define PIPES_HARK_NAME "hark"
#define PIPES_HARK_FLAGS 0u
#define PIPES_HARK_TIMED pipes_timed_hark
#endif

typedef struct pipes_hark {
    hk_loop_t *loop;
    hk_io_t *ios;
} pipes_hark_t;

/* The callback's context (the handle's data carries the socketpair's index). */
static pipes_bench_t *pipes_hark_bench;

static void pipes_hark_cb(hk_io_t *io, unsigned revents)
{
    (void)revents;
    if (pipes_on_readable(pipes_hark_bench, (int)(intptr_t)io->base.data)) {
        hk_loop_stop(io->base.loop);
    }
}

static void pipes_hark_teardown(pipes_bench_t *b)
{
    pipes_hark_t *s = b->sys;
    for (int i = 0; i < b->n; i++) {
        if (s->ios[i].base.loop != NULL) {
            hk_close(&s->ios[i].base, NULL);
        }
    }
    /* Close callbacks run on the next iteration; then the loop can be freed. */
    hk_loop_run(s->loop, HK_RUN_NOWAIT);
    hk_loop_free(s->loop);
    free(s->ios);
    free(s);
    pipes_hark_bench = NULL;
    b->sys = NULL;
}

static int pipes_hark_setup(pipes_bench_t *b)
{
    pipes_hark_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->ios = calloc((size_t)b->n, sizeof(*s->ios));
    int err = s->ios == NULL ? -ENOMEM : hk_loop_new(&s->loop, PIPES_HARK_FLAGS);
    if (err < 0) {
        free(s->ios);
        free(s);
        return err;
    }
    b->sys = s;
    pipes_hark_bench = b;
    for (int i = 0; i < b->n; i++) {
        err = hk_io_init(s->loop, &s->ios[i], b->fds[2 * i]);
        if (err >= 0) {
            s->ios[i].base.data = (void *)(intptr_t)i;
            err = hk_io_start(&s->ios[i], HK_READABLE, pipes_hark_cb);
        }
        if (err < 0) {
            pipes_hark_teardown(b);
            return err;
        }
    }
    /* Flush anything hark defers to its first iteration before the clock starts. */
    hk_loop_run(s->loop, HK_RUN_NOWAIT);
    return 0;
}

PIPES_TIMED void PIPES_HARK_TIMED(pipes_bench_t *b)
{
    pipes_hark_t *s = b->sys;
    hk_loop_run(s->loop, HK_RUN_DEFAULT);
}

/* hark counts its iterations itself (hk_loop_stats), so the timed part stays as it was. */
static long pipes_hark_iterations(pipes_bench_t *b)
{
    pipes_hark_t *s = b->sys;
    hk_loop_stats_t st;
    if (hk_loop_stats(s->loop, &st) < 0) {
        return -1;
    }
    return (long)st.iterations;
}

const pipes_system_t pipes_system = {
    .name = PIPES_HARK_NAME,
    .setup = pipes_hark_setup,
    .timed = PIPES_HARK_TIMED,
    .teardown = pipes_hark_teardown,
    .iterations = pipes_hark_iterations,
};
