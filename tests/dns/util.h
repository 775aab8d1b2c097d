/* Helpers shared by the dns tests: a loop, a resolver, a dnsmasq, callbacks that record. */
#ifndef HK_TEST_DNS_UTIL_H
#define HK_TEST_DNS_UTIL_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dnsmasq.h"
#include "hark.h"

#define MS (UINT64_C(1000) * 1000)
#define SEC (UINT64_C(1000) * MS)

/* The names the test server knows; everything else under hark.test is NXDOMAIN. */
#define TEST_HOSTS                                                                                 \
    "10.1.2.3 a4.hark.test\n"                                                                      \
    "fd00::1234 a6.hark.test\n"                                                                    \
    "10.1.2.4 both.hark.test\n"                                                                    \
    "fd00::5 both.hark.test\n"                                                                     \
    "10.0.0.1 many.hark.test\n"                                                                    \
    "10.0.0.2 many.hark.test\n"                                                                    \
    "10.0.0.3 many.hark.test\n"

struct fx {
    hk_loop_t *loop;
    hk_resolver_t *r;
    struct dnsmasq dns;
    int blackhole;
};

/* What a callback saw. */
struct got {
    int calls;
    int result;
    unsigned naddrs, flags;
    uint32_t ttl_s;
    uint64_t at; /* hk_time_now() in the callback */
    hk_dns_addr_t addrs[HK_DNS_MAX_ADDRS];
};

static inline void on_got(hk_dns_req_t *req)
{
    struct got *g = req->data;
    g->calls++;
    g->result = req->result;
    g->naddrs = req->naddrs;
    g->flags = req->flags;
    g->ttl_s = req->ttl_s;
    g->at = hk_time_now();
    memcpy(g->addrs, req->addrs, sizeof(g->addrs));
}

static inline void fx_loop(struct fx *fx)
{
    memset(fx, 0, sizeof(*fx));
    fx->dns.pid = -1;
    fx->blackhole = -1;
    cr_assert_eq(hk_loop_new(&fx->loop, 0), 0);
}

/* A loop and a dnsmasq (local TTL ttl_s) with a resolver pointed at it; o may be NULL. */
static inline void fx_setup(struct fx *fx, unsigned ttl_s, hk_resolver_options_t *o)
{
    fx_loop(fx);
    cr_assert_eq(dnsmasq_start(&fx->dns, TEST_HOSTS, ttl_s), 0, "dnsmasq did not start");
    hk_resolver_options_t def = {0};
    if (!o)
        o = &def;
    o->servers = fx->dns.servers;
    o->flags |= HK_RESOLVER_NO_SEARCH;
    int rc = hk_resolver_new(fx->loop, o, &fx->r);
    cr_assert_eq(rc, 0, "%s", hk_strerror(rc));
}

/* A loop and a resolver whose only server never answers. */
static inline void fx_setup_blackhole(struct fx *fx, hk_resolver_options_t *o)
{
    fx_loop(fx);
    char servers[64];
    fx->blackhole = blackhole_open(servers, sizeof(servers));
    cr_assert_geq(fx->blackhole, 0);
    o->servers = servers;
    int rc = hk_resolver_new(fx->loop, o, &fx->r);
    cr_assert_eq(rc, 0, "%s", hk_strerror(rc));
}

/* Frees the resolver (if any), checks the loop can be freed, stops the server. */
static inline void fx_teardown(struct fx *fx)
{
    if (fx->r)
        cr_assert_eq(hk_resolver_free(fx->r), 0);
    fx->r = NULL;
    if (fx->loop) {
        hk_loop_run(fx->loop, HK_RUN_NOWAIT); /* close callbacks of the resolver's handles */
        cr_assert_eq(hk_loop_free(fx->loop), 0);
        fx->loop = NULL;
    }
    dnsmasq_stop(&fx->dns);
    if (fx->blackhole >= 0)
        close(fx->blackhole);
    fx->blackhole = -1;
}

static inline void fx_wait(struct fx *fx, const struct got *g)
{
    while (g->calls == 0) {
        int rc = hk_loop_run(fx->loop, HK_RUN_ONCE);
        cr_assert_geq(rc, 0, "%s", hk_strerror(rc));
    }
}

/* Resolves and waits; returns what the callback saw. */
static inline struct got fx_resolve(struct fx *fx, const char *name, int family)
{
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    int rc = hk_dns_resolve(fx->r, &req, name, family, hk_time_now() + 5 * SEC, on_got);
    cr_assert_eq(rc, 0, "%s", hk_strerror(rc));
    fx_wait(fx, &g);
    cr_assert_eq(g.calls, 1);
    return g;
}

static inline int addr_is(const hk_dns_addr_t *a, const char *text)
{
    char buf[INET6_ADDRSTRLEN];
    const void *p = a->sa.sa_family == AF_INET ? (const void *)&a->in.sin_addr
                                               : (const void *)&a->in6.sin6_addr;
    if (!inet_ntop(a->sa.sa_family, p, buf, sizeof(buf)))
        return 0;
    return strcmp(buf, text) == 0;
}

static inline int has_addr(const struct got *g, const char *text)
{
    for (unsigned i = 0; i < g->naddrs; i++)
        if (addr_is(&g->addrs[i], text))
            return 1;
    return 0;
}

#endif
