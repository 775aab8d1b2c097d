/*
 * The runtime object: creation and teardown of workers, the netpoller and the
 * blocking bridge, and hk_co_run(), the door from an ordinary thread into the
 * coroutine world.
 */
#include "co/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The live runtimes, for hk_co_close called off the workers (a pool thread of
 * hk_co_blocking, any other thread): it has no worker to say which runtime's
 * netpoller may hold the fd, so it asks each.
 */
static pthread_mutex_t hk__live_lock = PTHREAD_MUTEX_INITIALIZER;
static hk_co_runtime_t *hk__live;

static void hk__live_add(hk_co_runtime_t *rt)
{
    pthread_mutex_lock(&hk__live_lock);
    rt->live_next = hk__live;
    hk__live = rt;
    pthread_mutex_unlock(&hk__live_lock);
}

static void hk__live_remove(hk_co_runtime_t *rt)
{
    pthread_mutex_lock(&hk__live_lock);
    for (hk_co_runtime_t **pp = &hk__live; *pp; pp = &(*pp)->live_next) {
        if (*pp == rt) {
            *pp = rt->live_next;
            break;
        }
    }
    pthread_mutex_unlock(&hk__live_lock);
}

void hk__runtime_each(void (*fn)(hk_co_runtime_t *rt, void *arg), void *arg)
{
    pthread_mutex_lock(&hk__live_lock);
    for (hk_co_runtime_t *rt = hk__live; rt; rt = rt->live_next)
        fn(rt, arg);
    pthread_mutex_unlock(&hk__live_lock);
}

static void hk__runtime_stop_workers(hk_co_runtime_t *rt, unsigned started)
{
    __atomic_store_n(&rt->stopping, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&rt->idle_lock);
    pthread_cond_broadcast(&rt->idle_cond);
    pthread_mutex_unlock(&rt->idle_lock);
    hk__poll_interrupt(rt);
    for (unsigned i = 0; i < started; i++)
        pthread_join(rt->workers[i].thread, NULL);
}

static void hk__runtime_destroy(hk_co_runtime_t *rt)
{
    hk__poll_fini(rt);
    pthread_mutex_destroy(&rt->glock);
    pthread_mutex_destroy(&rt->idle_lock);
    pthread_cond_destroy(&rt->idle_cond);
    pthread_mutex_destroy(&rt->tlock);
    pthread_mutex_destroy(&rt->mon_lock);
    pthread_cond_destroy(&rt->mon_cond);
    free(rt->heap);
    free(rt->workers);
    free(rt);
}

int hk_co_runtime_new(hk_co_runtime_t **rtp, const hk_co_runtime_options_t *opts)
{
    if (hk__worker_current())
        return -EPERM;
    unsigned n = opts ? opts->workers : 0;
    size_t stack = opts && opts->stack_size ? opts->stack_size : HK_CO_STACK_DEFAULT;
    if (stack < HK_CO_STACK_MIN)
        return -EINVAL;
    uint64_t stall = opts && opts->stall_ns ? opts->stall_ns : HK_STALL_DEFAULT_NS;
    if (stall == HK_CO_STALL_OFF)
        stall = 0;
    else if (stall < UINT64_C(1000000) || stall >= HK_DEADLINE_MAX)
        return -EINVAL;
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    hk_co_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt)
        return -ENOMEM;
    rt->nworkers = n;
    rt->stack_size = stack;
    rt->stall_ns = stall;
    hk__monitor_prepare(rt);
    rt->stall_cb = opts ? opts->stall_cb : NULL;
    rt->stall_arg = opts ? opts->stall_arg : NULL;
    rt->next_deadline = HK_FOREVER;
    rt->workers = calloc(n, sizeof *rt->workers);
    pthread_mutex_init(&rt->glock, NULL);
    pthread_mutex_init(&rt->idle_lock, NULL);
    pthread_cond_init(&rt->idle_cond, NULL);
    pthread_mutex_init(&rt->tlock, NULL);
    pthread_mutex_init(&rt->mon_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->mon_cond, &ca);
    pthread_condattr_destroy(&ca);
    for (unsigned i = 0; rt->workers && i < n; i++) {
        hk__runq_init(&rt->workers[i].q);
        rt->workers[i].rt = rt;
        rt->workers[i].index = i;
        rt->workers[i].rng = 0x9E3779B97F4A7C15ull * (i + 1);
    }
    int r = rt->workers ? hk__poll_init(rt) : -ENOMEM;
    if (r < 0) {
        rt->epfd = rt->evfd = -1;
        hk__runtime_destroy(rt);
        return r;
    }
    unsigned started = 0;
    for (; started < n; started++) {
        if (pthread_create(&rt->workers[started].thread, NULL, hk__worker_main,
                           &rt->workers[started]) != 0)
            break;
    }
    if (started < n || (r = hk__blocking_init(rt)) < 0 || (r = hk__monitor_start(rt)) < 0) {
        hk__blocking_fini(rt);
        hk__runtime_stop_workers(rt, started);
        hk__runtime_destroy(rt);
        return r < 0 ? r : -EAGAIN;
    }
    hk__live_add(rt);
    *rtp = rt;
    return 0;
}

