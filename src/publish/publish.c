/*
 * The writer side: swap, then reclaim after a grace period.
 *
 * A setter swaps the current record with one atomic exchange (readers never
 * wait) and hands the old one to call_rcu, whose helper thread frees it after
 * a grace period, in batches, about every 10 ms. The helper sleeps between
 * batches, so a writer publishing in a tight loop could queue versions far
 * faster than they are freed; past HK_PUBLISH_MAX_PENDING queued versions of
 * an object, the setter waits for a grace period itself and frees the old
 * version on the spot. A setter inside a callback of an attached loop must
 * not do that (the version it replaces may be the one it is still using, and
 * a loop thread must not block), so it gets -EAGAIN instead.
 *
 * The object itself is freed with its last retired version: each retired
 * version holds a reference, so free_fn and arg outlive hk_publish_free.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "publish/internal.h"

int hk_publish_new(hk_publish_t **pubp, hk_publish_free_fn free_fn, void *arg)
{
    if (!pubp)
        return -EINVAL;
    hk_publish_t *pub = calloc(1, sizeof *pub);
    if (!pub)
        return -ENOMEM;
    int r = pthread_mutex_init(&pub->lock, NULL);
    if (r != 0) {
        free(pub);
        return -r;
    }
    pub->free_fn = free_fn;
    pub->arg = arg;
    pub->refs = 1;
    *pubp = pub;
    return 0;
}

static void hk__publish_unref(hk_publish_t *pub)
{
    if (__atomic_sub_fetch(&pub->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    pthread_mutex_destroy(&pub->lock);
    free(pub);
}

/* queued: v went through call_rcu and counts in pub->pending until freed. */
static void hk__version_free(struct hk__version *v, bool queued)
{
    hk_publish_t *pub = v->pub;
    if (v->version && pub->free_fn)
        pub->free_fn(v->version, pub->arg);
    free(v);
    if (queued)
        __atomic_sub_fetch(&pub->pending, 1, __ATOMIC_RELEASE);
    hk__publish_unref(pub);
}

/* On call_rcu's helper thread, a grace period after hk__version_retire. */
static void hk__version_reclaim(struct rcu_head *head)
{
    struct hk__version *v =
        (struct hk__version *)((char *)head - offsetof(struct hk__version, rcu));
    hk__tsan_acquire(v);
    hk__tsan_acquire(hk__publish_gp_token());
    hk__version_free(v, true);
}

/* Frees v after a grace period: queued on call_rcu, or here after waiting (wait). */
static void hk__version_retire(struct hk__version *v, bool wait)
{
    if (wait) {
        synchronize_rcu();
        hk__tsan_acquire(hk__publish_gp_token());
        hk__version_free(v, false);
        return;
    }
    __atomic_add_fetch(&v->pub->pending, 1, __ATOMIC_RELAXED);
    hk__tsan_release(v);
    hk__publish_call_rcu(&v->rcu, hk__version_reclaim);
}

int hk_publish_set(hk_publish_t *pub, void *version)
{
    if (!pub)
        return -EINVAL;
    bool wait = __atomic_load_n(&pub->pending, __ATOMIC_ACQUIRE) >= HK_PUBLISH_MAX_PENDING;
    if (wait && hk__publish_online())
        return -EAGAIN;
    struct hk__version *v = malloc(sizeof *v);
    if (!v)
        return -ENOMEM;
    v->version = version;
    v->pub = pub;
    v->seq = __atomic_add_fetch(&pub->seq, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&pub->refs, 1, __ATOMIC_RELAXED);
    struct hk__version *old = __atomic_exchange_n(&pub->current, v, __ATOMIC_ACQ_REL);
    hk__publish_notify(pub);
    if (old)
        hk__version_retire(old, wait);
    return 0;
}

void *hk_publish_get(hk_publish_t *pub)
{
    assert(((void)"hk: hk_publish_get outside a callback of an attached loop", rcu_read_ongoing()));
    struct hk__version *v = __atomic_load_n(&pub->current, __ATOMIC_ACQUIRE);
    return v ? v->version : NULL;
}

uint64_t hk_publish_count(const hk_publish_t *pub)
{
    return __atomic_load_n(&pub->seq, __ATOMIC_RELAXED);
}

int hk_publish_free(hk_publish_t *pub)
{
    if (!pub)
        return -EINVAL;
    pthread_mutex_lock(&pub->lock);
    bool busy = pub->subs != NULL;
    pthread_mutex_unlock(&pub->lock);
    if (busy)
        return -EBUSY;
    struct hk__version *old = __atomic_exchange_n(&pub->current, NULL, __ATOMIC_ACQ_REL);
    if (old) {
        bool wait = __atomic_load_n(&pub->pending, __ATOMIC_ACQUIRE) >= HK_PUBLISH_MAX_PENDING;
        hk__version_retire(old, wait && !hk__publish_online());
    }
    hk__publish_unref(pub);
    return 0;
}

int hk_publish_barrier(void)
{
    /* Going offline inside a callback would end the protection of what it read. */
    if (hk__publish_online())
        return -EDEADLK;
    rcu_barrier();
    return 0;
}
