/*
 * Mutex, condition, semaphore and wait group for coroutines.
 *
 * Why hand-over: unlock and release give the lock (or the unit) directly to
 * the first waiter that can still take it, instead of waking it to compete,
 * so a waiter cannot starve and the hand-over needs no second round trip. A
 * waiter that has already timed out or been cancelled loses its claim and is
 * skipped.
 */
#include "co/internal.h"

#include <errno.h>
#include <string.h>

/* Under lock: a wait in q; returns the wake result. Releases lock. */
static int hk__sync_wait(int *lock, struct hk__co_waitq *q, uint64_t deadline, int nocancel)
{
    hk_co_t *self = hk__co_current();
    int r = !self ? -EPERM : deadline == 0 ? -ETIMEDOUT : hk__co_begin(self, nocancel);
    if (r < 0) {
        hk__spin_unlock(lock);
        return r;
    }
    hk__waiter_t w = {.co = self, .seq = self->seq};
    hk__waitq_push(q, &w);
    hk__spin_unlock(lock);
    r = hk__co_park(self, deadline);
    if (r < 0) {
        hk__spin_lock(lock);
        hk__waitq_remove(q, &w);
        hk__spin_unlock(lock);
    }
    return r;
}

/* Under lock: wakes the first waiter that can be claimed. 1 if one was. */
static int hk__sync_handoff(struct hk__co_waitq *q)
{
    hk__waiter_t *w;
    while ((w = hk__waitq_pop(q)))
        if (hk__co_wake(w->co, w->seq, 0))
            return 1;
    return 0;
}

void hk_co_mutex_init(hk_co_mutex_t *m)
{
    memset(m, 0, sizeof *m);
}

static int hk__mutex_lock(hk_co_mutex_t *m, uint64_t deadline, int nocancel)
{
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    hk__spin_lock(&m->_lock);
    if (!m->_locked) {
        m->_locked = 1;
        hk__spin_unlock(&m->_lock);
        return 0;
    }
    return hk__sync_wait(&m->_lock, &m->_waiters, deadline, nocancel);
}

int hk_co_mutex_lock(hk_co_mutex_t *m, uint64_t deadline)
{
    return hk__mutex_lock(m, deadline, 0);
}

int hk_co_mutex_unlock(hk_co_mutex_t *m)
{
    hk__spin_lock(&m->_lock);
    if (!m->_locked) {
        hk__spin_unlock(&m->_lock);
        return -EPERM;
    }
    if (!hk__sync_handoff(&m->_waiters))
        m->_locked = 0;
    hk__spin_unlock(&m->_lock);
    return 0;
}

void hk_co_cond_init(hk_co_cond_t *c)
{
    memset(c, 0, sizeof *c);
}

int hk_co_cond_wait(hk_co_cond_t *c, hk_co_mutex_t *m, uint64_t deadline)
{
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    /*
     * Off the coroutines: refused before m is touched. The wait would fail
     * after the unlock, and the re-lock (which may not wait off a worker)
     * could then return without m, taken meanwhile by someone else.
     */
    if (!hk__co_current())
        return -EPERM;
    hk__spin_lock(&c->_lock);
    /*
     * m not locked: a misuse, and waiting anyway would return with m locked
     * by a caller that never held it (the re-lock below).
     */
    if (hk_co_mutex_unlock(m) < 0) {
        hk__spin_unlock(&c->_lock);
        return -EPERM;
    }
    int r = hk__sync_wait(&c->_lock, &c->_waiters, deadline, 0);
    hk__mutex_lock(m, HK_FOREVER, 1);
    return r;
}

void hk_co_cond_signal(hk_co_cond_t *c)
{
    hk__spin_lock(&c->_lock);
    hk__sync_handoff(&c->_waiters);
    hk__spin_unlock(&c->_lock);
}

void hk_co_cond_broadcast(hk_co_cond_t *c)
{
    hk__spin_lock(&c->_lock);
    while (hk__sync_handoff(&c->_waiters))
        ;
    hk__spin_unlock(&c->_lock);
}

void hk_co_sem_init(hk_co_sem_t *s, uint64_t count)
{
    memset(s, 0, sizeof *s);
    s->_count = count;
}

int hk_co_sem_acquire(hk_co_sem_t *s, uint64_t deadline)
{
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    hk__spin_lock(&s->_lock);
    if (s->_count > 0) {
        s->_count--;
        hk__spin_unlock(&s->_lock);
        return 0;
    }
    return hk__sync_wait(&s->_lock, &s->_waiters, deadline, 0);
}

void hk_co_sem_release(hk_co_sem_t *s)
{
    hk__spin_lock(&s->_lock);
    if (!hk__sync_handoff(&s->_waiters))
        s->_count++;
    hk__spin_unlock(&s->_lock);
}

void hk_co_wg_init(hk_co_wg_t *wg)
{
    memset(wg, 0, sizeof *wg);
}

int hk_co_wg_add(hk_co_wg_t *wg, int64_t delta)
{
    hk__spin_lock(&wg->_lock);
    /* The counter is never negative, so only a positive delta can overflow it. */
    if (delta > 0 ? wg->_count > INT64_MAX - delta : wg->_count + delta < 0) {
        hk__spin_unlock(&wg->_lock);
        return -EINVAL;
    }
    wg->_count += delta;
    if (wg->_count == 0)
        while (hk__sync_handoff(&wg->_waiters))
            ;
    hk__spin_unlock(&wg->_lock);
    return 0;
}

int hk_co_wg_done(hk_co_wg_t *wg)
{
    return hk_co_wg_add(wg, -1);
}

int hk_co_wg_wait(hk_co_wg_t *wg, uint64_t deadline)
{
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    hk__spin_lock(&wg->_lock);
    if (wg->_count == 0) {
        hk__spin_unlock(&wg->_lock);
        return 0;
    }
    return hk__sync_wait(&wg->_lock, &wg->_waiters, deadline, 0);
}
