/*
 * The life of a lookup request.
 *
 * c-ares cannot cancel one query: ares_cancel() ends every lookup of the
 * channel. So a request and its c-ares lookup are two objects. The lookup
 * (struct hk__dns_query, c-ares's callback argument) is ours and lives until
 * c-ares calls back, whatever happens to the request; the request is the
 * caller's and may be reused or freed as soon as its callback has run. When a
 * request ends first (its deadline, hk_dns_cancel), the lookup is only
 * detached from it: when c-ares answers later, the answer fills the cache and
 * nothing else.
 *
 * Callbacks never run inside c-ares, nor inside the caller's own call: c-ares
 * answers synchronously from /etc/hosts, and a callback that freed the
 * resolver there would free the channel under c-ares's feet. Every outcome
 * goes through a delivery queue that one hk_defer drains after the current
 * callback, before the loop sleeps. Each drain takes the batch queued so far;
 * what its callbacks queue (a cache hit resubmitted from a callback) waits
 * for the next round, so a callback resubmitting itself cannot hold the loop.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "dns/internal.h"
#include "loop/ext.h"

#define HK_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

void hk__dns_list_push(struct hk__dns_list *l, hk_dns_req_t *req)
{
    req->_next = NULL;
    req->_prev = l->tail;
    if (l->tail)
        l->tail->_next = req;
    else
        l->head = req;
    l->tail = req;
}

void hk__dns_list_remove(struct hk__dns_list *l, hk_dns_req_t *req)
{
    if (req->_prev)
        req->_prev->_next = req->_next;
    else
        l->head = req->_next;
    if (req->_next)
        req->_next->_prev = req->_prev;
    else
        l->tail = req->_prev;
    req->_prev = req->_next = NULL;
}

static void outcome_clear(hk_dns_req_t *req)
{
    req->result = 0;
    req->flags = 0;
    req->naddrs = 0;
    req->total = 0;
    req->ttl_s = 0;
}

static void begin(hk_resolver_t *r, hk_dns_req_t *req)
{
    req->_state = HK__DNS_PENDING;
    hk__dns_list_push(&r->pending, req);
    hk__loop_req_start(r->loop);
}

void hk__dns_complete(hk_resolver_t *r, hk_dns_req_t *req, int result)
{
    hk__dns_list_remove(&r->pending, req);
    hk__dns_heap_remove(r, req);
    if (req->_query)
        ((struct hk__dns_query *)req->_query)->req = NULL;
    req->_query = NULL;
    if (result < 0) {
        outcome_clear(req);
        req->result = result;
    }
    req->_state = HK__DNS_DONE;
    hk__dns_list_push(&r->done, req);
    hk_defer(r->loop, &r->deliver, hk__dns_on_deliver); /* -EBUSY: already queued */
}

void hk__dns_on_deliver(hk_defer_t *d)
{
    hk_resolver_t *r = HK_CONTAINER(d, hk_resolver_t, deliver);
    r->delivering = r->done;
    r->done.head = r->done.tail = NULL;
    /* A callback may free the resolver: it then delivers the rest itself, as cancelled. */
    while (!r->closing && r->delivering.head) {
        hk_dns_req_t *req = r->delivering.head;
        hk__dns_list_remove(&r->delivering, req);
        req->_state = 0;
        hk__loop_req_done(r->loop);
        req->_cb(req);
    }
}

void hk__dns_on_deadline(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    hk_resolver_t *r = t->base.data;
    uint64_t now = hk_time_now();
    while (r->heap_len > 0 && r->heap[0]->_deadline <= now) {
        r->stats.timeouts++;
        hk__dns_complete(r, r->heap[0], -ETIMEDOUT);
    }
    hk__dns_heap_sync(r);
}

void hk__dns_ares_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct hk__dns_query *q = arg;
    hk_resolver_t *r = q->r;
    if (r->closing) { /* ares_destroy in hk_resolver_free: the requests are gone already */
        ares_freeaddrinfo(res);
        free(q);
        return;
    }
    hk_dns_addr_t addrs[HK_DNS_MAX_ADDRS];
    unsigned total;
    uint32_t ttl;
    unsigned n =
        hk__dns_addrs_from_ai(res, q->family, r->order, addrs, HK_DNS_MAX_ADDRS, &total, &ttl);
    int result = hk__dns_status_errno(status);
    if (result == 0 && n == 0)
        result = -ENODATA; /* "success" with nothing usable in it */
    if (r->cache) {
        uint64_t now = hk_loop_now(r->loop);
        if (result == 0)
            hk__dns_cache_put(r->cache, q->key, q->family, 0, addrs, n, total,
                              (uint64_t)ttl * HK__NS_PER_S, now);
        else if (result == -ENOENT || result == -ENODATA)
            hk__dns_cache_put(r->cache, q->key, q->family, result, NULL, 0, 0, r->negative_ttl_ns,
                              now);
    }
    hk_dns_req_t *req = q->req;
    if (req) {
        if (result == 0) {
            memcpy(req->addrs, addrs, n * sizeof(addrs[0]));
            req->naddrs = n;
            req->total = total;
            req->ttl_s = ttl;
        }
        req->result = result;
        hk__dns_complete(r, req, result);
    } else {
        r->stats.orphans++;
    }
    ares_freeaddrinfo(res);
    free(q);
}

