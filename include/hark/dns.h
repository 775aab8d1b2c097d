/*
 * hark/dns.h: host name resolution on the loop, with c-ares.
 *
 * The system's getaddrinfo() blocks the calling thread for as long as the
 * name servers take (seconds when one is down), so a loop thread must never
 * call it. An hk_resolver_t drives a c-ares channel from the loop instead:
 * c-ares tells us which sockets it wants watched (io watchers of the loop)
 * and when it next needs to time something out (one loop timer), and we hand
 * readiness and expiry back to it. getaddrinfo() is never called.
 *
 * A lookup asks for A and/or AAAA records, honouring /etc/hosts (c-ares reads
 * it, per lookup, before asking the servers) and resolv.conf (servers, search
 * domains, ndots, timeout, attempts). Each request carries an absolute
 * deadline of its own and may be cancelled alone. Answers go through a small
 * LRU cache that honours their TTLs; "no such name" is cached for a short
 * time too. See docs/dns.md.
 *
 * Requests are structs the caller embeds (hk_dns_req_t); the addresses come
 * back inside it, so a lookup never hands the caller memory to free.
 *
 * Order of completion: the callback always runs later, from the loop, never
 * inside the submitting call, even for a cache hit, a literal address or an
 * /etc/hosts answer (those are queued with hk_defer and run before the loop
 * next sleeps).
 *
 * Errors: a submitting call returns 0, or -errno when the request could not
 * start (then the callback never runs). The outcome of a lookup arrives in
 * req->result in the callback:
 *   0            success: req->naddrs >= 1 addresses
 *   -ENOENT      the name does not exist (NXDOMAIN, or not found anywhere)
 *   -ENODATA     the name exists but has no address of the asked family
 *   -ETIMEDOUT   the request's deadline passed, or c-ares gave up (its own
 *                timeout and attempts, from the options or resolv.conf)
 *   -ECANCELED   hk_dns_cancel(), or hk_resolver_free() while in flight
 *   -ECONNREFUSED  no server could be used: every one refused, failed
 *                (SERVFAIL, NOTIMP: c-ares 1.18 moves on to the next server
 *                and reports this when none is left), or answered ICMP
 *                "port unreachable"
 *   -EAGAIN      a server failure reported as such (ARES_ESERVFAIL, from
 *                c-ares versions that do): try again later
 *   -EBADMSG     a malformed answer, or a server that did not understand
 *   -EINVAL      a name c-ares rejects (bad characters, empty labels)
 *   -ENOMEM, -EIO  out of memory; any other c-ares failure
 *
 * Threads: a resolver belongs to one loop; call everything on its thread.
 * After fork(), do not use a parent's resolver in the child.
 */
#ifndef HARK_DNS_H
#define HARK_DNS_H

#include "hark/api.h"
#include "hark/loop.h"

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The resolver (one per loop)                                              */
/* ------------------------------------------------------------------------ */

typedef struct hk_resolver hk_resolver_t;

/* Order of the addresses of an AF_UNSPEC answer. */
typedef enum hk_dns_order {
    HK_DNS_ORDER_RFC6724 = 0, /* c-ares's destination address selection (RFC 6724) */
    HK_DNS_ORDER_IPV4_FIRST,  /* IPv4 addresses first, each family in the servers' order */
    HK_DNS_ORDER_IPV6_FIRST,  /* IPv6 addresses first */
} hk_dns_order_t;

/* Flags of hk_resolver_options_t. */
#define HK_RESOLVER_NO_CACHE 0x1u  /* no cache: every lookup asks c-ares */
#define HK_RESOLVER_NO_HOSTS 0x2u  /* ignore /etc/hosts: ask the servers only */
#define HK_RESOLVER_NO_SEARCH 0x4u /* no resolv.conf search domains: names are absolute */

/* Defaults of the cache. */
#define HK_DNS_CACHE_ENTRIES_DEFAULT 256u
#define HK_DNS_CACHE_MAX_TTL_DEFAULT 300u /* seconds */
#define HK_DNS_NEGATIVE_TTL_DEFAULT 5u    /* seconds an -ENOENT/-ENODATA answer is kept */

typedef struct hk_resolver_options {
    /*
     * Name servers replacing resolv.conf's, as c-ares's CSV syntax:
     * "127.0.0.1:5353", "192.0.2.1,[2001:db8::1]:53". NULL or "" = resolv.conf.
     */
    const char *servers;
    unsigned timeout_ms;      /* per attempt; 0 = resolv.conf's "timeout", else c-ares's default */
    unsigned tries;           /* attempts per server (at most 100); 0 = resolv.conf's or c-ares's */
    unsigned flags;           /* HK_RESOLVER_* */
    unsigned cache_entries;   /* 0 = HK_DNS_CACHE_ENTRIES_DEFAULT */
    unsigned cache_max_ttl_s; /* answers are kept min(TTL, this); 0 = ..._DEFAULT */
    unsigned negative_ttl_s;  /* 0 = HK_DNS_NEGATIVE_TTL_DEFAULT */
    /*
     * Family policy for requests made with AF_UNSPEC: AF_UNSPEC (the default)
     * asks for both A and AAAA; AF_INET or AF_INET6 asks for that one only
     * (a host without IPv6 connectivity saves a query per lookup).
     */
    int family;
    hk_dns_order_t order;
} hk_resolver_options_t;

/*
 * Creates a resolver on loop. opts may be NULL (resolv.conf, cache on, both
 * families). Reads resolv.conf and nsswitch.conf once, here (small local
 * files). Its handles are unreferenced: an idle resolver never keeps the loop
 * running; a request in flight does.
 * Errors: -EINVAL (unknown flag, family or order; servers that do not parse),
 * -ENOMEM, -EIO (c-ares could not initialise).
 */
