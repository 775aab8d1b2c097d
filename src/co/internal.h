/* src/co/internal.h: private parts of the coroutine runtime. */
#ifndef HK_CO_INTERNAL_H
#define HK_CO_INTERNAL_H

#include "hark/co.h"
#include "hark/pool.h"
#include <pthread.h>
#include <stdint.h>
/* The assembly switch exists for x86-64 and aarch64; every other architecture uses ucontext. */
#if !defined(__x86_64__) && !defined(__aarch64__) && !defined(HK_CO_UCONTEXT)
#define HK_CO_UCONTEXT 1
#endif
#ifdef HK_CO_UCONTEXT
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define HK_CO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HK_CO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define HK_CO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HK_CO_TSAN 1
#endif
#endif

/* ---- spin locks (short critical sections, never held across a switch) ---- */

/* The contended path of hk__spin_lock (sched.c). */
void hk__spin_lock_slow(int *lock);

/* Inline: channel and wait operations take several of them; a call each showed up in profiles. */
static inline void hk__spin_lock(int *lock)
{
    if (__builtin_expect(!__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE), 1))
        return;
    hk__spin_lock_slow(lock);
}

static inline void hk__spin_unlock(int *lock)
{
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

/* ---- execution contexts (ctx.c, switch_*.S) ---- */

typedef struct hk__ctx {
#ifdef HK_CO_UCONTEXT
    ucontext_t uc;
#else
    void *sp;
#endif
    /*
     * What the sanitizers must be told, in their builds only: without them a
     * coroutine (which holds its context) fits in four cache lines, not five,
     * and a spawn touches that much less memory (bench/co_micro spawn).
     */
#ifdef HK_CO_ASAN
    const void *stack_lo;
    size_t stack_size;
    void *asan_fake;
#endif
#ifdef HK_CO_TSAN
    void *tsan_fiber;
    int tsan_own; /* the fiber was created by hk__ctx_make */
#endif
} hk__ctx_t;

/* The thread's own context (a worker's scheduler), with its stack bounds. */
void hk__ctx_init_thread(hk__ctx_t *ctx);
/* A new context that runs fn(arg) on [lo, lo + size); fn must never return. */
void hk__ctx_make(hk__ctx_t *ctx, void *lo, size_t size, void (*fn)(void *), void *arg);
void hk__ctx_release(hk__ctx_t *ctx);
/* Saves the current context in from and resumes to; exiting: from never resumes. */
void hk__ctx_switch(hk__ctx_t *from, hk__ctx_t *to, int exiting);
/* First thing a new context does (sanitizer bookkeeping). */
void hk__ctx_started(hk__ctx_t *self);
/*
 * In a signal handler given uctx: whether the interrupted code ran on the
 * stack [lo, lo + size) outside the middle of a switch, so that unwinding
 * from the handler walks that context's own frames. Stores the interrupted
 * pc in *pc. Async-signal-safe.
 */
int hk__ctx_interrupted(const void *uctx, const void *lo, size_t size, uintptr_t *pc);

/* ---- stacks (stack.c) ---- */

typedef struct hk__stack {
    char *map;     /* the mapping, guard page included */
    size_t total;  /* its length */
    char *lo;      /* lowest usable byte */
    size_t size;   /* usable bytes */
    unsigned vgid; /* Valgrind stack id */
    int guarded;
} hk__stack_t;

int hk__stack_get(hk__stack_t *st, size_t size, int guarded);
/*
 * Gives st back. at: where in it the pool may keep its note of the stack (a
 * 16-byte aligned spot with 48 bytes free above it, NULL for the top); the
 * spot a coroutine lived in is a cache line that is still warm.
 */
void hk__stack_put(hk__stack_t *st, void *at);
/* Installs the SIGSEGV handler (once) and an alternate signal stack for this thread. */
int hk__stack_thread_init(void **altp);
void hk__stack_thread_fini(void *alt);
size_t hk__page_size(void);

/* ---- coroutines ---- */

typedef struct hk__worker hk__worker_t;

/* A coroutine waiting somewhere; lives on the waiting coroutine's stack. */
typedef struct hk__waiter {
    struct hk__waiter *prev, *next;
    hk_co_t *co;
    uint64_t seq;
    void *elem;  /* channels: source or destination */
    int index;   /* select: case index */
    int status;  /* channels: 0 or -EPIPE */
    int linked;  /* still in its queue */
    int is_send; /* channels */
} hk__waiter_t;

void hk__waitq_push(struct hk__co_waitq *q, hk__waiter_t *w);
hk__waiter_t *hk__waitq_pop(struct hk__co_waitq *q);
void hk__waitq_remove(struct hk__co_waitq *q, hk__waiter_t *w);

struct hk_co {
    hk__ctx_t ctx;
    hk__stack_t stack;
    hk_co_runtime_t *rt;
    hk_co_fn fn;
    void *arg;
    void *result;
    hk_co_scope_t *scope;
    hk_co_t *snext, *sprev; /* scope membership (scope lock) */
    hk_co_t *qnext;         /* global queue link */
    uint64_t id;
    /*
     * Set when name holds the name (atomic, release after the bytes): at
     * spawn for a given name; the default "co-<id>" only when someone asks
     * hk_co_name (under jlock), because formatting it was a fifth of a spawn.
     * hk__co_name_into formats a copy and leaves it unset.
     */
    int named;
    char name[32];
    /* Wait state, under wlock (a leaf lock); in_wait is atomic: park clears it unlocked. */
    int wlock;
    uint64_t seq;
    int in_wait, woken, parked, wake_result, cancelled, nocancel;
    /* Join state, under jlock. */
    int jlock;
    int done;
    struct hk__co_waitq joiners;
    int refs; /* atomic */
};

/* What a coroutine asks its worker to do once it has switched away. */
enum { HK__POST_NONE, HK__POST_YIELD, HK__POST_PARK, HK__POST_EXIT };

hk__worker_t *hk__worker_current(void);
hk_co_t *hk__co_current(void);

/*
 * The wait protocol. begin: opens a wait (-ECANCELED when cancelled, unless
 * nocancel); park: sleeps until woken or the deadline passes and returns the
 * waker's result (or -ETIMEDOUT / -ECANCELED). A waker holding the lock of the
 * structure where it found the waiter calls claim (1: it won, wlock is held),
 * writes its payload, then commit (sets the result, unlocks, schedules).
 */
int hk__co_begin(hk_co_t *co, int nocancel);
int hk__co_park(hk_co_t *co, uint64_t deadline);
int hk__co_claim(hk_co_t *co, uint64_t seq);
void hk__co_commit(hk_co_t *co, int result);
int hk__co_wake(hk_co_t *co, uint64_t seq, int result);
int hk__deadline_ok(uint64_t deadline);

/* Called on the worker after a coroutine has switched away. */
void hk__co_after_switch(hk__worker_t *w, hk_co_t *co, int post);
/* A coroutine resumes: carries out the post of the one that switched to it (w->prev). */
void hk__co_resumed(void);
void hk__co_free(hk_co_t *co);
/* Copies co's name into out (its default "co-<id>" if it has none yet); async-signal-safe. */
void hk__co_name_into(const hk_co_t *co, char out[32]);
void hk__co_unref(hk_co_t *co);
/* A worker stops: its cached stacks go to the shared pool (stack.c). */
void hk__stack_cache_flush(hk__worker_t *w);

/* ---- scheduler (sched.c, queue.c, worker.c) ---- */

/* Single owner, lock-free (sched.c): the owner pushes; owner and thieves CAS the head. */
typedef struct hk__runq {
    hk_co_t *next;      /* atomic: run next */
    unsigned head;      /* atomic: consumers CAS it */
    unsigned tail;      /* atomic: written by the owner only */
    hk_co_t *ring[256]; /* atomic (relaxed) slots */
} hk__runq_t;

#define HK__RUNQ_SIZE 256u
/* Frames of a stall report's backtrace, as in the loop's stall detector. */
#define HK__BT_FRAMES 32

struct hk__worker {
    hk_co_runtime_t *rt;
    unsigned index;
    pthread_t thread;
    hk__ctx_t ctx;
    hk_co_t *current;
    /*
     * The coroutine that switched away last and what it asked for (HK__POST_*):
     * whichever context runs next on this thread (the scheduler, or a coroutine
     * switched to directly) carries it out by hk__co_resumed / the worker loop.
     */
    hk_co_t *prev;
    int post;
    hk__runq_t q;
    uint64_t tick;
    uint64_t tick_polled; /* when the fairness tick last polled the netpoller (own thread only) */
    uint64_t rng;
    void *altstack;
    /* Freed stacks kept by this worker (stack.c): no lock, only its own thread touches them. */
    void *stack_cache;
    unsigned nstack_cache;
    /* Read by the stall monitor (monitor.c). */
    uint64_t slices; /* atomic: switches into a coroutine (the switches counter) */
    int idled;       /* went idle since the last switch (own thread only) */
    /*
     * A backtrace of a stalled coroutine, asked for by the monitor and taken
     * by a signal handler on this thread (monitor.c). The monitor fills in
     * the request (bt_slice, bt_lo, bt_size), then bumps bt_req; the handler
     * fills in the answer (bt_pc, bt_nframes, bt_frames), then sets bt_done
     * to bt_req. The monitor asks again only once bt_done has caught up, so
     * neither side writes what the other may be reading.
     */
    unsigned bt_req;  /* atomic */
    unsigned bt_done; /* atomic */
    uint64_t bt_slice;
    const void *bt_lo;
    size_t bt_size;
    uintptr_t bt_pc; /* the interrupted pc: the first frame of the coroutine's own */
    int bt_nframes;
    void *bt_frames[HK__BT_FRAMES];
};

typedef struct hk__timer {
    uint64_t deadline;
    hk_co_t *co;
    uint64_t seq;
    unsigned index; /* in the heap; UINT32_MAX when out */
} hk__timer_t;

typedef struct hk__pd hk__pd_t;

/* Blocking work handed to the pool through the bridge loop thread. */
typedef struct hk__blocking {
    hk_work_t work;
    hk_co_fn fn;
    void *arg;
    void *result;
    int status;
    hk_co_t *co;
    uint64_t seq;
    struct hk__blocking *next;
} hk__blocking_t;

struct hk_co_runtime {
    hk_co_runtime_t *live_next; /* in the process's list of runtimes (runtime.c) */
    unsigned nworkers;
    size_t stack_size;
    hk__worker_t *workers;
    int stopping; /* atomic */
    /* Global queue. */
    pthread_mutex_t glock;
    hk_co_t *ghead, *gtail;
    unsigned glen; /* atomic reads */
    /* Idle workers. */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle_cond;
    int nsleep;  /* atomic */
    int fence;   /* hk__sched_fence */
    int wakeups; /* idle_lock */
    /* Netpoller. */
    int epfd, evfd;
    int poll_owner;      /* atomic: a worker holds the poller */
    int poll_blocking;   /* atomic: ... and blocks in epoll_wait */
    uint64_t poll_until; /* atomic: when the blocked poller wakes up */
    hk__pd_t **pd_dir;   /* two-level table, by fd */
    /* Timers. */
    pthread_mutex_t tlock;
    hk__timer_t **heap;
    unsigned nheap, capheap;
    uint64_t next_deadline; /* atomic */
    /* Roots and counters. */
    int runs; /* atomic: hk_co_run in progress */
    uint64_t next_id;
    hk_co_runtime_stats_t stats; /* atomic */
    /* Stall monitor (monitor.c). */
    uint64_t stall_ns; /* 0: off */
    hk_stall_cb stall_cb;
    void *stall_arg;
    int mon_started;
    pthread_t mon_thread;
    pthread_mutex_t mon_lock;
    pthread_cond_t mon_cond;
    int mon_stop;       /* mon_lock */
    int mon_sleeping;   /* atomic: the monitor waits for a worker to get busy */
    int mon_reading;    /* atomic: the monitor reads a running coroutine */
    int mon_fence;      /* read-modify-written to order the two above (monitor.c) */
    int mon_membarrier; /* set before the workers start: the monitor side fences for both */
    /* Blocking bridge. */
    pthread_t bthread;
    hk_loop_t *bloop;
    hk_async_t basync;
    pthread_mutex_t block;
    hk__blocking_t *bhead;
    int bstop;
    /* The resolver of hk_co_resolve (net.c), driven by the bridge loop. */
    struct hk__dnsop *dhead, *dtail;      /* block: lookups to start, oldest first */
    struct hk__dnsop *dcancel;            /* block: lookups to cancel */
    struct hk_resolver_options *dns_opts; /* block: hk_co_resolver_configure's copy */
    int dns_used;                         /* block: a lookup was queued (options are fixed) */
    struct hk_resolver *resolver;         /* the bridge thread only; created on first use */
};

/*
 * A full barrier between publishing work (or a sleep) and checking the other
 * side: an acquire-release RMW on one shared word orders both parties.
 */
void hk__sched_fence(hk_co_runtime_t *rt);
void hk__sched_ready(hk_co_runtime_t *rt, hk_co_t *co, int next);
void hk__sched_wake_idle(hk_co_runtime_t *rt);
void *hk__worker_main(void *arg);
void hk__runq_init(hk__runq_t *q);
int hk__runq_push(hk__runq_t *q, hk_co_t *co, int next, hk_co_t **overflow, unsigned *noverflow);
hk_co_t *hk__runq_pop(hk__runq_t *q);
/* The ring before "run next": the fairness tick's pop (sched.c). */
hk_co_t *hk__runq_pop_ring_first(hk__runq_t *q);
unsigned hk__runq_steal(hk__runq_t *victim, hk__runq_t *q);
unsigned hk__runq_len(hk__runq_t *q);
void hk__global_push(hk_co_runtime_t *rt, hk_co_t **cos, unsigned n);
/* The first of the global queue; with q (the caller's own queue), a batch more goes to q. */
hk_co_t *hk__global_pop(hk_co_runtime_t *rt, hk__runq_t *q);
void hk__stat_add(uint64_t *counter, uint64_t n);

/* ---- timers (timer.c) ---- */

int hk__timer_add(hk_co_runtime_t *rt, hk__timer_t *t);
void hk__timer_del(hk_co_runtime_t *rt, hk__timer_t *t);
/* Wakes the coroutines whose deadlines have passed; returns how many. */
unsigned hk__timer_run(hk_co_runtime_t *rt, uint64_t now);

/* ---- netpoller (poll.c) ---- */

int hk__poll_init(hk_co_runtime_t *rt);
void hk__poll_fini(hk_co_runtime_t *rt);
/* Polls once; blocks up to the next timer if block. Returns coroutines made ready. */
unsigned hk__poll_run(hk_co_runtime_t *rt, int block);
void hk__poll_interrupt(hk_co_runtime_t *rt);
int hk__pd_wait(hk_co_runtime_t *rt, int fd, unsigned events, uint64_t deadline, int fresh);
/* poll.c: a read may skip its system call after a short one (see there). */
int hk__pd_read_drained(hk_co_runtime_t *rt, int fd);
void hk__pd_read_done(hk_co_runtime_t *rt, int fd, int drained);

/* ---- stall monitor (monitor.c) ---- */

/* Before the workers start: choose how exits and the monitor's reads are ordered. */
void hk__monitor_prepare(hk_co_runtime_t *rt);
int hk__monitor_start(hk_co_runtime_t *rt);
void hk__monitor_stop(hk_co_runtime_t *rt);
/* A worker that was idle starts running coroutines: wake the monitor if it sleeps. */
void hk__monitor_busy(hk_co_runtime_t *rt);
/* The slow path of hk__monitor_exit: the fence without membarrier, and the wait. */
void hk__monitor_exit_wait(hk_co_runtime_t *rt);
/*
 * A coroutine exits: wait until the monitor no longer reads it. Inline: with
 * membarrier (monitor.c) this costs one load, which a call would double.
 */
static inline void hk__monitor_exit(hk_co_runtime_t *rt)
{
    if (!rt->stall_ns)
        return;
    if (rt->mon_membarrier) {
        __asm__ volatile("" ::: "memory"); /* the caller's store of `current` stays before */
        if (!__atomic_load_n(&rt->mon_reading, __ATOMIC_ACQUIRE))
            return;
    }
    hk__monitor_exit_wait(rt);
}
/* The signal that asks a worker for a backtrace (SIGRTMAX - 2); workers leave it unblocked. */
int hk__monitor_signal(void);

/* ---- blocking bridge (blocking.c) ---- */

int hk__blocking_init(hk_co_runtime_t *rt);

/* runtime.c: calls fn on every live runtime, under the list's lock (hk_co_close off a worker). */
void hk__runtime_each(void (*fn)(hk_co_runtime_t *rt, void *arg), void *arg);
void hk__blocking_fini(hk_co_runtime_t *rt);

/* ---- names on the bridge loop (net.c) ---- */

/* On the bridge thread: starts (or fails, when stopping), then cancels, queued lookups. */
void hk__dns_bridge_run(hk_co_runtime_t *rt, struct hk__dnsop *start, struct hk__dnsop *cancel,
                        int stop);
/* On the bridge thread, when it stops: frees the resolver. */
void hk__dns_bridge_stop(hk_co_runtime_t *rt);
/* When the runtime is freed: frees the resolver options. */
void hk__dns_bridge_fini(hk_co_runtime_t *rt);

/* ---- scopes (scope.c) ---- */

struct hk_co_scope {
    hk_co_runtime_t *rt;
    int lock;
    hk_co_t *head;
    unsigned count;
    int cancelled;
    int closing;
    hk_co_scope_t *parent;
    hk_co_scope_t *children, *sibling_next, *sibling_prev;
    struct hk__co_waitq waiters;
    void (*empty_cb)(void *arg); /* hk_co_run: called (under lock) when count drops to 0 */
    void *empty_arg;
};

int hk__scope_create(hk_co_runtime_t *rt, hk_co_scope_t *parent, hk_co_scope_t **scopep);
int hk__scope_add(hk_co_scope_t *scope, hk_co_t *co);
void hk__scope_remove(hk_co_scope_t *scope, hk_co_t *co);
int hk__scope_wait(hk_co_scope_t *scope, uint64_t deadline, int nocancel);
void hk__scope_destroy(hk_co_scope_t *scope);
void hk__co_cancel_locked(hk_co_t *co);

#endif
