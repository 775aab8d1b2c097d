/*
 * Coroutines: spawn, exit, join, and the wait protocol every blocking call
 * uses.
 *
 * Why the protocol looks like this: a parked coroutine can be woken by
 * several parties at once (the event it waits for, its deadline, a scope
 * cancellation, another channel of a select), possibly before it has even
 * finished switching away. Each wait gets a sequence number; a waker must
 * "claim" the coroutine's (seq, not yet woken) state under the coroutine's
 * wait lock, and exactly one claim succeeds. The coroutine holds the same
 * lock from its last check until its context is saved (whichever context
 * runs next on the worker releases it after the switch), so a waker that
 * finds it parked can schedule it without ever running it on two threads; a
 * waker that comes earlier just marks it woken and the coroutine does not
 * park at all.
 */
#include "co/internal.h"

/* Stack colours (see hk_co_spawn): a coroutine's top is offset by id % this cache lines. */
#define HK__CO_COLOURS 16u

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hk__deadline_ok(uint64_t deadline)
{
    return deadline == HK_FOREVER || deadline < HK_DEADLINE_MAX;
}

int hk__co_begin(hk_co_t *co, int nocancel)
{
    hk__spin_lock(&co->wlock);
    if (!nocancel && co->cancelled) {
        hk__spin_unlock(&co->wlock);
        return -ECANCELED;
    }
    co->seq++;
    __atomic_store_n(&co->in_wait, 1, __ATOMIC_RELAXED);
    co->woken = 0;
    co->parked = 0;
    co->nocancel = nocancel;
    co->wake_result = 0;
    hk__spin_unlock(&co->wlock);
    return 0;
}

int hk__co_claim(hk_co_t *co, uint64_t seq)
{
    hk__spin_lock(&co->wlock);
    if (__atomic_load_n(&co->in_wait, __ATOMIC_RELAXED) && co->seq == seq && !co->woken)
        return 1;
    hk__spin_unlock(&co->wlock);
    return 0;
}

void hk__co_commit(hk_co_t *co, int result)
{
    hk_co_runtime_t *rt = co->rt;
    co->woken = 1;
    co->wake_result = result;
    int parked = co->parked;
    co->parked = 0;
    hk__spin_unlock(&co->wlock);
    if (parked)
        hk__sched_ready(rt, co, 1);
}

int hk__co_wake(hk_co_t *co, uint64_t seq, int result)
{
    if (!hk__co_claim(co, seq))
        return 0;
    hk__co_commit(co, result);
    return 1;
}

void hk__co_resumed(void)
{
    hk__worker_t *w = hk__worker_current();
    hk_co_t *prev = w->prev;
    if (prev) {
        w->prev = NULL;
        hk__co_after_switch(w, prev, w->post);
    }
}

/*
 * co, running on w, switches away asking for post. Why directly to the next
 * local coroutine when there is one: going through the worker's scheduler
 * context costs a second switch per yield, park or exit. The post (queueing
 * a yielder, unlocking a parker's wlock, freeing an exited coroutine) must
 * still wait until co's context is saved, so it travels in w->prev / w->post
 * and the context that runs next carries it out (hk__co_resumed or the
 * worker loop). Every 61st tick, and when stopping, the scheduler runs
 * instead, for the global queue, the netpoller and the timers.
 */
static void hk__co_leave(hk__worker_t *w, hk_co_t *co, int post)
{
    int exiting = post == HK__POST_EXIT;
    hk__ctx_t *to = &w->ctx;
    if (++w->tick % 61 != 0 && !__atomic_load_n(&w->rt->stopping, __ATOMIC_RELAXED)) {
        hk_co_t *next = hk__runq_pop(&w->q);
        if (next) {
            /* As in the worker loop: the counter first, for the stall monitor. */
            __atomic_store_n(&w->slices, w->slices + 1, __ATOMIC_RELAXED);
            __atomic_store_n(&w->current, next, __ATOMIC_RELEASE);
            to = &next->ctx;
        }
    }
    w->prev = co;
    w->post = post;
    hk__ctx_switch(&co->ctx, to, exiting);
    if (!exiting)
        hk__co_resumed();
}