HK_API int hk_resolver_new(hk_loop_t *loop, const hk_resolver_options_t *opts,
                           hk_resolver_t **resolverp);

/*
 * Frees the resolver. Every request in flight gets its callback, with
 * -ECANCELED, before this returns (hk_dns_resolve from those callbacks gives
 * -ESHUTDOWN). Its io watchers and timers are closed like any handle: run
 * the loop once more before hk_loop_free. Returns 0, or -EALREADY when
 * called again (from one of those callbacks).
 */
HK_API int hk_resolver_free(hk_resolver_t *resolver);

typedef struct hk_resolver_stats {
    uint64_t lookups;       /* requests accepted by hk_dns_resolve */
    uint64_t cache_hits;    /* served from the cache (negative answers included) */
    uint64_t cache_misses;  /* not in the cache (or expired): asked c-ares */
    uint64_t numeric;       /* literal addresses, answered without c-ares */
    uint64_t queries;       /* lookups started in c-ares (ares_getaddrinfo) */
    uint64_t timeouts;      /* requests ended by their own deadline */
    uint64_t cancels;       /* requests ended by hk_dns_cancel or hk_resolver_free */
    uint64_t orphans;       /* c-ares lookups finished after their request had ended */
    uint64_t watch_errors;  /* c-ares sockets the loop could not watch (they time out) */
    uint64_t cache_entries; /* entries in the cache now */
    uint64_t sockets;       /* c-ares sockets watched now */
} hk_resolver_stats_t;

HK_API int hk_resolver_stats(const hk_resolver_t *resolver, hk_resolver_stats_t *out);

/* Empties the cache. */
HK_API void hk_resolver_cache_clear(hk_resolver_t *resolver);

/* ------------------------------------------------------------------------ */
/* Lookups                                                                  */
/* ------------------------------------------------------------------------ */

/* Addresses kept per answer; more are counted in req->total but dropped. */
#define HK_DNS_MAX_ADDRS 16
/* Longest name accepted: 253 characters, plus an optional final dot. */
#define HK_DNS_NAME_MAX 254

/* One address: look at sa.sa_family. The port is 0. */
typedef union hk_dns_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} hk_dns_addr_t;

/* Bits of req->flags: where an answer came from. */
#define HK_DNS_CACHED 0x1u  /* from the cache */
#define HK_DNS_NUMERIC 0x2u /* the name was a literal IPv4 or IPv6 address (zone allowed) */

typedef struct hk_dns_req hk_dns_req_t;
typedef void (*hk_dns_cb)(hk_dns_req_t *req);

struct hk_dns_req {
    void *data;                     /* free for the caller */
    hk_resolver_t *resolver;        /* read-only */
    char name[HK_DNS_NAME_MAX + 1]; /* read-only: the name asked, as given */
    int family;                     /* read-only: AF_UNSPEC, AF_INET or AF_INET6, as given */

    /* The outcome, valid in the callback. */
    int result;      /* 0 or -errno (see the top of this file) */
    unsigned flags;  /* HK_DNS_CACHED, HK_DNS_NUMERIC */
    unsigned naddrs; /* addresses in addrs[] */
    unsigned total;  /* addresses in the answer (> naddrs when some were dropped) */
    uint32_t ttl_s;  /* smallest TTL of the answer, in seconds (what is left of it for a
                        cached answer; 0 for /etc/hosts and literal addresses) */
    hk_dns_addr_t addrs[HK_DNS_MAX_ADDRS];

    /* Private. */
    hk_dns_cb _cb;
    uint64_t _deadline;
    void *_query;
    hk_dns_req_t *_prev, *_next;
    uint32_t _heap_index;
    int _state;
};

/*
 * Resolves host to addresses of family (AF_UNSPEC for both, AF_INET,
 * AF_INET6), by the deadline deadline_ns (absolute CLOCK_MONOTONIC ns;
 * HK_FOREVER = only c-ares's own timeout and attempts; 0 or a time already
 * past = try once: the cache, a literal address or /etc/hosts can still
 * answer, anything that needs the network ends with -ETIMEDOUT). The name is
 * copied. The request needs no initialisation; it may be submitted again
 * from its callback. Errors: -EINVAL (NULL argument, empty or too long name,
 * unknown family, deadline >= HK_DEADLINE_MAX but not HK_FOREVER), -EBUSY
 * (req is in flight), -ESHUTDOWN (the resolver is being freed), -ENOMEM.
 *
 * When the deadline passes first, the callback gets -ETIMEDOUT at once; the
 * c-ares lookup cannot be stopped alone, so it goes on in the background and
 * its answer, if one comes, only fills the cache.
 */
HK_API int hk_dns_resolve(hk_resolver_t *resolver, hk_dns_req_t *req, const char *host, int family,
                          uint64_t deadline_ns, hk_dns_cb cb);

/*
 * Cancels a request in flight: its callback runs later, from the loop, with
 * -ECANCELED and no addresses (even if the answer had already arrived and
 * was waiting for its callback). Returns 0, or -EALREADY when req is not in
 * flight (never submitted, or its callback has run).
 */
HK_API int hk_dns_cancel(hk_dns_req_t *req);

/* The length of addr for connect(2) and bind(2); 0 unless AF_INET or AF_INET6. */
HK_API socklen_t hk_dns_addr_len(const hk_dns_addr_t *addr);

#ifdef __cplusplus
}
#endif

#endif
