/*
 * Workers: N threads, each running coroutines from its own queue, then from
 * the global queue, the netpoller and the other workers' queues (stealing
 * half), and parking when there is nothing at all.
 *
 * Why one poller and a condition variable: only one worker at a time blocks
 * in epoll_wait (with the nearest timer as its timeout); the others sleep on
 * a condition variable. New work wakes a sleeper, or, when none sleeps, the
 * poller through its eventfd. A worker that gives up the poller wakes a
 * sleeper so that someone is always watching fds and timers. Lost wake-ups
 * are excluded the usual way: a worker announces that it sleeps (nsleep,
 * poll_blocking) and then looks for work once more; a producer publishes
 * work and then reads the announcements; sequentially consistent fences on
 * both sides guarantee one of them sees the other.
 */
#include "co/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A busy worker's fairness tick polls the netpoller at most this often (see hk__find). */
#define HK__TICK_POLL_NS 50000u

static __thread hk__worker_t *hk__tls_worker __attribute__((tls_model("initial-exec")));

/*
 * Not inlined, with a compiler barrier: a coroutine may resume on another
 * thread, so the address of a thread-local must never be cached across a
 * switch.
 */
__attribute__((noinline)) hk__worker_t *hk__worker_current(void)
{
    __asm__ volatile("" ::: "memory");
    return hk__tls_worker;
}

__attribute__((noinline)) hk_co_t *hk__co_current(void)
{
    __asm__ volatile("" ::: "memory");
    hk__worker_t *w = hk__tls_worker;
    return w ? w->current : NULL;
}

static int hk__work_visible(hk_co_runtime_t *rt)
{
    if (__atomic_load_n(&rt->glen, __ATOMIC_ACQUIRE))
        return 1;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (hk__runq_len(&rt->workers[i].q))
            return 1;
    return 0;
}

static hk_co_t *hk__steal(hk__worker_t *w)
{
    hk_co_runtime_t *rt = w->rt;
    w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
    unsigned start = (unsigned)(w->rng >> 33);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        hk__worker_t *v = &rt->workers[(start + i) % rt->nworkers];
        if (v == w)
            continue;
        unsigned n = hk__runq_steal(&v->q, &w->q);
        if (n) {
            hk__stat_add(&rt->stats.steals, 1);
            hk__stat_add(&rt->stats.migrations, n);
            return hk__runq_pop(&w->q);
        }
    }
    return NULL;
}

static void hk__poll_release(hk_co_runtime_t *rt)
{
    __atomic_store_n(&rt->poll_owner, 0, __ATOMIC_SEQ_CST);
    hk__sched_fence(rt);
    if (__atomic_load_n(&rt->nsleep, __ATOMIC_SEQ_CST) > 0)
        hk__sched_wake_idle(rt);
}

