/* The stall detector's hooks into the loop's callback sites (see stall.c). */
#ifndef HK_LOOP_STALL_H
#define HK_LOOP_STALL_H

#include "loop/internal.h"

void hk__stall_begin(hk_loop_t *loop, const void *callback);
void hk__stall_end(hk_loop_t *loop);
void hk__stall_awake(hk_loop_t *loop);
void hk__stall_sleeping(hk_loop_t *loop);
void hk__stall_free(hk_loop_t *loop);

/* Around a callback site: a load and a branch when the detector is off. */
static inline void hk__stall_enter(hk_loop_t *loop, const void *callback)
{
    if (HK_UNLIKELY(loop->stall != NULL))
        hk__stall_begin(loop, callback);
}

static inline void hk__stall_leave(hk_loop_t *loop)
{
    if (HK_UNLIKELY(loop->stall != NULL))
        hk__stall_end(loop);
}

#endif