int hk__co_park(hk_co_t *co, uint64_t deadline)
{
    hk__timer_t t = {.deadline = deadline, .co = co, .seq = co->seq, .index = UINT32_MAX};
    int timed = 0;
    if (deadline != HK_FOREVER) {
        if (deadline <= hk_time_now())
            hk__co_wake(co, co->seq, -ETIMEDOUT);
        else if (hk__timer_add(co->rt, &t) == 0)
            timed = 1;
        else /* no memory for the deadline: fail now rather than wait without one */
            hk__co_wake(co, co->seq, -ENOMEM);
    }
    int r;
    hk__spin_lock(&co->wlock);
    if (!co->woken) {
        co->parked = 1;
        hk__co_leave(hk__worker_current(), co, HK__POST_PARK); /* the next context unlocks wlock */
        /*
         * Why no lock here: the waker that scheduled us set woken and
         * wake_result under wlock before queueing us (the queue's release /
         * acquire orders them before this read), and while woken stays set no
         * claim succeeds, so nobody writes them any more. Claims still read
         * in_wait under the lock, hence the atomic store.
         */
        r = co->wake_result;
        __atomic_store_n(&co->in_wait, 0, __ATOMIC_RELAXED);
    } else {
        r = co->wake_result;
        __atomic_store_n(&co->in_wait, 0, __ATOMIC_RELAXED);
        hk__spin_unlock(&co->wlock);
    }
    if (timed)
        hk__timer_del(co->rt, &t);
    return r;
}

void hk__co_cancel_locked(hk_co_t *co)
{
    hk__spin_lock(&co->wlock);
    __atomic_store_n(&co->cancelled, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&co->in_wait, __ATOMIC_RELAXED) && !co->woken && !co->nocancel)
        hk__co_commit(co, -ECANCELED);
    else
        hk__spin_unlock(&co->wlock);
}

void hk_co_cancel(hk_co_t *co)
{
    hk__co_cancel_locked(co);
}

/* hk__stack_put keeps its 48-byte note of a freed stack where the coroutine was. */
_Static_assert(sizeof(hk_co_t) >= 48, "a coroutine leaves room for the stack pool's note");

void hk__co_free(hk_co_t *co)
{
    hk__stack_t st = co->stack; /* co lives on it, and hk__stack_put writes there */
    hk__stack_put(&st, co);
}

void hk__co_unref(hk_co_t *co)
{
    if (__atomic_sub_fetch(&co->refs, 1, __ATOMIC_ACQ_REL) == 0)
        hk__co_free(co);
}

static void hk__co_entry(void *arg)
{
    hk_co_t *co = arg;
    hk__ctx_started(&co->ctx);
    hk__co_resumed();
    co->result = co->fn(co->arg);
    hk__co_leave(hk__worker_current(), co, HK__POST_EXIT);
    __builtin_unreachable();
}

void hk__co_after_switch(hk__worker_t *w, hk_co_t *co, int post)
{
    if (post == HK__POST_PARK) {
        hk__spin_unlock(&co->wlock);
    } else if (post == HK__POST_YIELD) {
        hk_co_t *over;
        unsigned n;
        if (hk__runq_push(&w->q, co, 0, &over, &n))
            hk__global_push(w->rt, &over, n);
    } else if (post == HK__POST_EXIT) {
        hk__monitor_exit(w->rt); /* it may be reading co's name */
        hk__ctx_release(&co->ctx);
        /*
         * No handle left (refs 1: ours): nobody can join, or touch co at all
         * except through the scope, so skip the join lock and the atomic
         * decrement. The acquire pairs with the acq_rel decrement of the last
         * handle holder (join or detach), which is then done with co.
         */
        if (__atomic_load_n(&co->refs, __ATOMIC_ACQUIRE) == 1) {
            hk__scope_remove(co->scope, co);
            hk__co_free(co);
            return;
        }
        hk__spin_lock(&co->jlock);
        co->done = 1;
        hk__waiter_t *jw;
        while ((jw = hk__waitq_pop(&co->joiners)))
            hk__co_wake(jw->co, jw->seq, 0);
        hk__spin_unlock(&co->jlock);
        hk__scope_remove(co->scope, co);
        hk__co_unref(co);
    }
}