int hk_dns_resolve(hk_resolver_t *r, hk_dns_req_t *req, const char *host, int family,
                   uint64_t deadline_ns, hk_dns_cb cb)
{
    if (!r || !req || !host || !cb)
        return -EINVAL;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return -EINVAL;
    if (deadline_ns >= HK_DEADLINE_MAX && deadline_ns != HK_FOREVER)
        return -EINVAL;
    if (req->_state == HK__DNS_PENDING || req->_state == HK__DNS_DONE)
        return -EBUSY;
    if (r->closing)
        return -ESHUTDOWN;
    char key[HK_DNS_NAME_MAX + 1];
    if (hk__dns_name_key(host, key) < 0)
        return -EINVAL;
    int fam = family == AF_UNSPEC ? r->family : family;

    req->resolver = r;
    memmove(req->name, host, strlen(host) + 1);
    req->family = family;
    outcome_clear(req);
    req->_cb = cb;
    req->_deadline = deadline_ns;
    req->_query = NULL;
    req->_heap_index = UINT32_MAX;

    /* A literal address needs no lookup (c-ares 1.18 would still query for it). */
    int num = hk__dns_numeric(host, fam, &req->addrs[0]);
    if (num != 0) {
        r->stats.lookups++;
        r->stats.numeric++;
        begin(r, req);
        req->flags = HK_DNS_NUMERIC;
        req->naddrs = req->total = num > 0 ? 1 : 0;
        hk__dns_complete(r, req, num > 0 ? 0 : num);
        req->flags = HK_DNS_NUMERIC;
        return 0;
    }
    /*
     * RFC 6761: a localhost name is the loopback address. Answered here for
     * IPv6 because c-ares 1.18 leaks its copy of the name (ASan: 10 bytes a
     * lookup) when /etc/hosts has no "::1 localhost", then asks the servers,
     * which refuse or know nothing. A local answer like /etc/hosts's (TTL 0,
     * not cached), so HK_RESOLVER_NO_HOSTS turns it off with the file.
     */
    if (fam == AF_INET6 && !(r->flags & HK_RESOLVER_NO_HOSTS) && hk__dns_is_localhost(key)) {
        r->stats.lookups++;
        begin(r, req);
        memset(&req->addrs[0], 0, sizeof(req->addrs[0]));
        req->addrs[0].in6.sin6_family = AF_INET6;
        req->addrs[0].in6.sin6_addr = in6addr_loopback;
        req->naddrs = req->total = 1;
        hk__dns_complete(r, req, 0);
        return 0;
    }
    if (r->cache) {
        if (hk__dns_cache_get(r->cache, key, fam, hk_loop_now(r->loop), req)) {
            r->stats.lookups++;
            r->stats.cache_hits++;
            begin(r, req);
            int result = req->result;
            hk__dns_complete(r, req, result);
            req->flags = HK_DNS_CACHED;
            return 0;
        }
    }

    struct hk__dns_query *q = malloc(sizeof(*q));
    if (!q)
        return -ENOMEM;
    if (hk__dns_heap_push(r, req) < 0) {
        free(q);
        return -ENOMEM;
    }
    q->r = r;
    q->req = req;
    q->family = fam;
    memcpy(q->key, key, sizeof(key));
    req->_query = q;
    r->stats.lookups++;
    if (r->cache)
        r->stats.cache_misses++;
    r->stats.queries++;
    begin(r, req);

    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = fam;
    if (r->order != HK_DNS_ORDER_RFC6724)
        hints.ai_flags |= ARES_AI_NOSORT;
    /* May call hk__dns_ares_done before it returns (/etc/hosts, errors): it only queues. */
    ares_getaddrinfo(r->channel, host, NULL, &hints, hk__dns_ares_done, q);
    hk__dns_ares_rearm(r);
    hk__dns_heap_sync(r);
    return 0;
}

int hk_dns_cancel(hk_dns_req_t *req)
{
    if (!req)
        return -EINVAL;
    if (req->_state == HK__DNS_DONE) {
        outcome_clear(req);
        req->result = -ECANCELED;
        req->resolver->stats.cancels++;
        return 0;
    }
    if (req->_state != HK__DNS_PENDING)
        return -EALREADY;
    hk_resolver_t *r = req->resolver;
    r->stats.cancels++;
    hk__dns_complete(r, req, -ECANCELED);
    hk__dns_heap_sync(r);
    return 0;
}