int hk_co_runtime_free(hk_co_runtime_t *rt)
{
    if (hk__worker_current())
        return -EPERM;
    if (__atomic_load_n(&rt->runs, __ATOMIC_SEQ_CST))
        return -EBUSY;
    hk__live_remove(rt);
    hk__monitor_stop(rt);
    hk__blocking_fini(rt);
    hk__runtime_stop_workers(rt, rt->nworkers);
    hk__runtime_destroy(rt);
    return 0;
}

unsigned hk_co_runtime_workers(const hk_co_runtime_t *rt)
{
    return rt->nworkers;
}

int hk_co_runtime_stats(const hk_co_runtime_t *rt, hk_co_runtime_stats_t *out)
{
    out->spawned = __atomic_load_n(&rt->stats.spawned, __ATOMIC_RELAXED);
    out->switches = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        out->switches += __atomic_load_n(&rt->workers[i].slices, __ATOMIC_RELAXED);
    out->steals = __atomic_load_n(&rt->stats.steals, __ATOMIC_RELAXED);
    out->migrations = __atomic_load_n(&rt->stats.migrations, __ATOMIC_RELAXED);
    out->polls = __atomic_load_n(&rt->stats.polls, __ATOMIC_RELAXED);
    out->parks = __atomic_load_n(&rt->stats.parks, __ATOMIC_RELAXED);
    out->stalls = __atomic_load_n(&rt->stats.stalls, __ATOMIC_RELAXED);
    return 0;
}

/* hk_co_run: a root scope, its first coroutine, and a thread that waits for both. */
typedef struct hk__runner {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int empty;
    hk_co_fn fn;
    void *arg;
    void *result;
    hk_co_scope_t *scope;
} hk__runner_t;

static void *hk__run_main(void *arg)
{
    hk__runner_t *r = arg;
    r->result = r->fn(r->arg);
    hk_co_scope_cancel(r->scope); /* the rest of the root scope ends with it */
    return NULL;
}

static void hk__run_empty(void *arg)
{
    hk__runner_t *r = arg;
    pthread_mutex_lock(&r->lock);
    r->empty = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* On hk_co_run's thread: waits until s has no coroutine left (none can join: it is cancelled). */
static void hk__run_wait_empty(hk__runner_t *r, hk_co_scope_t *s)
{
    hk__spin_lock(&s->lock);
    int busy = s->count != 0;
    if (busy) {
        pthread_mutex_lock(&r->lock);
        r->empty = 0;
        pthread_mutex_unlock(&r->lock);
        s->empty_cb = hk__run_empty;
        s->empty_arg = r;
    }
    hk__spin_unlock(&s->lock);
    if (!busy)
        return;
    pthread_mutex_lock(&r->lock);
    while (!r->empty)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

/*
 * Scopes that main's coroutines created and never closed: cancelled with the
 * root, but their coroutines may still be finishing (a blocking call cannot
 * be interrupted). No coroutine outlives its scope, and no scope outlives
 * hk_co_run: each is waited for, outermost first (once a scope is empty, no
 * coroutine of it can close its children under our feet), then freed.
 */
static void hk__run_reap(hk__runner_t *r, hk_co_scope_t *s)
{
    for (;;) {
        hk__spin_lock(&s->lock);
        hk_co_scope_t *c = s->children;
        hk__spin_unlock(&s->lock);
        if (!c)
            return;
        hk__run_wait_empty(r, c);
        hk__run_reap(r, c);
        hk__scope_destroy(c);
    }
}

int hk_co_run(hk_co_runtime_t *rt, hk_co_fn fn, void *arg, void **result)
{
    if (hk__worker_current())
        return -EPERM;
    if (!fn)
        return -EINVAL;
    hk__runner_t r = {.fn = fn, .arg = arg};
    int err = hk__scope_create(rt, NULL, &r.scope);
    if (err < 0)
        return err;
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    r.scope->empty_cb = hk__run_empty;
    r.scope->empty_arg = &r;
    __atomic_fetch_add(&rt->runs, 1, __ATOMIC_SEQ_CST);
    hk_co_attr_t attr = {.name = "main"};
    err = hk_co_spawn(r.scope, hk__run_main, &r, &attr, NULL);
    if (err == 0) {
        pthread_mutex_lock(&r.lock);
        while (!r.empty)
            pthread_cond_wait(&r.cond, &r.lock);
        pthread_mutex_unlock(&r.lock);
        if (result)
            *result = r.result;
        hk__run_reap(&r, r.scope);
    }
    hk__scope_destroy(r.scope);
    __atomic_fetch_sub(&rt->runs, 1, __ATOMIC_SEQ_CST);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
    return err;
}
