/*
 * Implementation of the module seam declared in loop/ext.h. Internal handles
 * carry HK__INTERNAL: they never count as open or active, so a module's
 * plumbing cannot keep a loop running or make hk_loop_free refuse; only real
 * requests in flight do.
 */
#include "loop/ext.h"
#include "loop/internal.h"

void *hk__loop_ext_get(const hk_loop_t *loop, enum hk__ext_slot slot)
{
    return loop->ext[slot].state;
}

void hk__loop_ext_set(hk_loop_t *loop, enum hk__ext_slot slot, void *state, hk__ext_free_fn fn)
{
    loop->ext[slot].state = state;
    loop->ext[slot].free_fn = fn;
}

void hk__loop_set_sleep_fn(hk_loop_t *loop, hk__sleep_fn fn)
{
    loop->sleep_fn = fn;
}

int hk__loop_running(const hk_loop_t *loop)
{
    return loop->running;
}

void hk__loop_req_start(hk_loop_t *loop)
{
    loop->pending_reqs++;
    loop->active_refs++;
}

void hk__loop_req_done(hk_loop_t *loop)
{
    loop->pending_reqs--;
    loop->active_refs--;
}

static void hk__handle_make_internal(hk_handle_t *h)
{
    bool counted = (h->_flags & (HK__ACTIVE | HK__REF | HK__INTERNAL)) == (HK__ACTIVE | HK__REF);
    if (counted)
        h->loop->active_refs--;
    h->_flags |= HK__INTERNAL;
    h->loop->open_handles--;
}

int hk__async_init_internal(hk_loop_t *loop, hk_async_t *async, hk_async_cb cb)
{
    int r = hk_async_init(loop, async, cb);
    if (r == 0)
        hk__handle_make_internal(&async->base);
    return r;
}

void hk__async_release(hk_async_t *async)
{
    hk__list_remove(&async->_link);
    hk__async_quiesce(async);
    async->base._flags = HK__CLOSED | HK__INTERNAL;
}

int hk__io_init_internal(hk_loop_t *loop, hk_io_t *io, int fd)
{
    int r = hk_io_init(loop, io, fd);
    if (r == 0)
        hk__handle_make_internal(&io->base);
    return r;
}

void hk__io_release(hk_io_t *io)
{
    hk__io_close(io);
    io->base._flags = HK__CLOSED | HK__INTERNAL;
}

/* Frees every module's per-loop state; the loop is idle (checked by the caller). */
void hk__loop_ext_free_all(hk_loop_t *loop)
{
    for (int i = HK__EXT_SLOTS - 1; i >= 0; i--) {
        if (loop->ext[i].state && loop->ext[i].free_fn)
            loop->ext[i].free_fn(loop, loop->ext[i].state);
        loop->ext[i].state = NULL;
    }
}
