/*
 * Run queues: per-worker bounded rings with a "run next" slot, and a global
 * queue for overflow and for coroutines made ready outside the workers.
 *
 * Why single-owner rings without a lock (Go's runq): only the owning worker
 * pushes (at the tail) and it pops at the head; thieves take half from the
 * head too. So the tail has one writer (plain store-release after the slot),
 * and every consumer, owner or thief, claims slots by a CAS on the head. A
 * consumer reads the slots before its CAS; a slot it read may have been
 * reused meanwhile, but then the head has moved and its CAS fails. Slots are
 * accessed with relaxed atomics (a stale read is harmless, but must not be a
 * data race); the release store of the tail / acquire load by a consumer is
 * what makes a pushed coroutine's saved context visible to a thief. A push,
 * the common operation, is then two plain stores and a pop one CAS, where a
 * spin lock cost an exchange and a store for each.
 *
 * Why "run next": a coroutine woken by the running one (a channel partner) is
 * likely to run soon and to touch the same data; it runs next on this worker
 * instead of going to the back of the queue. A worker that is stuck loses it
 * too: thieves take "run next" (an atomic exchange) when the ring is empty.
 */
#include "co/internal.h"

#include <stdlib.h>

void hk__spin_lock_slow(int *lock)
{
    unsigned spins = 0;
    do {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
            if (++spins > 100) {
                sched_yield();
                spins = 0;
            }
        }
    } while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE));
}

void hk__stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void hk__runq_init(hk__runq_t *q)
{
    q->next = NULL;
    q->head = q->tail = 0;
}

unsigned hk__runq_len(hk__runq_t *q)
{
    unsigned head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    unsigned tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
    unsigned n = tail - head;
    if (n > HK__RUNQ_SIZE) /* head moved on after we read it: racing, not empty */
        n = HK__RUNQ_SIZE;
    return n + (__atomic_load_n(&q->next, __ATOMIC_ACQUIRE) != NULL);
}

