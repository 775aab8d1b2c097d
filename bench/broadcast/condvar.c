/*
 * bench/broadcast, the peer: the textbook broadcast with one mutex and one
 * condition variable per reader thread. The writer allocates a version with a
 * reference per reader, and for each reader locks its mutex, replaces the
 * pending pointer (dropping the reference of one the reader never took: the
 * same coalescing as hark's), unlocks and signals. A reader waits on its
 * condition variable, takes the pending version, records the latency and
 * keeps the version as its current one (so, like a hark reader, it can read
 * it at any time) until the next arrives. The last reference frees it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "broadcast.h"

typedef struct cv_version {
    body_t body;
    unsigned refs; /* atomic */
} cv_version_t;

typedef struct cv_reader {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cv_version_t *pending; /* under mu */
    int stop;              /* under mu */
    pthread_t th;
    samples_t *samples;
} cv_reader_t;

typedef struct cv_bench {
    cv_reader_t *readers;
    unsigned n, started;
} cv_bench_t;

static void cv_unref(cv_version_t *v)
{
    if (v && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(v);
}

static void *cv_reader_main(void *arg)
{
    cv_reader_t *r = arg;
    cv_version_t *current = NULL;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->pending && !r->stop)
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->pending)
            break;
        cv_version_t *v = r->pending;
        r->pending = NULL;
        pthread_mutex_unlock(&r->mu);
        samples_record(r->samples, &v->body.stamp);
        cv_unref(current);
        current = v;
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    cv_unref(current);
    return NULL;
}

static void cv_stop(void *ctx)
{
    cv_bench_t *b = ctx;
    for (unsigned i = 0; i < b->started; i++) {
        cv_reader_t *r = &b->readers[i];
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->th, NULL);
    }
    for (unsigned i = 0; i < b->n; i++) {
        cv_unref(b->readers[i].pending);
        pthread_mutex_destroy(&b->readers[i].mu);
        pthread_cond_destroy(&b->readers[i].cv);
    }
    free(b->readers);
    free(b);
}

static int cv_start(const bench_cfg_t *cfg, samples_t *per_reader, void **ctx)
{
    cv_bench_t *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->n = cfg->readers;
    b->readers = calloc(b->n, sizeof *b->readers);
    if (!b->readers) {
        free(b);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < b->n; i++) {
        pthread_mutex_init(&b->readers[i].mu, NULL);
        pthread_cond_init(&b->readers[i].cv, NULL);
        b->readers[i].samples = &per_reader[i];
    }
    int err = 0;
    for (; b->started < b->n; b->started++) {
        err = -pthread_create(&b->readers[b->started].th, NULL, cv_reader_main,
                              &b->readers[b->started]);
        if (err < 0) {
            cv_stop(b);
            return err;
        }
    }
    *ctx = b;
    return 0;
}

static int cv_publish(void *ctx, const stamp_t *stamp)
{
    cv_bench_t *b = ctx;
    cv_version_t *v = malloc(sizeof *v);
    if (!v)
        return -ENOMEM;
    body_fill(&v->body, stamp);
    v->refs = b->n;
    for (unsigned i = 0; i < b->n; i++) {
        cv_reader_t *r = &b->readers[i];
        pthread_mutex_lock(&r->mu);
        cv_version_t *old = r->pending;
        r->pending = v;
        pthread_mutex_unlock(&r->mu);
        /* After unlocking, so the woken reader does not find the mutex still held. */
        pthread_cond_signal(&r->cv);
        cv_unref(old);
    }
    return 0;
}

const bench_system_t broadcast_condvar = {
    .name = "condvar",
    .start = cv_start,
    .publish = cv_publish,
    .stop = cv_stop,
};
