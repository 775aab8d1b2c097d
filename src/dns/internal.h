/* Private parts of the dns module: the resolver, its cache, and the paths between files. */
#ifndef HK_DNS_INTERNAL_H
#define HK_DNS_INTERNAL_H

#include <ares.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hark/dns.h"

/*
 * A request in flight carries one of these in _state. Requests need no
 * initialisation, so "idle" is anything else: a magic number is what makes
 * -EBUSY reliable on a struct that was never zeroed.
 */
#define HK__DNS_PENDING 0x646e7331 /* waiting for c-ares; in the resolver's pending list */
#define HK__DNS_DONE 0x646e7332    /* outcome known; in the delivery queue */

#define HK__NS_PER_S UINT64_C(1000000000)

/* An intrusive FIFO of requests (through _prev/_next). */
struct hk__dns_list {
    hk_dns_req_t *head, *tail;
};

/* One c-ares lookup; c-ares's callback argument, so it lives until c-ares calls back. */
struct hk__dns_query {
    hk_resolver_t *r;
    hk_dns_req_t *req; /* NULL once the request ended without it (deadline, cancel) */
    int family;        /* the family asked of c-ares */
    char key[HK_DNS_NAME_MAX + 1];
};

/* A c-ares socket and its io watcher; freed by the watcher's close callback. */
struct hk__dns_sock {
    hk_io_t io;
    hk_resolver_t *r;
};

struct hk__dns_cache; /* cache.c */

struct hk_resolver {
    hk_loop_t *loop;
    ares_channel channel;
    unsigned flags;
    int family;
    hk_dns_order_t order;
    int closing;           /* hk_resolver_free has run */
    unsigned handles;      /* open handles (timers, socket watchers); freed when 0 after closing */
    hk_timer_t ares_timer; /* follows ares_timeout() */
    hk_timer_t deadline_timer; /* the earliest request deadline */
    hk_defer_t deliver;        /* runs the callbacks of the delivery queue */
    struct hk__dns_list pending;
    struct hk__dns_list done;       /* completed, callbacks not run yet */
    struct hk__dns_list delivering; /* the batch whose callbacks are being run */
    /* Socket watchers keyed by fd: a handful (one per server, plus TCP), so a plain array. */
    struct hk__dns_sock **socks;
    unsigned nsocks, socks_cap;
    /* Min-heap of requests with a finite deadline, by _deadline. */
    hk_dns_req_t **heap;
    uint32_t heap_len, heap_cap;
    struct hk__dns_cache *cache; /* NULL with HK_RESOLVER_NO_CACHE */
    uint64_t negative_ttl_ns;
    hk_resolver_stats_t stats;
};

/* resolver.c: the c-ares channel on the loop. */
void hk__dns_ares_rearm(hk_resolver_t *r); /* after every call into c-ares */
void hk__dns_handle_closed(hk_resolver_t *r);

/* request.c: lifetime of requests. */
void hk__dns_ares_done(void *arg, int status, int timeouts, struct ares_addrinfo *res);
void hk__dns_complete(hk_resolver_t *r, hk_dns_req_t *req, int result);
void hk__dns_on_deadline(hk_timer_t *t, uint64_t expirations);
void hk__dns_on_deliver(hk_defer_t *d);
void hk__dns_list_remove(struct hk__dns_list *l, hk_dns_req_t *req);
void hk__dns_list_push(struct hk__dns_list *l, hk_dns_req_t *req);

/* heap.c: the deadline heap. */
int hk__dns_heap_push(hk_resolver_t *r, hk_dns_req_t *req);
void hk__dns_heap_remove(hk_resolver_t *r, hk_dns_req_t *req);
void hk__dns_heap_sync(hk_resolver_t *r); /* arms deadline_timer at the top */

/*
 * result.c: what our code makes of c-ares's answers (the part the fuzzer in
 * fuzz/dns_answer.c drives). Everything in an ares_addrinfo came from a peer.
 */
int hk__dns_status_errno(int ares_status);
/* Lower-cases name into key (HK_DNS_NAME_MAX + 1 bytes); -EINVAL if empty or too long. */
int hk__dns_name_key(const char *name, char *key);
/*
 * A literal address: fills *out and returns 1, 0 if name is not one, or
 * -ENODATA if it is one of a family other than family (AF_UNSPEC takes both).
 */
int hk__dns_numeric(const char *name, int family, hk_dns_addr_t *out);
/* Whether key (lowercase) is "localhost" or a name under it, with or without the final dot. */
int hk__dns_is_localhost(const char *key);
/*
 * Copies the usable addresses of ai (of family, deduplicated, ordered by
 * order) into out[0..max), returns how many were kept, and stores the number
 * of distinct usable ones in *total and the smallest TTL (of the kept nodes
 * and the CNAME chain; negative counts as 0) in *ttl_s.
 */
unsigned hk__dns_addrs_from_ai(const struct ares_addrinfo *ai, int family, hk_dns_order_t order,
                               hk_dns_addr_t *out, unsigned max, unsigned *total, uint32_t *ttl_s);

/* cache.c: an LRU of answers keyed by (lower-cased name, family). */
struct hk__dns_cache *hk__dns_cache_new(unsigned entries, uint64_t max_ttl_ns);
void hk__dns_cache_free(struct hk__dns_cache *c);
void hk__dns_cache_clear(struct hk__dns_cache *c);
unsigned hk__dns_cache_count(const struct hk__dns_cache *c);
/*
 * Stores an answer: result 0 with n >= 1 addresses kept min(ttl, max) (not at
 * all when that is 0), or a negative result kept ttl_ns as given.
 */
void hk__dns_cache_put(struct hk__dns_cache *c, const char *key, int family, int result,
                       const hk_dns_addr_t *addrs, unsigned n, unsigned total, uint64_t ttl_ns,
                       uint64_t now);
/* Fills req's outcome (result, addrs, naddrs, total, ttl_s) and returns 1 on a live hit. */
int hk__dns_cache_get(struct hk__dns_cache *c, const char *key, int family, uint64_t now,
                      hk_dns_req_t *req);

#endif
