/*
 * Channels: a ring buffer plus queues of waiting senders and receivers.
 *
 * Why hand-offs: when a receiver waits, a sender copies its element straight
 * into the receiver's destination (on the receiver's stack) and wakes it, so
 * an unbuffered exchange is one copy and one wake-up. A waiter may belong to
 * a select waiting on several channels, or may have timed out: the hand-off
 * happens only if the sender wins the waiter's claim, otherwise it tries the
 * next waiter. A select locks all its channels in address order, so two
 * selects cannot deadlock.
 */
#include "co/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct hk_chan {
    int lock;
    int closed;
    size_t elem_size, cap, head, count;
    struct hk__co_waitq sendq, recvq;
    char *buf;
};

int hk_chan_new(hk_chan_t **chp, size_t elem_size, size_t capacity)
{
    if (elem_size == 0 || elem_size > 65536 || capacity > (SIZE_MAX / elem_size))
        return -EINVAL;
    hk_chan_t *ch = calloc(1, sizeof *ch);
    if (!ch)
        return -ENOMEM;
    ch->elem_size = elem_size;
    ch->cap = capacity;
    if (capacity && !(ch->buf = malloc(elem_size * capacity))) {
        free(ch);
        return -ENOMEM;
    }
    *chp = ch;
    return 0;
}

void hk_chan_free(hk_chan_t *ch)
{
    if (!ch)
        return;
    free(ch->buf);
    free(ch);
}

size_t hk_chan_len(hk_chan_t *ch)
{
    hk__spin_lock(&ch->lock);
    size_t n = ch->count;
    hk__spin_unlock(&ch->lock);
    return n;
}

/* Under ch->lock: pops the first waiter of q whose claim succeeds (wlock held). */
static hk__waiter_t *hk__chan_claim(struct hk__co_waitq *q)
{
    hk__waiter_t *w;
    while ((w = hk__waitq_pop(q)))
        if (hk__co_claim(w->co, w->seq))
            return w;
    return NULL;
}

/* An element to a receiver's destination; a receiver that gave none (NULL) discards it. */
static void hk__chan_deliver(hk_chan_t *ch, void *dst, const void *src)
{
    if (dst)
        memcpy(dst, src, ch->elem_size);
}

/* Under ch->lock: one send attempt. 1 done, 0 would block, -EPIPE closed. */
static int hk__chan_try_send(hk_chan_t *ch, const void *elem)
{
    if (ch->closed)
        return -EPIPE;
    hk__waiter_t *w = hk__chan_claim(&ch->recvq);
    if (w) {
        hk__chan_deliver(ch, w->elem, elem);
        w->status = 0;
        hk__co_commit(w->co, w->index);
        return 1;
    }
    if (ch->count < ch->cap) {
        memcpy(ch->buf + ((ch->head + ch->count) % ch->cap) * ch->elem_size, elem, ch->elem_size);
        ch->count++;
        return 1;
    }
    return 0;
}

/* Under ch->lock: one receive attempt. 1 done, 0 would block, -EPIPE closed and empty. */
static int hk__chan_try_recv(hk_chan_t *ch, void *elem)
{
    if (ch->count) {
        hk__chan_deliver(ch, elem, ch->buf + ch->head * ch->elem_size);
        ch->head = (ch->head + 1) % ch->cap;
        ch->count--;
        hk__waiter_t *w = hk__chan_claim(&ch->sendq);
        if (w) {
            memcpy(ch->buf + ((ch->head + ch->count) % ch->cap) * ch->elem_size, w->elem,
                   ch->elem_size);
            ch->count++;
            w->status = 0;
            hk__co_commit(w->co, w->index);
        }
        return 1;
    }
    hk__waiter_t *w = hk__chan_claim(&ch->sendq);
    if (w) {
        hk__chan_deliver(ch, elem, w->elem);
        w->status = 0;
        hk__co_commit(w->co, w->index);
        return 1;
    }
    return ch->closed ? -EPIPE : 0;
}

int hk_chan_close(hk_chan_t *ch)
{
    hk__spin_lock(&ch->lock);
    if (ch->closed) {
        hk__spin_unlock(&ch->lock);
        return -EALREADY;
    }
    ch->closed = 1;
    hk__waiter_t *w;
    while ((w = hk__chan_claim(&ch->recvq))) {
        w->status = -EPIPE;
        hk__co_commit(w->co, w->index);
    }
    while ((w = hk__chan_claim(&ch->sendq))) {
        w->status = -EPIPE;
        hk__co_commit(w->co, w->index);
    }
    hk__spin_unlock(&ch->lock);
    return 0;
}

static int hk__chan_one(hk_chan_t *ch, hk_chan_op_t op, void *elem, uint64_t deadline)
{
    hk_chan_case_t c = {.chan = ch, .op = op, .elem = elem};
    int r = hk_chan_select(&c, 1, deadline);
    return r < 0 ? r : c.status;
}

