/*
 * Shared helpers for the publish tests: versions that carry a magic value
 * (readers check it; the free function poisons it), and a free function that
 * counts the versions alive, so a test can tell when and how many were freed.
 * Everything is static inline so a file that does not use a helper does not
 * warn about it.
 */
#ifndef HK_TEST_PUBLISH_UTIL_H
#define HK_TEST_PUBLISH_UTIL_H

#include <criterion/criterion.h>
#include <hark.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define VERSION_LIVE UINT64_C(0x6c6976652d766572) /* "live-ver" */
#define VERSION_DEAD UINT64_C(0xdeaddeaddeaddead)

typedef struct version {
    _Atomic uint64_t magic; /* atomic: a reader racing a free must show up in ASan, not TSan */
    uint64_t num;           /* the writer's publication number, from 1 */
    uint64_t payload[6];
} version_t;

typedef struct counts {
    atomic_long live;        /* allocated and not yet freed */
    atomic_long freed;       /* free_fn calls */
    atomic_long bad_frees;   /* free_fn saw a version that was not live (double free) */
    atomic_ulong last_freed; /* num of the last version freed */
} counts_t;

static inline version_t *version_new(counts_t *c, uint64_t num)
{
    version_t *v = malloc(sizeof *v);
    cr_assert_not_null(v);
    atomic_store(&v->magic, VERSION_LIVE);
    v->num = num;
    for (int i = 0; i < 6; i++)
        v->payload[i] = num * 7 + (uint64_t)i;
    atomic_fetch_add(&c->live, 1);
    return v;
}

/* A reader's check: 1 when v looks like a live, intact version. */
static inline int version_ok(const version_t *v)
{
    return atomic_load_explicit(&v->magic, memory_order_relaxed) == VERSION_LIVE &&
           v->payload[5] == v->num * 7 + 5;
}

/* The hk_publish_free_fn of the tests; arg is a counts_t. */
static inline void version_free(void *p, void *arg)
{
    counts_t *c = arg;
    version_t *v = p;
    if (atomic_exchange(&v->magic, VERSION_DEAD) != VERSION_LIVE)
        atomic_fetch_add(&c->bad_frees, 1);
    atomic_store(&c->last_freed, v->num);
    free(v);
    atomic_fetch_sub(&c->live, 1);
    atomic_fetch_add(&c->freed, 1);
}

static inline hk_publish_t *publish_new(counts_t *c)
{
    hk_publish_t *pub = NULL;
    int r = hk_publish_new(&pub, version_free, c);
    cr_assert_eq(r, 0, "hk_publish_new: %s", hk_err_name(r));
    return pub;
}

static inline hk_loop_t *loop_new(void)
{
    hk_loop_t *loop = NULL;
    int r = hk_loop_new(&loop, 0);
    cr_assert_eq(r, 0, "hk_loop_new: %s", hk_err_name(r));
    return loop;
}

/* Runs the close callbacks, then frees the loop (which ends its RCU registration). */
static inline void loop_finish(hk_loop_t *loop)
{
    int r = hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_geq(r, 0, "hk_loop_run(NOWAIT): %s", hk_err_name(r));
    r = hk_loop_free(loop);
    cr_assert_eq(r, 0, "hk_loop_free: %s", hk_err_name(r));
}

/*
 * Attaches the calling thread's loop, runs cb once from a timer (the callback
 * closes the timer), then runs the loop until nothing is left and frees it.
 */
static inline void run_attached_once(hk_timer_cb cb, void *data)
{
    hk_loop_t *loop = loop_new();
    cr_assert_eq(hk_publish_attach(loop), 0);
    hk_timer_t t;
    hk_timer_init(loop, &t);
    t.base.data = data;
    cr_assert_eq(hk_timer_start_in(&t, cb, 0, 0), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    loop_finish(loop);
}

#endif
