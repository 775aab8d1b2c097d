/*
 * The loop's seam for the modules layered on it (pool, fs, ...): a few slots
 * where a module hangs its per-loop state, outstanding-request accounting that
 * keeps the loop alive, and internal async handles. Modules include this
 * header, never loop/internal.h.
 */
#ifndef HK_LOOP_EXT_H
#define HK_LOOP_EXT_H

#include "hark/loop.h"

enum hk__ext_slot {
    HK__EXT_POOL = 0,
    HK__EXT_FS = 1,
    HK__EXT_PUBLISH = 2,
    HK__EXT_SLOTS = 4,
};

/* Called by hk_loop_free for a slot's state (after the loop is idle). */
typedef void (*hk__ext_free_fn)(hk_loop_t *loop, void *state);

void *hk__loop_ext_get(const hk_loop_t *loop, enum hk__ext_slot slot);
void hk__loop_ext_set(hk_loop_t *loop, enum hk__ext_slot slot, void *state, hk__ext_free_fn fn);

/*
 * A function the loop calls with asleep = 1 just before it blocks in epoll
 * and when hk_loop_run returns, and with asleep = 0 when it wakes and when
 * hk_loop_run starts (publish: an RCU reader is offline while it sleeps). The
 * loop tests for it once per iteration; NULL (the default) costs nothing more.
 */
typedef void (*hk__sleep_fn)(hk_loop_t *loop, int asleep);
void hk__loop_set_sleep_fn(hk_loop_t *loop, hk__sleep_fn fn);

/* Whether hk_loop_run is executing (the caller is inside one of its callbacks). */
int hk__loop_running(const hk_loop_t *loop);

/*
 * Requests in flight (pool work, file operations): each keeps the loop alive
 * like an active handle, and hk_loop_free refuses with -EBUSY while any is
 * outstanding.
 */
void hk__loop_req_start(hk_loop_t *loop);
void hk__loop_req_done(hk_loop_t *loop);

/*
 * An async handle owned by a module: not counted as open (hk_loop_free does
 * not wait for it) nor as active. Release it with hk__async_release from the
 * slot's free function instead of hk_close.
 */
int hk__async_init_internal(hk_loop_t *loop, hk_async_t *async, hk_async_cb cb);
void hk__async_release(hk_async_t *async);

/* The same for io watchers owned by a module (io_uring's eventfd). */
int hk__io_init_internal(hk_loop_t *loop, hk_io_t *io, int fd);
void hk__io_release(hk_io_t *io);

#endif