int hk_chan_send(hk_chan_t *ch, const void *elem, uint64_t deadline)
{
    return hk__chan_one(ch, HK_CHAN_SEND, (void *)elem, deadline);
}

int hk_chan_recv(hk_chan_t *ch, void *elem, uint64_t deadline)
{
    return hk__chan_one(ch, HK_CHAN_RECV, elem, deadline);
}

/* The distinct channels of the cases, sorted by address; returns how many. */
static size_t hk__chan_order(hk_chan_case_t *cases, size_t n, hk_chan_t **locks)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (cases[i].chan)
            locks[k++] = cases[i].chan;
    /* Insertion sort: a select has few cases, and a plain send or receive has one. */
    for (size_t i = 1; i < k; i++) {
        hk_chan_t *c = locks[i];
        size_t j = i;
        for (; j > 0 && (uintptr_t)locks[j - 1] > (uintptr_t)c; j--)
            locks[j] = locks[j - 1];
        locks[j] = c;
    }
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || locks[u - 1] != locks[i])
            locks[u++] = locks[i];
    return u;
}

static void hk__chan_lock_all(hk_chan_t **locks, size_t n, int lock)
{
    for (size_t i = 0; i < n; i++) {
        if (lock)
            hk__spin_lock(&locks[i]->lock);
        else
            hk__spin_unlock(&locks[n - 1 - i]->lock);
    }
}

int hk_chan_select(hk_chan_case_t *cases, size_t n, uint64_t deadline)
{
    if (n == 0 || n > HK_CHAN_SELECT_MAX || !hk__deadline_ok(deadline))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (cases[i].chan &&
            (cases[i].op == HK_CHAN_SEND ? !cases[i].elem : cases[i].op != HK_CHAN_RECV))
            return -EINVAL; /* a bad op, or a send of nothing */
    hk_chan_t *locks[HK_CHAN_SELECT_MAX];
    size_t nl = hk__chan_order(cases, n, locks);
    if (nl == 0)
        return -EINVAL;
    /*
     * The order to try the cases in: a random permutation, so that each ready
     * case is as likely as any other. A random first case in index order was
     * not: a ready case took every start that fell on the not-ready (or NULL)
     * cases before it, so with cases {a, -, -, b} b won three times in four.
     * Why the n > 1 test: a plain send or receive (n == 1) pays nothing.
     * Multiply-shift instead of a modulo: a 64-bit division costs tens of
     * cycles per case.
     */
    unsigned char order[HK_CHAN_SELECT_MAX];
    order[0] = 0;
    if (n > 1) {
        static __thread uint32_t rng = 2463534242u;
        for (size_t i = 1; i < n; i++) {
            rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
            size_t j = (size_t)(((uint64_t)rng * (i + 1)) >> 32);
            order[i] = (unsigned char)i;
            unsigned char t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }

    hk__chan_lock_all(locks, nl, 1);
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        hk_chan_case_t *c = &cases[i];
        if (!c->chan)
            continue;
        int r = c->op == HK_CHAN_SEND ? hk__chan_try_send(c->chan, c->elem)
                                      : hk__chan_try_recv(c->chan, c->elem);
        if (r != 0) {
            hk__chan_lock_all(locks, nl, 0);
            c->status = r < 0 ? r : 0;
            return (int)i;
        }
    }
    /*
     * Try-once first: a call with deadline 0 never waits, so any thread may
     * make it (co.h) and learn that it would have blocked; only a wait needs
     * a coroutine.
     */
    hk_co_t *self = hk__co_current();
    int r = deadline == 0 ? -ETIMEDOUT : !self ? -EPERM : hk__co_begin(self, 0);
    if (r < 0) {
        hk__chan_lock_all(locks, nl, 0);
        return r;
    }
    hk__waiter_t ws[8], *w = n <= 8 ? ws : calloc(n, sizeof *w);
    if (!w) {
        hk__chan_lock_all(locks, nl, 0);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        w[i] = (hk__waiter_t){.co = self,
                              .seq = self->seq,
                              .elem = cases[i].elem,
                              .index = (int)i,
                              .is_send = cases[i].op == HK_CHAN_SEND};
        if (cases[i].chan)
            hk__waitq_push(w[i].is_send ? &cases[i].chan->sendq : &cases[i].chan->recvq, &w[i]);
    }
    hk__chan_lock_all(locks, nl, 0);
    r = hk__co_park(self, deadline);
    /*
     * A single case woken by its channel (r >= 0) was unlinked by the waker under the
     * channel lock, which happened before the wake-up: nothing to remove, no lock to take.
     */
    if (n > 1 || r < 0) {
        hk__chan_lock_all(locks, nl, 1);
        for (size_t i = 0; i < n; i++)
            if (cases[i].chan)
                hk__waitq_remove(w[i].is_send ? &cases[i].chan->sendq : &cases[i].chan->recvq,
                                 &w[i]);
        hk__chan_lock_all(locks, nl, 0);
    }
    if (r >= 0)
        cases[r].status = w[r].status;
    if (w != ws)
        free(w);
    return r;
}