/*
 * Zeroes the new coroutine. Why not memset: for a struct this size GCC emits
 * rep stosq, whose start-up cost was a quarter of hk_co_spawn's own samples
 * under perf (bench/co_micro spawn on the EPYC here); unrolled 16-byte stores
 * take a few cycles. It may clear up to 15 bytes past the struct: co is
 * 64-byte aligned with its own size below a 64-byte aligned end of its stack
 * (hk_co_spawn), so they are still the stack's top.
 */
static inline void hk__co_zero(hk_co_t *co)
{
    typedef long long hk__v16 __attribute__((vector_size(16), may_alias));
    hk__v16 *p = (hk__v16 *)(void *)co;
#pragma GCC unroll 32
    for (size_t i = 0; i < (sizeof *co + 15) / 16; i++)
        p[i] = (hk__v16){0};
}

/* "co-<id>" without snprintf, which cost a fifth of a spawn. */
static void hk__co_default_name(char *name, uint64_t id)
{
    char digits[20];
    unsigned n = 0;
    do {
        digits[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    memcpy(name, "co-", 3);
    for (unsigned i = 0; i < n; i++)
        name[3 + i] = digits[n - 1 - i];
    name[3 + n] = '\0';
}

int hk_co_spawn(hk_co_scope_t *scope, hk_co_fn fn, void *arg, const hk_co_attr_t *attr,
                hk_co_t **cop)
{
    hk_co_t *self = hk__co_current();
    if (!scope) {
        if (!self)
            return -EPERM;
        scope = self->scope;
    }
    if (!fn || (attr && (attr->flags & ~HK_CO_UNGUARDED)))
        return -EINVAL;
    hk_co_runtime_t *rt = scope->rt;
    size_t size = attr && attr->stack_size ? attr->stack_size : rt->stack_size;
    if (size < HK_CO_STACK_MIN)
        size = HK_CO_STACK_MIN;
    int guarded = !(attr && (attr->flags & HK_CO_UNGUARDED));
    hk__stack_t st;
    int r = hk__stack_get(&st, size, guarded);
    if (r < 0)
        return r;
    /*
     * Why the coroutine lives at the top of its own stack: one allocation
     * instead of two (with many coroutines alive, malloc's per-thread cache
     * runs dry and each spawn and exit went through its slow paths), and one
     * page touched fewer. The stack proper is what lies below; the stack
     * stays until the last reference goes (hk__co_free). With the colours
     * (below), the frames of an earlier owner of the stack may have lain
     * where this record now is; the ASan builds of the tests, which reuse
     * stacks across colours all the time, report nothing there.
     */
    /*
     * Colour: every stack is a mapping of the same size, so without an
     * offset the hot top of every coroutine (this struct, the first frames)
     * sits at the same offset in its mapping, in the same L1 set, and
     * whether two coroutines then thrash each other depends on address bits
     * that ASLR draws: bench/co_micro's channel ping-pong measured 51 or
     * 78 ns per switch from one run to the next. Sixteen colours of one
     * cache line each (at most 960 bytes of the stack) make it 51 every time.
     */
    uint64_t id = __atomic_add_fetch(&rt->next_id, 1, __ATOMIC_RELAXED);
    size_t colour = (size_t)(id % HK__CO_COLOURS) * 64;
    hk_co_t *co =
        (hk_co_t *)(((uintptr_t)(st.lo + st.size) - sizeof *co - colour) & ~(uintptr_t)63);
    hk__co_zero(co);
    co->stack = st;
    co->rt = rt;
    co->fn = fn;
    co->arg = arg;
    co->refs = cop ? 2 : 1;
    co->id = id;
    if (attr && attr->name) {
        snprintf(co->name, sizeof co->name, "%s", attr->name);
        co->named = 1;
    }
    hk__ctx_make(&co->ctx, st.lo, (size_t)((char *)co - st.lo), hk__co_entry, co);
    r = hk__scope_add(scope, co);
    if (r < 0) {
        hk__ctx_release(&co->ctx);
        hk__stack_put(&st, co);
        return r;
    }
    hk__stat_add(&rt->stats.spawned, 1);
    if (cop)
        *cop = co;
    hk__sched_ready(rt, co, 0);
    return 0;
}

int hk_co_join(hk_co_t *co, void **result, uint64_t deadline)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (co == self)
        return -EDEADLK;
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    hk__spin_lock(&co->jlock);
    if (!co->done) {
        int r = deadline == 0 ? -ETIMEDOUT : hk__co_begin(self, 0);
        if (r < 0) {
            hk__spin_unlock(&co->jlock);
            return r;
        }
        hk__waiter_t w = {.co = self, .seq = self->seq};
        hk__waitq_push(&co->joiners, &w);
        hk__spin_unlock(&co->jlock);
        r = hk__co_park(self, deadline);
        if (r < 0) {
            hk__spin_lock(&co->jlock);
            hk__waitq_remove(&co->joiners, &w);
            hk__spin_unlock(&co->jlock);
            return r;
        }
        hk__spin_lock(&co->jlock);
    }
    hk__spin_unlock(&co->jlock);
    if (result)
        *result = co->result;
    hk__co_unref(co);
    return 0;
}

void hk_co_detach(hk_co_t *co)
{
    hk__co_unref(co);
}

hk_co_t *hk_co_self(void)
{
    return hk__co_current();
}

void hk__co_name_into(const hk_co_t *co, char out[32])
{
    if (__atomic_load_n(&co->named, __ATOMIC_ACQUIRE)) {
        memcpy(out, co->name, sizeof co->name);
        out[sizeof co->name - 1] = '\0';
    } else {
        hk__co_default_name(out, co->id);
    }
}

const char *hk_co_name(const hk_co_t *co)
{
    if (!__atomic_load_n(&co->named, __ATOMIC_ACQUIRE)) {
        /* The default name, written once: under jlock, as two threads may ask at once. */
        hk_co_t *w = (hk_co_t *)(uintptr_t)co;
        hk__spin_lock(&w->jlock);
        if (!w->named) {
            hk__co_default_name(w->name, w->id);
            __atomic_store_n(&w->named, 1, __ATOMIC_RELEASE);
        }
        hk__spin_unlock(&w->jlock);
    }
    return co->name;
}

int hk_co_cancelled(void)
{
    hk_co_t *co = hk__co_current();
    return co ? __atomic_load_n(&co->cancelled, __ATOMIC_RELAXED) : 0;
}

int hk_co_yield(void)
{
    hk__worker_t *w = hk__worker_current();
    hk_co_t *co = w ? w->current : NULL;
    if (!co)
        return -EPERM;
    hk__co_leave(w, co, HK__POST_YIELD);
    return 0;
}

int hk_co_sleep_until(uint64_t deadline)
{
    hk_co_t *co = hk__co_current();
    if (!co)
        return -EPERM;
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    if (deadline == 0)
        return 0;
    int r = hk__co_begin(co, 0);
    if (r < 0)
        return r;
    r = hk__co_park(co, deadline);
    return r == -ETIMEDOUT ? 0 : r;
}
