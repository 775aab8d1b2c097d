/*
 * Scopes: structured concurrency.
 *
 * Why a scope owns its coroutines: a coroutine that outlives the code that
 * started it leaks work and memory and races with teardown. Every coroutine
 * is spawned into a scope; cancelling a scope wakes every blocking call of its
 * coroutines (and of nested scopes) with -ECANCELED, and closing it waits,
 * without giving in to cancellation, until they have all returned.
 *
 * Lock order: parent scope, child scope, coroutine wait lock.
 */
#include "co/internal.h"

#include <errno.h>
#include <stdlib.h>

void hk__waitq_push(struct hk__co_waitq *q, hk__waiter_t *w)
{
    w->next = NULL;
    w->prev = q->_tail;
    if (q->_tail)
        ((hk__waiter_t *)q->_tail)->next = w;
    else
        q->_head = w;
    q->_tail = w;
    w->linked = 1;
}

void hk__waitq_remove(struct hk__co_waitq *q, hk__waiter_t *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->_tail = w->prev;
    w->linked = 0;
}

hk__waiter_t *hk__waitq_pop(struct hk__co_waitq *q)
{
    hk__waiter_t *w = q->_head;
    if (w)
        hk__waitq_remove(q, w);
    return w;
}

int hk__scope_create(hk_co_runtime_t *rt, hk_co_scope_t *parent, hk_co_scope_t **scopep)
{
    hk_co_scope_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->rt = rt;
    if (parent) {
        hk__spin_lock(&parent->lock);
        if (parent->cancelled) {
            hk__spin_unlock(&parent->lock);
            free(s);
            return -ECANCELED;
        }
        s->parent = parent;
        s->sibling_next = parent->children;
        if (parent->children)
            parent->children->sibling_prev = s;
        parent->children = s;
        hk__spin_unlock(&parent->lock);
    }
    *scopep = s;
    return 0;
}

int hk__scope_add(hk_co_scope_t *s, hk_co_t *co)
{
    hk__spin_lock(&s->lock);
    if (s->cancelled || s->closing) {
        hk__spin_unlock(&s->lock);
        return -ECANCELED;
    }
    co->scope = s;
    co->sprev = NULL;
    co->snext = s->head;
    if (s->head)
        s->head->sprev = co;
    s->head = co;
    s->count++;
    hk__spin_unlock(&s->lock);
    return 0;
}

void hk__scope_remove(hk_co_scope_t *s, hk_co_t *co)
{
    hk__spin_lock(&s->lock);
    if (co->sprev)
        co->sprev->snext = co->snext;
    else
        s->head = co->snext;
    if (co->snext)
        co->snext->sprev = co->sprev;
    if (--s->count == 0) {
        hk__waiter_t *w;
        while ((w = hk__waitq_pop(&s->waiters)))
            if (hk__co_claim(w->co, w->seq))
                hk__co_commit(w->co, 0);
        if (s->empty_cb)
            s->empty_cb(s->empty_arg);
    }
    hk__spin_unlock(&s->lock);
}

static void hk__scope_cancel_locked(hk_co_scope_t *s)
{
    s->cancelled = 1;
    for (hk_co_t *co = s->head; co; co = co->snext)
        hk__co_cancel_locked(co);
    for (hk_co_scope_t *c = s->children; c; c = c->sibling_next) {
        hk__spin_lock(&c->lock);
        hk__scope_cancel_locked(c);
        hk__spin_unlock(&c->lock);
    }
}

void hk_co_scope_cancel(hk_co_scope_t *s)
{
    hk__spin_lock(&s->lock);
    hk__scope_cancel_locked(s);
    hk__spin_unlock(&s->lock);
}

int hk__scope_wait(hk_co_scope_t *s, uint64_t deadline, int nocancel)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    if (self->scope == s)
        return -EDEADLK;
    hk__spin_lock(&s->lock);
    if (s->count == 0) {
        hk__spin_unlock(&s->lock);
        return 0;
    }
    if (deadline == 0) {
        hk__spin_unlock(&s->lock);
        return -ETIMEDOUT;
    }
    int r = hk__co_begin(self, nocancel);
    if (r < 0) {
        hk__spin_unlock(&s->lock);
        return r;
    }
    hk__waiter_t w = {.co = self, .seq = self->seq};
    hk__waitq_push(&s->waiters, &w);
    hk__spin_unlock(&s->lock);
    r = hk__co_park(self, deadline);
    if (r < 0) {
        hk__spin_lock(&s->lock);
        hk__waitq_remove(&s->waiters, &w);
        hk__spin_unlock(&s->lock);
    }
    return r;
}

void hk__scope_destroy(hk_co_scope_t *s)
{
    /* Taking the lock once waits out an exit path still inside hk__scope_remove. */
    hk__spin_lock(&s->lock);
    hk__spin_unlock(&s->lock);
    hk_co_scope_t *p = s->parent;
    if (p) {
        hk__spin_lock(&p->lock);
        if (s->sibling_prev)
            s->sibling_prev->sibling_next = s->sibling_next;
        else
            p->children = s->sibling_next;
        if (s->sibling_next)
            s->sibling_next->sibling_prev = s->sibling_prev;
        hk__spin_unlock(&p->lock);
    }
    free(s);
}

int hk_co_scope_new(hk_co_scope_t **scopep)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    return hk__scope_create(self->rt, self->scope, scopep);
}

int hk_co_scope_wait(hk_co_scope_t *s, uint64_t deadline)
{
    return hk__scope_wait(s, deadline, 0);
}

int hk_co_scope_close(hk_co_scope_t *s)
{
    /*
     * The errors of the wait below, found before anything changes: a
     * coroutine closing its own scope would otherwise cancel itself and its
     * siblings and leave the scope refusing spawns, and then fail anyway.
     */
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (self->scope == s)
        return -EDEADLK;
    hk__spin_lock(&s->lock);
    if (s->children) {
        hk__spin_unlock(&s->lock);
        return -EBUSY;
    }
    s->closing = 1;
    hk__scope_cancel_locked(s);
    hk__spin_unlock(&s->lock);
    int r = hk__scope_wait(s, HK_FOREVER, 1);
    if (r < 0)
        return r;
    hk__scope_destroy(s);
    return 0;
}
