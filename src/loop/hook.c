/*
 * Prepare, check and idle hooks. Each kind is a list run in start order; the
 * list is moved aside while it runs, so a hook may stop itself or any other
 * hook, or start new ones (which run from the next iteration on).
 */
#include "loop/stall.h"

int hk_hook_init(hk_loop_t *loop, hk_hook_t *hook, hk_hook_kind_t kind)
{
    if (!loop || !hook || kind < HK_HOOK_PREPARE || kind > HK_HOOK_IDLE)
        return -EINVAL;
    hk__handle_init(loop, &hook->base, HK_HANDLE_HOOK);
    hook->kind = kind;
    hook->_cb = NULL;
    hk__list_init(&hook->_link);
    return 0;
}

int hk_hook_start(hk_hook_t *hook, hk_hook_cb cb)
{
    if (!cb)
        return -EINVAL;
    if (hook->base._flags & HK__ACTIVE)
        return -EBUSY;
    if (hook->base._flags & (HK__CLOSING | HK__CLOSED))
        return -EINVAL;
    hk_loop_t *loop = hook->base.loop;
    hook->_cb = cb;
    hk__list_insert_tail(&loop->hooks[hook->kind - 1], &hook->_link);
    if (hook->kind == HK_HOOK_IDLE)
        loop->idle_active++;
    hk__handle_start(&hook->base);
    return 0;
}

int hk_hook_stop(hk_hook_t *hook)
{
    if (!(hook->base._flags & HK__ACTIVE))
        return -EALREADY;
    hk__list_remove(&hook->_link);
    if (hook->kind == HK_HOOK_IDLE)
        hook->base.loop->idle_active--;
    hk__handle_stop(&hook->base);
    return 0;
}

void hk__hooks_run(hk_loop_t *loop, hk_hook_kind_t kind)
{
    struct hk__link *list = &loop->hooks[kind - 1];
    if (hk__list_empty(list))
        return;
    struct hk__link tmp;
    hk__list_move(list, &tmp);
    for (struct hk__link *l; (l = hk__list_rotate(&tmp, list));) {
        hk_hook_t *h = HK_CONTAINER_OF(l, hk_hook_t, _link);
        loop->stats.callbacks++;
        hk__stall_enter(loop, (const void *)h->_cb);
        h->_cb(h);
        hk__stall_leave(loop);
    }
}
