/*
 * bench/broadcast, hark's side: one hk_publish_t, R reader loops (one thread
 * each) subscribed to it. The writer's hk_publish_set swaps the version and
 * sends each subscriber's async, which writes the loop's eventfd when the loop
 * sleeps; the subscriber callback records publish-to-callback latency. Old
 * versions are freed by liburcu's call_rcu thread, inside the measured window.
 */
#include <hark.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "broadcast.h"

typedef struct hark_reader {
    pthread_t th;
    hk_subscriber_t sub;
    hk_async_t stop;
    hk_publish_t *pub;
    samples_t *samples;
    int ready; /* atomic: 1 running, -errno failed */
} hark_reader_t;

typedef struct hark_bench {
    hk_publish_t *pub;
    hark_reader_t *readers;
    unsigned n, started;
} hark_bench_t;

static void on_version(hk_subscriber_t *sub, void *version)
{
    hark_reader_t *r = sub->data;
    const body_t *v = version;
    samples_record(r->samples, &v->stamp);
}

static void on_stop(hk_async_t *a)
{
    hark_reader_t *r = a->base.data;
    hk_publish_unsubscribe(&r->sub, NULL);
    hk_close(&a->base, NULL);
}

static void *reader_main(void *arg)
{
    hark_reader_t *r = arg;
    hk_loop_t *loop;
    int err = hk_loop_new(&loop, 0);
    if (err < 0) {
        __atomic_store_n(&r->ready, err, __ATOMIC_RELEASE);
        return NULL;
    }
    err = hk_publish_subscribe(r->pub, loop, &r->sub, on_version);
    if (err == 0 && (err = hk_async_init(loop, &r->stop, on_stop)) < 0)
        hk_publish_unsubscribe(&r->sub, NULL);
    if (err == 0) {
        r->sub.data = r;
        r->stop.base.data = r;
        __atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
        (void)hk_loop_run(loop, HK_RUN_DEFAULT);
    } else {
        __atomic_store_n(&r->ready, err, __ATOMIC_RELEASE);
    }
    (void)hk_loop_run(loop, HK_RUN_NOWAIT);
    (void)hk_loop_free(loop);
    return NULL;
}

static void free_version(void *version, void *arg)
{
    (void)arg;
    free(version);
}

static void hark_stop(void *ctx)
{
    hark_bench_t *b = ctx;
    for (unsigned i = 0; i < b->started; i++) {
        hark_reader_t *r = &b->readers[i];
        if (__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE) == 1)
            hk_async_send(&r->stop);
        pthread_join(r->th, NULL);
    }
    (void)hk_publish_free(b->pub);
    (void)hk_publish_barrier();
    free(b->readers);
    free(b);
}

static int hark_start(const bench_cfg_t *cfg, samples_t *per_reader, void **ctx)
{
    hark_bench_t *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->n = cfg->readers;
    b->readers = calloc(b->n, sizeof *b->readers);
    int err = b->readers ? hk_publish_new(&b->pub, free_version, NULL) : -ENOMEM;
    if (err < 0) {
        free(b->readers);
        free(b);
        return err;
    }
    for (; b->started < b->n; b->started++) {
        hark_reader_t *r = &b->readers[b->started];
        r->pub = b->pub;
        r->samples = &per_reader[b->started];
        err = -pthread_create(&r->th, NULL, reader_main, r);
        if (err < 0)
            break;
    }
    for (unsigned i = 0; i < b->started && err == 0; i++) {
        int ready;
        while ((ready = __atomic_load_n(&b->readers[i].ready, __ATOMIC_ACQUIRE)) == 0)
            usleep(1000);
        if (ready < 0)
            err = ready;
    }
    if (err < 0) {
        hark_stop(b);
        return err;
    }
    *ctx = b;
    return 0;
}

static int hark_publish(void *ctx, const stamp_t *stamp)
{
    hark_bench_t *b = ctx;
    body_t *v = malloc(sizeof *v);
    if (!v)
        return -ENOMEM;
    body_fill(v, stamp);
    int err = hk_publish_set(b->pub, v);
    if (err < 0)
        free(v);
    return err;
}

/*
 * What attaching costs a loop: ns per iteration of a loop that never sleeps
 * (an idle hook), with the loop attached (offline/online around each poll,
 * one hk_publish_get per iteration) or not.
 */
typedef struct spin {
    hk_hook_t idle;
    hk_publish_t *pub;
    uint64_t left, sink;
} spin_t;

static void spin_once(hk_hook_t *h)
{
    spin_t *s = h->base.data;
    if (s->pub)
        s->sink += (uintptr_t)hk_publish_get(s->pub);
    if (--s->left == 0)
        hk_close(&h->base, NULL);
}

double bench_iteration_ns(int attached, uint64_t iterations)
{
    hk_loop_t *loop;
    if (hk_loop_new(&loop, 0) < 0)
        return -1;
    spin_t s = {.left = iterations};
    if (attached && (hk_publish_new(&s.pub, NULL, NULL) < 0 || hk_publish_attach(loop) < 0))
        return -1;
    hk_hook_init(loop, &s.idle, HK_HOOK_IDLE);
    s.idle.base.data = &s;
    hk_hook_start(&s.idle, spin_once);
    uint64_t t0 = bench_now_ns();
    (void)hk_loop_run(loop, HK_RUN_DEFAULT);
    uint64_t t1 = bench_now_ns();
    (void)hk_loop_free(loop);
    if (s.pub)
        (void)hk_publish_free(s.pub);
    return (double)(t1 - t0) / (double)iterations;
}

const bench_system_t broadcast_hark = {
    .name = "hark",
    .start = hark_start,
    .publish = hark_publish,
    .stop = hark_stop,
};
