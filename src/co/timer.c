/*
 * Deadlines of parked coroutines: one binary min-heap per runtime.
 *
 * Why one heap under a mutex: any worker may add or remove a deadline, and
 * whichever worker polls needs the earliest one as its epoll timeout. Entries
 * live on the waiting coroutine's stack; an entry is woken while the heap
 * lock is held, so its coroutine cannot return (and pop its stack frame)
 * between being found and being woken. The earliest deadline is mirrored in
 * an atomic so busy workers check for due timers without the lock.
 */
#include "co/internal.h"

#include <errno.h>
#include <stdlib.h>

static void hk__heap_set(hk_co_runtime_t *rt, unsigned i, hk__timer_t *t)
{
    rt->heap[i] = t;
    t->index = i;
}

static void hk__heap_up(hk_co_runtime_t *rt, unsigned i)
{
    hk__timer_t *t = rt->heap[i];
    while (i > 0) {
        unsigned p = (i - 1) / 2;
        if (rt->heap[p]->deadline <= t->deadline)
            break;
        hk__heap_set(rt, i, rt->heap[p]);
        i = p;
    }
    hk__heap_set(rt, i, t);
}

static void hk__heap_down(hk_co_runtime_t *rt, unsigned i)
{
    hk__timer_t *t = rt->heap[i];
    for (;;) {
        unsigned c = 2 * i + 1;
        if (c >= rt->nheap)
            break;
        if (c + 1 < rt->nheap && rt->heap[c + 1]->deadline < rt->heap[c]->deadline)
            c++;
        if (t->deadline <= rt->heap[c]->deadline)
            break;
        hk__heap_set(rt, i, rt->heap[c]);
        i = c;
    }
    hk__heap_set(rt, i, t);
}

static void hk__heap_remove(hk_co_runtime_t *rt, hk__timer_t *t)
{
    unsigned i = t->index;
    t->index = UINT32_MAX;
    hk__timer_t *last = rt->heap[--rt->nheap];
    if (i < rt->nheap) {
        hk__heap_set(rt, i, last);
        hk__heap_up(rt, i);
        hk__heap_down(rt, last->index);
    }
}

static void hk__heap_publish(hk_co_runtime_t *rt)
{
    uint64_t next = rt->nheap ? rt->heap[0]->deadline : HK_FOREVER;
    /* Sequentially consistent: paired with hk__poll_run's announcement (poll.c). */
    __atomic_store_n(&rt->next_deadline, next, __ATOMIC_SEQ_CST);
}

int hk__timer_add(hk_co_runtime_t *rt, hk__timer_t *t)
{
    pthread_mutex_lock(&rt->tlock);
    if (rt->nheap == rt->capheap) {
        unsigned cap = rt->capheap ? rt->capheap * 2 : 64;
        hk__timer_t **h = realloc(rt->heap, cap * sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&rt->tlock);
            return -ENOMEM;
        }
        rt->heap = h;
        rt->capheap = cap;
    }
    rt->heap[rt->nheap] = t;
    t->index = rt->nheap++;
    hk__heap_up(rt, t->index);
    int first = t->index == 0;
    hk__heap_publish(rt);
    pthread_mutex_unlock(&rt->tlock);
    /* A poller asleep until later must recompute its timeout. */
    if (first && __atomic_load_n(&rt->poll_blocking, __ATOMIC_SEQ_CST) &&
        t->deadline < __atomic_load_n(&rt->poll_until, __ATOMIC_SEQ_CST))
        hk__poll_interrupt(rt);
    return 0;
}

void hk__timer_del(hk_co_runtime_t *rt, hk__timer_t *t)
{
    pthread_mutex_lock(&rt->tlock);
    if (t->index != UINT32_MAX) {
        hk__heap_remove(rt, t);
        hk__heap_publish(rt);
    }
    pthread_mutex_unlock(&rt->tlock);
}

unsigned hk__timer_run(hk_co_runtime_t *rt, uint64_t now)
{
    unsigned n = 0;
    pthread_mutex_lock(&rt->tlock);
    while (rt->nheap && rt->heap[0]->deadline <= now) {
        hk__timer_t *t = rt->heap[0];
        hk__heap_remove(rt, t);
        n += (unsigned)hk__co_wake(t->co, t->seq, -ETIMEDOUT);
    }
    hk__heap_publish(rt);
    pthread_mutex_unlock(&rt->tlock);
    return n;
}
