/*
 * Subscribers: a loop woken through its eventfd after each publication.
 *
 * Each subscriber is an async handle of its loop. hk_publish_set sends it
 * after the swap; sends coalesce until the callback runs, and the callback
 * reads whatever is current then, so a burst of publications costs a
 * subscriber one wake-up and one call, with the newest version. The list is
 * under the object's mutex, and the sends happen while it is held, so once
 * hk_publish_unsubscribe has unlinked a subscriber no setter can still be
 * sending to it (a send after hk_close would touch a closed handle). Sending
 * never blocks, so the mutex is held for a few atomic operations per
 * subscriber; readers never take it.
 */
#include <assert.h>
#include <errno.h>

#include "publish/internal.h"

/* Any thread: wakes every subscriber of pub. */
void hk__publish_notify(hk_publish_t *pub)
{
    pthread_mutex_lock(&pub->lock);
    for (hk_subscriber_t *s = pub->subs; s; s = s->_next)
        hk_async_send(&s->_async);
    pthread_mutex_unlock(&pub->lock);
}

static void hk__subscriber_wake(hk_async_t *async)
{
    hk_subscriber_t *sub = (hk_subscriber_t *)async;
    struct hk__version *v = __atomic_load_n(&sub->publish->current, __ATOMIC_ACQUIRE);
    if (!v || v->seq == sub->_seen)
        return;
    sub->_seen = v->seq;
    sub->_cb(sub, v->version);
}

int hk_publish_subscribe(hk_publish_t *pub, hk_loop_t *loop, hk_subscriber_t *sub,
                         hk_subscriber_cb cb)
{
    if (!pub || !loop || !sub || !cb)
        return -EINVAL;
    int r = hk_publish_attach(loop);
    if (r < 0)
        return r;
    r = hk_async_init(loop, &sub->_async, hk__subscriber_wake);
    if (r < 0)
        return r;
    sub->publish = pub;
    sub->_cb = cb;
    sub->_close_cb = NULL;
    sub->_prev = NULL;
    sub->_seen = 0;
    pthread_mutex_lock(&pub->lock);
    sub->_next = pub->subs;
    if (pub->subs)
        pub->subs->_prev = sub;
    pub->subs = sub;
    pthread_mutex_unlock(&pub->lock);
    /* The version current now, if any, is the first one delivered. */
    if (hk_publish_count(pub) > 0)
        hk_async_send(&sub->_async);
    return 0;
}

static void hk__subscriber_closed(hk_handle_t *handle)
{
    hk_subscriber_t *sub = (hk_subscriber_t *)handle;
    if (sub->_close_cb)
        sub->_close_cb(sub);
}

void hk_publish_unsubscribe(hk_subscriber_t *sub, hk_subscriber_close_cb cb)
{
    assert(((void)"hk: subscriber closed twice", !hk_is_closing(&sub->_async.base)));
    hk_publish_t *pub = sub->publish;
    pthread_mutex_lock(&pub->lock);
    if (sub->_prev)
        sub->_prev->_next = sub->_next;
    else
        pub->subs = sub->_next;
    if (sub->_next)
        sub->_next->_prev = sub->_prev;
    pthread_mutex_unlock(&pub->lock);
    sub->_prev = sub->_next = NULL;
    sub->_close_cb = cb;
    hk_close(&sub->_async.base, hk__subscriber_closed);
}