static int hk__poll_try(hk_co_runtime_t *rt)
{
    int zero = 0;
    return __atomic_compare_exchange_n(&rt->poll_owner, &zero, 1, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static void hk__idle(hk__worker_t *w)
{
    hk_co_runtime_t *rt = w->rt;
    if (hk__poll_try(rt)) {
        __atomic_store_n(&rt->poll_blocking, 1, __ATOMIC_SEQ_CST);
        hk__sched_fence(rt);
        int block = !hk__work_visible(rt) && !__atomic_load_n(&rt->stopping, __ATOMIC_SEQ_CST);
        hk__poll_run(rt, block);
        __atomic_store_n(&rt->poll_blocking, 0, __ATOMIC_SEQ_CST);
        hk__poll_release(rt);
        return;
    }
    pthread_mutex_lock(&rt->idle_lock);
    __atomic_fetch_add(&rt->nsleep, 1, __ATOMIC_SEQ_CST);
    hk__sched_fence(rt);
    if (!hk__work_visible(rt) && !__atomic_load_n(&rt->stopping, __ATOMIC_SEQ_CST) &&
        __atomic_load_n(&rt->poll_owner, __ATOMIC_SEQ_CST)) {
        hk__stat_add(&rt->stats.parks, 1);
        while (rt->wakeups == 0 && !__atomic_load_n(&rt->stopping, __ATOMIC_SEQ_CST))
            pthread_cond_wait(&rt->idle_cond, &rt->idle_lock);
    }
    if (rt->wakeups > 0)
        rt->wakeups--;
    __atomic_fetch_sub(&rt->nsleep, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&rt->idle_lock);
}

static hk_co_t *hk__find(hk__worker_t *w)
{
    hk_co_runtime_t *rt = w->rt;
    hk_co_t *co;
    /*
     * The fairness tick, one in 61: the global queue, the netpoller and due
     * timers first, then the ring before "run next". The test comes before
     * the increment: hk__co_leave sends a coroutine here when its own
     * increment makes tick a multiple of 61, and incrementing first made
     * that arrival miss the tick every time; two coroutines that wake each
     * other (each into "run next") then kept a worker forever, and nothing
     * else queued on it, due on a timer or in the global queue ever ran.
     */
    if (w->tick++ % 61 == 0) {
        if ((co = hk__global_pop(rt, &w->q)))
            return co;
        /*
         * The netpoller at most once per HK__TICK_POLL_NS, not at every tick:
         * a non-blocking epoll_wait costs a few hundred ns, which spread over
         * 61 switches added about a third to a yield (12 -> 16 ns). Go's
         * sysmon polls a starved netpoller every 10 ms; this is coarser than
         * a tick and far finer than that.
         */
        uint64_t now = hk_time_now();
        if (now - w->tick_polled >= HK__TICK_POLL_NS && hk__poll_try(rt)) {
            w->tick_polled = now;
            hk__poll_run(rt, 0);
            hk__poll_release(rt);
        }
        uint64_t due = __atomic_load_n(&rt->next_deadline, __ATOMIC_ACQUIRE);
        if (due != HK_FOREVER && due <= now)
            hk__timer_run(rt, now);
        if ((co = hk__runq_pop_ring_first(&w->q)))
            return co;
    }
    if ((co = hk__runq_pop(&w->q)))
        return co;
    uint64_t next = __atomic_load_n(&rt->next_deadline, __ATOMIC_ACQUIRE);
    if (next != HK_FOREVER && next <= hk_time_now()) {
        hk__timer_run(rt, hk_time_now());
        if ((co = hk__runq_pop(&w->q)))
            return co;
    }
    if ((co = hk__global_pop(rt, &w->q)))
        return co;
    if (hk__poll_try(rt)) {
        hk__poll_run(rt, 0);
        hk__poll_release(rt);
        if ((co = hk__runq_pop(&w->q)))
            return co;
    }
    if ((co = hk__steal(w)))
        return co;
    w->idled = 1;
    hk__idle(w);
    return NULL;
}

static void hk__worker_signals(const hk_co_runtime_t *rt)
{
    sigset_t set;
    sigfillset(&set);
    int keep[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        sigdelset(&set, keep[i]);
    /* The stall monitor interrupts a worker for the backtrace of a stalled coroutine. */
    if (rt->stall_ns)
        sigdelset(&set, hk__monitor_signal());
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void *hk__worker_main(void *arg)
{
    hk__worker_t *w = arg;
    hk_co_runtime_t *rt = w->rt;
    hk__tls_worker = w;
    hk__worker_signals(rt);
    hk__ctx_init_thread(&w->ctx);
    hk__stack_thread_init(&w->altstack);
    /*
     * A new worker has run nothing yet: like one that went idle, its first
     * switch must wake the stall monitor, which may have gone to sleep
     * before this thread got a CPU (then the work it finds first would go
     * unwatched).
     */
    w->idled = 1;
    hk_co_t *co = NULL;
    while (!__atomic_load_n(&rt->stopping, __ATOMIC_ACQUIRE)) {
        if (!co && !(co = hk__find(w)))
            continue;
        /* The counter first: a monitor that sees the new current sees the new slice. */
        __atomic_store_n(&w->slices, w->slices + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&w->current, co, __ATOMIC_RELEASE);
        /*
         * The relaxed load also catches a monitor that fell asleep while this
         * worker sat between two coroutines without going idle (the OS had
         * descheduled it there): a plain read of a word written only when
         * the monitor sleeps or wakes.
         */
        if (w->idled || __atomic_load_n(&rt->mon_sleeping, __ATOMIC_RELAXED)) {
            w->idled = 0;
            hk__monitor_busy(rt);
        }
        w->prev = NULL;
        hk__ctx_switch(&w->ctx, &co->ctx, 0);
        __atomic_store_n(&w->current, NULL, __ATOMIC_RELEASE);
        /*
         * Coroutines switch to each other directly (co.c, hk__co_leave) while
         * the local queue has work: the one that came back here is w->prev,
         * not necessarily co. A yield lands here with an empty queue or on
         * every 61st tick, and hk__find (fairness: global queue, netpoller,
         * timers) runs next.
         */
        hk_co_t *prev = w->prev;
        w->prev = NULL;
        if (prev)
            hk__co_after_switch(w, prev, w->post);
        co = NULL;
    }
    hk__tls_worker = NULL;
    hk__stack_cache_flush(w);
    hk__stack_thread_fini(w->altstack);
    return NULL;
}