/* Owner only: pushes co; on a full ring, half of it goes to *overflow (a qnext chain). */
int hk__runq_push(hk__runq_t *q, hk_co_t *co, int next, hk_co_t **overflow, unsigned *noverflow)
{
    *noverflow = 0;
    if (next) {
        /* acq_rel: publishes co to a thief's exchange, and takes back the kicked one. */
        co = __atomic_exchange_n(&q->next, co, __ATOMIC_ACQ_REL);
        if (!co)
            return 0;
    }
    unsigned tail = __atomic_load_n(&q->tail, __ATOMIC_RELAXED); /* our own writes */
    for (;;) {
        unsigned head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
        if (tail - head < HK__RUNQ_SIZE) {
            __atomic_store_n(&q->ring[tail % HK__RUNQ_SIZE], co, __ATOMIC_RELAXED);
            __atomic_store_n(&q->tail, tail + 1, __ATOMIC_RELEASE);
            return 0;
        }
        /* Full: claim the older half like a thief would, then chain it with co. */
        hk_co_t *batch[HK__RUNQ_SIZE / 2];
        for (unsigned i = 0; i < HK__RUNQ_SIZE / 2; i++)
            batch[i] = __atomic_load_n(&q->ring[(head + i) % HK__RUNQ_SIZE], __ATOMIC_RELAXED);
        if (!__atomic_compare_exchange_n(&q->head, &head, head + HK__RUNQ_SIZE / 2, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue; /* a thief took some: there may be room now */
        for (unsigned i = 0; i + 1 < HK__RUNQ_SIZE / 2; i++)
            batch[i]->qnext = batch[i + 1];
        batch[HK__RUNQ_SIZE / 2 - 1]->qnext = co;
        co->qnext = NULL;
        *overflow = batch[0];
        *noverflow = HK__RUNQ_SIZE / 2 + 1;
        return 1;
    }
}

/* Owner only: the head of the ring. */
static hk_co_t *hk__runq_pop_ring(hk__runq_t *q)
{
    unsigned head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
    for (;;) {
        if (head == __atomic_load_n(&q->tail, __ATOMIC_RELAXED))
            return NULL;
        hk_co_t *co = __atomic_load_n(&q->ring[head % HK__RUNQ_SIZE], __ATOMIC_RELAXED);
        /* On failure head is reloaded (acquire): a thief took it, try the next one. */
        if (__atomic_compare_exchange_n(&q->head, &head, head + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return co;
    }
}

/* Owner only: "run next" first, then the head of the ring. */
hk_co_t *hk__runq_pop(hk__runq_t *q)
{
    hk_co_t *co = __atomic_load_n(&q->next, __ATOMIC_RELAXED);
    if (co && (co = __atomic_exchange_n(&q->next, NULL, __ATOMIC_ACQUIRE)))
        return co;
    return hk__runq_pop_ring(q);
}

/*
 * Owner only: the head of the ring first, then "run next". Why: two
 * coroutines that wake each other (a channel ping-pong) refill "run next"
 * at every switch, so a pop that always prefers it never reaches the ring;
 * the worker's fairness tick (worker.c) takes this one instead.
 */
hk_co_t *hk__runq_pop_ring_first(hk__runq_t *q)
{
    hk_co_t *co = hk__runq_pop_ring(q);
    if (co)
        return co;
    if (__atomic_load_n(&q->next, __ATOMIC_RELAXED))
        co = __atomic_exchange_n(&q->next, NULL, __ATOMIC_ACQUIRE);
    return co;
}

/* Run by the owner of q, whose ring is empty: moves half of victim's ring (or its run next). */
unsigned hk__runq_steal(hk__runq_t *victim, hk__runq_t *q)
{
    unsigned mytail = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
    for (;;) {
        unsigned head = __atomic_load_n(&victim->head, __ATOMIC_ACQUIRE);
        unsigned tail = __atomic_load_n(&victim->tail, __ATOMIC_ACQUIRE);
        unsigned n = tail - head;
        n -= n / 2;
        if (n == 0) {
            if (!__atomic_load_n(&victim->next, __ATOMIC_RELAXED))
                return 0;
            hk_co_t *co = __atomic_exchange_n(&victim->next, NULL, __ATOMIC_ACQ_REL);
            if (!co)
                return 0;
            __atomic_store_n(&q->ring[mytail % HK__RUNQ_SIZE], co, __ATOMIC_RELAXED);
            __atomic_store_n(&q->tail, mytail + 1, __ATOMIC_RELEASE);
            return 1;
        }
        if (n > HK__RUNQ_SIZE / 2)
            continue; /* head and tail read at different times: inconsistent */
        for (unsigned i = 0; i < n; i++) {
            hk_co_t *co =
                __atomic_load_n(&victim->ring[(head + i) % HK__RUNQ_SIZE], __ATOMIC_RELAXED);
            __atomic_store_n(&q->ring[(mytail + i) % HK__RUNQ_SIZE], co, __ATOMIC_RELAXED);
        }
        if (__atomic_compare_exchange_n(&victim->head, &head, head + n, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            __atomic_store_n(&q->tail, mytail + n, __ATOMIC_RELEASE);
            return n;
        }
    }
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

/*
 * Takes the first coroutine of the global queue and, when q (the caller's own
 * queue) is given, a fair share more into q (as Go does): one lock for a batch
 * instead of one per coroutine, which matters when a spawner overflows its ring.
 */
hk_co_t *hk__global_pop(hk_co_runtime_t *rt, hk__runq_t *q)
{
    if (!__atomic_load_n(&rt->glen, __ATOMIC_ACQUIRE))
        return NULL;
    pthread_mutex_lock(&rt->glock);
    hk_co_t *co = rt->ghead;
    if (co) {
        unsigned n = 1;
        if (q) {
            unsigned want = rt->glen / rt->nworkers + 1;
            unsigned used = __atomic_load_n(&q->tail, __ATOMIC_RELAXED) -
                            __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
            unsigned room = used < HK__RUNQ_SIZE ? HK__RUNQ_SIZE - used : 0;
            if (want > HK__RUNQ_SIZE / 2)
                want = HK__RUNQ_SIZE / 2;
            if (want > room + 1)
                want = room + 1;
            unsigned tail = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
            hk_co_t *c = co->qnext;
            for (; n < want && c; n++, c = c->qnext) {
                __atomic_store_n(&q->ring[tail % HK__RUNQ_SIZE], c, __ATOMIC_RELAXED);
                tail++;
            }
            rt->ghead = c;
            __atomic_store_n(&q->tail, tail, __ATOMIC_RELEASE);
        } else {
            rt->ghead = co->qnext;
        }
        if (!rt->ghead)
            rt->gtail = NULL;
        co->qnext = NULL;
        __atomic_store_n(&rt->glen, rt->glen - n, __ATOMIC_RELEASE);
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
        /*
         * Signalled after the unlock: a sleeper woken while the lock is still
         * held wakes only to block on the lock (glibc does not move it from
         * the condition to the mutex), which cost two more futex calls and a
         * context switch per wake-up (strace of bench/co_echo). It cannot miss
         * the signal: it reads wakeups under the lock before it waits.
         */
        int signal = 0;
        pthread_mutex_lock(&rt->idle_lock);
        if (rt->wakeups < __atomic_load_n(&rt->nsleep, __ATOMIC_RELAXED)) {
            rt->wakeups++;
            signal = 1;
        }
        pthread_mutex_unlock(&rt->idle_lock);
        if (signal)
            pthread_cond_signal(&rt->idle_cond);
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
        /*
         * The only worker is this one and it is running: nobody sleeps on
         * idle_cond nor blocks in the poller (only workers do, in hk__idle),
         * so there is nobody to wake and the fence can be skipped.
         */
        if (rt->nworkers == 1)
            return;
    } else {
        hk__global_push(rt, &co, 1);
    }
    hk__sched_wake_idle(rt);
}
