/*
 * Run queues: per-worker bounded rings with a "run next" slot, and a global
 * queue for overflow and for coroutines made ready outside the workers.
 *
 * Why locks and not a lock-free deque: every queue operation here is a few
 * pointer moves (so the lock is a spin lock, half the cost of a mutex), a worker touches mostly its
 * own queue, and a lock per queue is easy to prove correct (TSan checks it). The counts are also
 * kept in atomics so an idle worker can look for work without taking every lock.
 *
 * Why "run next": a coroutine woken by the running one (a channel partner) is
 * likely to run soon and to touch the same data; it runs next on this worker
 * instead of going to the back of the queue. A worker that is stuck loses it
 * too: thieves take "run next" when the ring is empty.
 */
#include "co/internal.h"

#include <stdlib.h>

void hk__spin_lock(int *lock)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
            if (++spins > 100) {
                sched_yield();
                spins = 0;
            }
        }
    }
}

void hk__spin_unlock(int *lock)
{
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

void hk__stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void hk__runq_init(hk__runq_t *q)
{
    q->lock = 0;
    q->next = NULL;
    q->head = q->tail = 0;
}

unsigned hk__runq_len(hk__runq_t *q)
{
    unsigned head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    unsigned tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
    return tail - head + (__atomic_load_n(&q->next, __ATOMIC_ACQUIRE) != NULL);
}

/* Pushes co; on a full ring, half of it goes to the global queue. Returns 1 then. */
int hk__runq_push(hk__runq_t *q, hk_co_t *co, int next, hk_co_t **overflow, unsigned *noverflow)
{
    *noverflow = 0;
    hk__spin_lock(&q->lock);
    if (next) {
        hk_co_t *old = q->next;
        __atomic_store_n(&q->next, co, __ATOMIC_RELEASE);
        co = old;
    }
    if (co) {
        if (q->tail - q->head < HK__RUNQ_SIZE) {
            q->ring[q->tail % HK__RUNQ_SIZE] = co;
            __atomic_store_n(&q->tail, q->tail + 1, __ATOMIC_RELEASE);
        } else {
            hk_co_t *first = co, *last = co;
            unsigned n = 1;
            for (unsigned i = 0; i < HK__RUNQ_SIZE / 2; i++) {
                hk_co_t *c = q->ring[q->head % HK__RUNQ_SIZE];
                __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE);
                last->qnext = c;
                last = c;
                n++;
            }
            last->qnext = NULL;
            *overflow = first;
            *noverflow = n;
        }
    }
    hk__spin_unlock(&q->lock);
    return *noverflow != 0;
}

hk_co_t *hk__runq_pop(hk__runq_t *q)
{
    if (hk__runq_len(q) == 0)
        return NULL;
    hk__spin_lock(&q->lock);
    hk_co_t *co = q->next;
    if (co) {
        __atomic_store_n(&q->next, NULL, __ATOMIC_RELEASE);
    } else if (q->head != q->tail) {
        co = q->ring[q->head % HK__RUNQ_SIZE];
        __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE);
    }
    hk__spin_unlock(&q->lock);
    return co;
}

hk_co_t *hk__runq_yield(hk__runq_t *q, hk_co_t *co)
{
    hk__spin_lock(&q->lock);
    if (q->tail - q->head >= HK__RUNQ_SIZE) {
        hk__spin_unlock(&q->lock);
        return NULL;
    }
    q->ring[q->tail % HK__RUNQ_SIZE] = co;
    __atomic_store_n(&q->tail, q->tail + 1, __ATOMIC_RELEASE);
    hk_co_t *next = q->next;
    if (next) {
        __atomic_store_n(&q->next, NULL, __ATOMIC_RELEASE);
    } else {
        next = q->ring[q->head % HK__RUNQ_SIZE];
        __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE);
    }
    hk__spin_unlock(&q->lock);
    return next;
}

unsigned hk__runq_steal(hk__runq_t *victim, hk__runq_t *q)
{
    hk_co_t *got[HK__RUNQ_SIZE / 2 + 1];
    unsigned n = 0;
    if (hk__runq_len(victim) == 0)
        return 0;
    hk__spin_lock(&victim->lock);
    unsigned avail = victim->tail - victim->head;
    unsigned take = avail - avail / 2;
    for (; n < take; n++) {
        got[n] = victim->ring[victim->head % HK__RUNQ_SIZE];
        __atomic_store_n(&victim->head, victim->head + 1, __ATOMIC_RELEASE);
    }
    if (n == 0 && victim->next) {
        got[n++] = victim->next;
        __atomic_store_n(&victim->next, NULL, __ATOMIC_RELEASE);
    }
    hk__spin_unlock(&victim->lock);
    if (n == 0)
        return 0;
    hk__spin_lock(&q->lock);
    for (unsigned i = 0; i < n; i++) {
        q->ring[q->tail % HK__RUNQ_SIZE] = got[i];
        __atomic_store_n(&q->tail, q->tail + 1, __ATOMIC_RELEASE);
    }
    hk__spin_unlock(&q->lock);
    return n;
}

void hk__global_push(hk_co_runtime_t *rt, hk_co_t **cos, unsigned n)
{
    /* cos is either an array of one, or a qnext chain of n. */
    hk_co_t *first = cos[0], *last = first;
    if (n == 1)
        first->qnext = NULL;
    while (last->qnext)
        last = last->qnext;
    pthread_mutex_lock(&rt->glock);
    if (rt->gtail)
        rt->gtail->qnext = first;
    else
        rt->ghead = first;
    rt->gtail = last;
    __atomic_store_n(&rt->glen, rt->glen + n, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&rt->glock);
}

hk_co_t *hk__global_pop(hk_co_runtime_t *rt)
{
    if (!__atomic_load_n(&rt->glen, __ATOMIC_ACQUIRE))
        return NULL;
    pthread_mutex_lock(&rt->glock);
    hk_co_t *co = rt->ghead;
    if (co) {
        rt->ghead = co->qnext;
        if (!rt->ghead)
            rt->gtail = NULL;
        co->qnext = NULL;
        __atomic_store_n(&rt->glen, rt->glen - 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&rt->glock);
    return co;
}

void hk__sched_fence(hk_co_runtime_t *rt)
{
    __atomic_fetch_add(&rt->fence, 1, __ATOMIC_SEQ_CST);
}

void hk__sched_wake_idle(hk_co_runtime_t *rt)
{
    hk__sched_fence(rt);
    if (__atomic_load_n(&rt->nsleep, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&rt->idle_lock);
        if (rt->wakeups < __atomic_load_n(&rt->nsleep, __ATOMIC_RELAXED)) {
            rt->wakeups++;
            pthread_cond_signal(&rt->idle_cond);
        }
        pthread_mutex_unlock(&rt->idle_lock);
        return;
    }
    if (__atomic_load_n(&rt->poll_blocking, __ATOMIC_SEQ_CST))
        hk__poll_interrupt(rt);
}

void hk__sched_ready(hk_co_runtime_t *rt, hk_co_t *co, int next)
{
    hk__worker_t *w = hk__worker_current();
    if (w && w->rt == rt) {
        hk_co_t *over;
        unsigned n;
        if (hk__runq_push(&w->q, co, next, &over, &n))
            hk__global_push(rt, &over, n);
    } else {
        hk__global_push(rt, &co, 1);
    }
    hk__sched_wake_idle(rt);
}
