/*
 * A 4-ary min-heap of timers ordered by (deadline, start sequence). Four
 * children per node halve the depth of a binary heap and keep siblings in one
 * cache line; each entry caches its deadline so comparisons never touch the
 * timer structs (libev measured the same trade-off). Each timer records its
 * index, so stopping one is O(log n) with no search. Equal deadlines run in
 * start order.
 */
#include <stdlib.h>

#include "loop/internal.h"

#define HK__HEAP_D 4

static bool hk__heap_less(const struct hk__heap_entry *a, const struct hk__heap_entry *b)
{
    return a->when < b->when || (a->when == b->when && a->timer->_seq < b->timer->_seq);
}

static void hk__heap_set(struct hk__heap_entry *heap, uint32_t i, struct hk__heap_entry e)
{
    heap[i] = e;
    e.timer->_heap_index = i;
}

static void hk__heap_sift_up(struct hk__heap_entry *heap, uint32_t i)
{
    struct hk__heap_entry e = heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / HK__HEAP_D;
        if (!hk__heap_less(&e, &heap[parent]))
            break;
        hk__heap_set(heap, i, heap[parent]);
        i = parent;
    }
    hk__heap_set(heap, i, e);
}

static void hk__heap_sift_down(struct hk__heap_entry *heap, uint32_t len, uint32_t i)
{
    struct hk__heap_entry e = heap[i];
    for (;;) {
        uint32_t first = i * HK__HEAP_D + 1;
        if (first >= len)
            break;
        uint32_t end = first + HK__HEAP_D < len ? first + HK__HEAP_D : len;
        uint32_t best = first;
        for (uint32_t c = first + 1; c < end; c++) {
            if (hk__heap_less(&heap[c], &heap[best]))
                best = c;
        }
        if (!hk__heap_less(&heap[best], &e))
            break;
        hk__heap_set(heap, i, heap[best]);
        i = best;
    }
    hk__heap_set(heap, i, e);
}

/* when: the heap key, the timer's deadline (or an ONTIME timer's arming moment). */
int hk__heap_push(hk_loop_t *loop, hk_timer_t *t, uint64_t when)
{
    /* Room is kept for the parked timers, so that putting them back cannot fail. */
    if (loop->heap_len + loop->nparked >= loop->heap_cap) {
        if (loop->heap_cap >= UINT32_MAX / 2)
            return -ENOMEM;
        uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct hk__heap_entry *h = realloc(loop->heap, (size_t)cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    uint32_t i = loop->heap_len++;
    loop->heap[i] = (struct hk__heap_entry){.when = when, .timer = t};
    hk__heap_sift_up(loop->heap, i);
    return 0;
}

/* A parked timer leaves the parked set (stopped or closed during the pass). */
static void hk__heap_unpark(hk_loop_t *loop, hk_timer_t *t)
{
    uint32_t i = t->_heap_index;
    uint32_t last = --loop->nparked;
    if (i != last) {
        loop->parked[i] = loop->parked[last];
        loop->parked[i].timer->_heap_index = i;
    }
    t->base._flags &= (uint16_t)~HK__PARKED;
}

void hk__heap_remove(hk_loop_t *loop, hk_timer_t *t)
{
    if (HK_UNLIKELY(t->base._flags & HK__PARKED)) {
        hk__heap_unpark(loop, t);
        return;
    }
    uint32_t i = t->_heap_index;
    uint32_t last = --loop->heap_len;
    if (i != last) {
        hk__heap_set(loop->heap, i, loop->heap[last]);
        if (i > 0 && hk__heap_less(&loop->heap[i], &loop->heap[(i - 1) / HK__HEAP_D]))
            hk__heap_sift_up(loop->heap, i);
        else
            hk__heap_sift_down(loop->heap, loop->heap_len, i);
    }
    /* Give the memory back when a burst of timers is gone. */
    if (loop->heap_cap > 1024 && loop->heap_len + loop->nparked < loop->heap_cap / 8) {
        uint32_t cap = loop->heap_cap / 2;
        struct hk__heap_entry *h = realloc(loop->heap, (size_t)cap * sizeof *h);
        if (h) {
            loop->heap = h;
            loop->heap_cap = cap;
        }
    }
}

/* The top timer got a new, later deadline (a repeating timer): sift it down. */
void hk__heap_replace_top(hk_loop_t *loop, uint64_t when)
{
    loop->heap[0].when = when;
    hk__heap_sift_down(loop->heap, loop->heap_len, 0);
}

/*
 * Sets the top timer aside until hk__heap_unpark_all: a timer started during
 * a pass of due timers and already due itself waits for the next pass, but
 * the due timers behind it in the heap must still run in this one. It stays
 * active; its heap entry waits in loop->parked. Returns -ENOMEM when the
 * parked set cannot grow (the caller then ends the pass there).
 */
int hk__heap_park_top(hk_loop_t *loop)
{
    if (loop->nparked == loop->parked_cap) {
        uint32_t cap = loop->parked_cap ? loop->parked_cap * 2 : 16;
        struct hk__heap_entry *p = realloc(loop->parked, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        loop->parked = p;
        loop->parked_cap = cap;
    }
    struct hk__heap_entry e = loop->heap[0];
    hk__heap_remove(loop, e.timer);
    e.timer->_heap_index = loop->nparked;
    e.timer->base._flags |= HK__PARKED;
    loop->parked[loop->nparked++] = e;
    return 0;
}

/* The pass is over: parked timers go back into the heap (room was kept for them). */
void hk__heap_unpark_all(hk_loop_t *loop)
{
    while (loop->nparked > 0) {
        struct hk__heap_entry e = loop->parked[--loop->nparked];
        e.timer->base._flags &= (uint16_t)~HK__PARKED;
        (void)hk__heap_push(loop, e.timer, e.when);
    }
}
