/*
 * Request deadlines. c-ares times out its queries with its own timeout and
 * attempts, the same for every lookup; a caller's deadline is per request.
 * Embedding a timer in each request would make the request's memory live
 * until the timer's close callback, long after the request's own callback,
 * so the resolver keeps one timer for all of them, armed at the top of a
 * binary min-heap of the requests that have a finite deadline.
 */
#include <stdlib.h>

#include "dns/internal.h"

#define NO_INDEX UINT32_MAX

static void place(hk_resolver_t *r, uint32_t i, hk_dns_req_t *req)
{
    r->heap[i] = req;
    req->_heap_index = i;
}

static void sift_up(hk_resolver_t *r, uint32_t i)
{
    hk_dns_req_t *req = r->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (r->heap[parent]->_deadline <= req->_deadline)
            break;
        place(r, i, r->heap[parent]);
        i = parent;
    }
    place(r, i, req);
}

static void sift_down(hk_resolver_t *r, uint32_t i)
{
    hk_dns_req_t *req = r->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= r->heap_len)
            break;
        if (child + 1 < r->heap_len && r->heap[child + 1]->_deadline < r->heap[child]->_deadline)
            child++;
        if (req->_deadline <= r->heap[child]->_deadline)
            break;
        place(r, i, r->heap[child]);
        i = child;
    }
    place(r, i, req);
}

int hk__dns_heap_push(hk_resolver_t *r, hk_dns_req_t *req)
{
    req->_heap_index = NO_INDEX;
    if (req->_deadline == HK_FOREVER)
        return 0;
    if (r->heap_len == r->heap_cap) {
        uint32_t cap = r->heap_cap ? 2 * r->heap_cap : 16;
        hk_dns_req_t **h = realloc(r->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        r->heap = h;
        r->heap_cap = cap;
    }
    r->heap[r->heap_len] = req;
    sift_up(r, r->heap_len++);
    return 0;
}

void hk__dns_heap_remove(hk_resolver_t *r, hk_dns_req_t *req)
{
    uint32_t i = req->_heap_index;
    if (i == NO_INDEX)
        return;
    req->_heap_index = NO_INDEX;
    hk_dns_req_t *last = r->heap[--r->heap_len];
    if (i == r->heap_len)
        return;
    place(r, i, last);
    if (i > 0 && r->heap[(i - 1) / 2]->_deadline > last->_deadline)
        sift_up(r, i);
    else
        sift_down(r, i);
}

void hk__dns_heap_sync(hk_resolver_t *r)
{
    if (r->closing)
        return;
    if (r->heap_len == 0) {
        hk_timer_stop(&r->deadline_timer);
        return;
    }
    uint64_t top = r->heap[0]->_deadline;
    if (hk_is_active(&r->deadline_timer.base)) {
        if (hk_timer_deadline(&r->deadline_timer) == top)
            return;
        hk_timer_stop(&r->deadline_timer);
    }
    hk_timer_start(&r->deadline_timer, hk__dns_on_deadline, top, 0);
}
