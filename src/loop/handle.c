/*
 * The handle base: active/referenced accounting (which decides when
 * hk_loop_run returns) and the close protocol. Closing is two-phase so that
 * memory stays valid while events for it may still be in the current batch.
 */
#include "loop/stall.h"

void hk__handle_init(hk_loop_t *loop, hk_handle_t *h, hk_handle_type_t type)
{
    h->loop = loop;
    h->_type = (uint16_t)type;
    h->_flags = HK__REF;
    h->_close_cb = NULL;
    h->_next_closing = NULL;
    loop->open_handles++;
}

static bool hk__counts(const hk_handle_t *h)
{
    return (h->_flags & (HK__ACTIVE | HK__REF | HK__INTERNAL)) == (HK__ACTIVE | HK__REF);
}

void hk__handle_start(hk_handle_t *h)
{
    h->_flags |= HK__ACTIVE;
    if (hk__counts(h))
        h->loop->active_refs++;
}

void hk__handle_stop(hk_handle_t *h)
{
    if (hk__counts(h))
        h->loop->active_refs--;
    h->_flags &= (uint16_t)~HK__ACTIVE;
}

int hk_is_active(const hk_handle_t *h)
{
    return (h->_flags & HK__ACTIVE) != 0;
}

int hk_is_closing(const hk_handle_t *h)
{
    return (h->_flags & (HK__CLOSING | HK__CLOSED)) != 0;
}

void hk_ref(hk_handle_t *h)
{
    if (h->_flags & HK__REF)
        return;
    h->_flags |= HK__REF;
    if (hk__counts(h))
        h->loop->active_refs++;
}

void hk_unref(hk_handle_t *h)
{
    if (!(h->_flags & HK__REF))
        return;
    if (hk__counts(h))
        h->loop->active_refs--;
    h->_flags &= (uint16_t)~HK__REF;
}

void hk_close(hk_handle_t *h, hk_close_cb cb)
{
    assert(((void)"hk: handle closed twice", !(h->_flags & (HK__CLOSING | HK__CLOSED))));
    if (h->_flags & (HK__CLOSING | HK__CLOSED))
        return;
    switch ((hk_handle_type_t)h->_type) {
    case HK_HANDLE_IO:
        hk__io_close((hk_io_t *)h);
        break;
    case HK_HANDLE_TIMER:
        hk_timer_stop((hk_timer_t *)h);
        break;
    case HK_HANDLE_SIGNAL:
        hk_signal_stop((hk_signal_t *)h);
        break;
    case HK_HANDLE_CHILD:
        hk_child_stop((hk_child_t *)h);
        break;
    case HK_HANDLE_ASYNC: {
        hk_async_t *a = (hk_async_t *)h;
        hk__list_remove(&a->_link);
        hk__handle_stop(h);
        hk__async_quiesce(a);
        break;
    }
    case HK_HANDLE_HOOK:
        hk_hook_stop((hk_hook_t *)h);
        break;
    }
    h->_flags |= HK__CLOSING;
    h->_close_cb = cb;
    h->_next_closing = h->loop->closing;
    h->loop->closing = h;
}

/* Runs close callbacks; callbacks may close further handles, which run too. */
void hk__run_closing(hk_loop_t *loop)
{
    while (loop->closing) {
        hk_handle_t *list = loop->closing;
        loop->closing = NULL;
        /* The list is LIFO; reverse it so callbacks run in hk_close order. */
        hk_handle_t *ordered = NULL;
        while (list) {
            hk_handle_t *next = list->_next_closing;
            list->_next_closing = ordered;
            ordered = list;
            list = next;
        }
        while (ordered) {
            hk_handle_t *h = ordered;
            ordered = h->_next_closing;
            h->_next_closing = NULL;
            h->_flags = (uint16_t)((h->_flags & ~HK__CLOSING) | HK__CLOSED);
            loop->open_handles--;
            loop->stats.callbacks++;
            if (h->_close_cb) {
                hk__stall_enter(loop, (const void *)h->_close_cb);
                h->_close_cb(h);
                hk__stall_leave(loop);
            }
        }
    }
}
