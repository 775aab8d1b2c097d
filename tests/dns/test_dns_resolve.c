/*
 * Lookups against a real server (dnsmasq): A, AAAA, both, NXDOMAIN, NODATA;
 * /etc/hosts without any server; literal addresses; argument errors; and
 * that getaddrinfo is never called.
 */
#include <dlfcn.h>
#include <net/if.h>
#include <netdb.h>

#include "util.h"

/*
 * getaddrinfo, interposed: the real one is called (Criterion may use it), but
 * calls made while a test is counting are recorded.
 */
static int gai_counting, gai_calls;

int getaddrinfo(const char *restrict node, const char *restrict service,
                const struct addrinfo *restrict hints, struct addrinfo **restrict res)
{
    typedef int (*fn_t)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (gai_counting)
        gai_calls++;
    fn_t real = (fn_t)dlsym(RTLD_NEXT, "getaddrinfo");
    return real ? real(node, service, hints, res) : EAI_FAIL;
}

static struct fx fx;

static void setup(void)
{
    fx_setup(&fx, 60, NULL);
}

static void teardown(void)
{
    fx_teardown(&fx);
}

TestSuite(dns_resolve, .init = setup, .fini = teardown, .timeout = 30);

Test(dns_resolve, a_record)
{
    struct got g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 1);
    cr_assert(addr_is(&g.addrs[0], "10.1.2.3"));
    cr_assert_eq(g.addrs[0].in.sin_port, 0);
    cr_assert_eq(g.ttl_s, 60);
    cr_assert_eq(g.flags, 0);
    cr_assert_eq(hk_dns_addr_len(&g.addrs[0]), sizeof(struct sockaddr_in));
}

Test(dns_resolve, aaaa_record)
{
    struct got g = fx_resolve(&fx, "a6.hark.test", AF_INET6);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 1);
    cr_assert(addr_is(&g.addrs[0], "fd00::1234"));
    cr_assert_eq(hk_dns_addr_len(&g.addrs[0]), sizeof(struct sockaddr_in6));
}

Test(dns_resolve, unspec_gets_both_families)
{
    struct got g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 2);
    cr_assert(has_addr(&g, "10.1.2.4"));
    cr_assert(has_addr(&g, "fd00::5"));
    /* A name with an A record only still succeeds with AF_UNSPEC. */
    g = fx_resolve(&fx, "a4.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 1);
}

Test(dns_resolve, several_addresses)
{
    struct got g = fx_resolve(&fx, "many.hark.test", AF_INET);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 3);
    cr_assert(has_addr(&g, "10.0.0.1") && has_addr(&g, "10.0.0.2") && has_addr(&g, "10.0.0.3"));
}

Test(dns_resolve, names_are_case_insensitive)
{
    struct got g = fx_resolve(&fx, "A4.Hark.TEST", AF_INET);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert(addr_is(&g.addrs[0], "10.1.2.3"));
}

Test(dns_resolve, nxdomain_is_enoent)
{
    struct got g = fx_resolve(&fx, "nope.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, -ENOENT, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 0);
}

Test(dns_resolve, nodata_is_enodata)
{
    struct got g = fx_resolve(&fx, "a4.hark.test", AF_INET6);
    cr_assert_eq(g.result, -ENODATA, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 0);
    g = fx_resolve(&fx, "a6.hark.test", AF_INET);
    cr_assert_eq(g.result, -ENODATA, "%s", hk_strerror(g.result));
}

Test(dns_resolve, family_policy_of_the_resolver)
{
    hk_resolver_free(fx.r);
    hk_resolver_options_t o = {.family = AF_INET};
    o.servers = fx.dns.servers;
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &fx.r), 0);
    struct got g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, 0);
    cr_assert_eq(g.naddrs, 1);
    cr_assert(addr_is(&g.addrs[0], "10.1.2.4"));

    hk_resolver_free(fx.r);
    o = (hk_resolver_options_t){.order = HK_DNS_ORDER_IPV6_FIRST, .servers = fx.dns.servers};
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &fx.r), 0);
    g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.naddrs, 2);
    cr_assert_eq(g.addrs[0].sa.sa_family, AF_INET6);
    cr_assert_eq(g.addrs[1].sa.sa_family, AF_INET);

    hk_resolver_free(fx.r);
    o = (hk_resolver_options_t){.order = HK_DNS_ORDER_IPV4_FIRST, .servers = fx.dns.servers};
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &fx.r), 0);
    g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.naddrs, 2);
    cr_assert_eq(g.addrs[0].sa.sa_family, AF_INET);
    cr_assert_eq(g.addrs[1].sa.sa_family, AF_INET6);
}

Test(dns_resolve, many_lookups_at_once)
{
    enum { N = 64 };
    static hk_dns_req_t reqs[N];
    static struct got gs[N];
    const char *names[] = {"a4.hark.test", "both.hark.test", "nope.hark.test", "many.hark.test"};
    for (int i = 0; i < N; i++) {
        reqs[i].data = &gs[i];
        char name[64];
        /* Distinct names, so that the cache does not answer: every one reaches the server. */
        snprintf(name, sizeof(name), "n%d.%s", i, names[i % 4]);
        const char *q = i < 4 ? names[i] : name;
        cr_assert_eq(hk_dns_resolve(fx.r, &reqs[i], q, AF_INET, hk_time_now() + 10 * SEC, on_got),
                     0);
    }
    for (int i = 0; i < N; i++)
        fx_wait(&fx, &gs[i]);
    cr_assert_eq(gs[0].result, 0);
    cr_assert_eq(gs[1].result, 0);
    cr_assert_eq(gs[2].result, -ENOENT);
    cr_assert_eq(gs[3].naddrs, 3);
    for (int i = 4; i < N; i++) {
        cr_assert_eq(gs[i].calls, 1);
        cr_assert_eq(gs[i].result, -ENOENT, "%d: %s", i, hk_strerror(gs[i].result));
    }
    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.queries, N);
    /* The loop has nothing left to do: the resolver's handles do not keep it running. */
    cr_assert_eq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
}

Test(dns_resolve, localhost_from_etc_hosts_without_a_server)
{
    /* Any server lookup would go to a black hole and time out: /etc/hosts must answer. */
    hk_resolver_free(fx.r);
    fx.r = NULL;
    hk_resolver_options_t o = {.timeout_ms = 5000, .tries = 1};
    char servers[64];
    fx.blackhole = blackhole_open(servers, sizeof(servers));
    o.servers = servers;
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &fx.r), 0);
    uint64_t t0 = hk_time_now();
    struct got g = fx_resolve(&fx, "localhost", AF_INET);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert(has_addr(&g, "127.0.0.1"));
    cr_assert_eq(g.ttl_s, 0);
    cr_assert_lt(g.at - t0, SEC, "answered from the file, not the network");
    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.sockets, 0, "no server was asked");

    /* And with resolv.conf's servers (nothing overridden). */
    hk_resolver_free(fx.r);
    cr_assert_eq(hk_resolver_new(fx.loop, NULL, &fx.r), 0);
    g = fx_resolve(&fx, "localhost", AF_INET);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert(has_addr(&g, "127.0.0.1"));
}

Test(dns_resolve, localhost_for_ipv6)
{
    /* RFC 6761: localhost is the loopback address, also when /etc/hosts has no "::1 localhost". */
    static const char *const names[] = {"localhost", "localhost", "LocalHost.", "db.localhost"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct got g = fx_resolve(&fx, names[i], AF_INET6);
        cr_assert_eq(g.result, 0, "%s: %s", names[i], hk_strerror(g.result));
        cr_assert(has_addr(&g, "::1"), "%s", names[i]);
    }
    /* Not a name under localhost. */
    struct got g = fx_resolve(&fx, "notlocalhost", AF_INET6);
    cr_assert(g.result != 0 || !has_addr(&g, "::1"));
}

Test(dns_resolve, no_hosts_flag_skips_etc_hosts)
{
    hk_resolver_free(fx.r);
    hk_resolver_options_t o = {.flags = HK_RESOLVER_NO_HOSTS | HK_RESOLVER_NO_SEARCH};
    o.servers = fx.dns.servers;
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &fx.r), 0);
    /* dnsmasq does not know "localhost." (no --hosts, no upstream): it refuses. */
    struct got g = fx_resolve(&fx, "localhost", AF_INET);
    cr_assert_neq(g.result, 0);
}

Test(dns_resolve, literal_addresses)
{
    struct got g = fx_resolve(&fx, "192.0.2.7", AF_UNSPEC);
    cr_assert_eq(g.result, 0);
    cr_assert_eq(g.flags, HK_DNS_NUMERIC);
    cr_assert_eq(g.naddrs, 1);
    cr_assert(addr_is(&g.addrs[0], "192.0.2.7"));
    g = fx_resolve(&fx, "2001:db8::1", AF_INET6);
    cr_assert_eq(g.result, 0);
    cr_assert(addr_is(&g.addrs[0], "2001:db8::1"));
    g = fx_resolve(&fx, "192.0.2.7", AF_INET6);
    cr_assert_eq(g.result, -ENODATA);
    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.numeric, 3);
    cr_assert_eq(st.queries, 0);
}

Test(dns_resolve, link_local_literal_with_a_zone)
{
    /* "fe80::1%lo" as getaddrinfo takes it: the zone becomes the scope id, no server asked. */
    unsigned lo = if_nametoindex("lo");
    cr_assert_neq(lo, 0u);
    struct got g = fx_resolve(&fx, "fe80::1%lo", AF_UNSPEC);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.flags, HK_DNS_NUMERIC);
    cr_assert_eq(g.naddrs, 1);
    cr_assert(addr_is(&g.addrs[0], "fe80::1"));
    cr_assert_eq(g.addrs[0].in6.sin6_scope_id, lo);
    /* A numeric zone is the index itself. */
    char name[64];
    snprintf(name, sizeof(name), "fe80::2%%%u", lo);
    g = fx_resolve(&fx, name, AF_INET6);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.addrs[0].in6.sin6_scope_id, lo);
    /* No such interface: no such name, still without asking a server. */
    g = fx_resolve(&fx, "fe80::1%no-such-if9", AF_UNSPEC);
    cr_assert_eq(g.result, -ENOENT, "%s", hk_strerror(g.result));
    cr_assert_eq(g.flags, HK_DNS_NUMERIC);
    g = fx_resolve(&fx, "fe80::1%lo", AF_INET);
    cr_assert_eq(g.result, -ENODATA, "%s", hk_strerror(g.result));
    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.numeric, 4);
    cr_assert_eq(st.queries, 0);
}

Test(dns_resolve, callback_never_runs_inside_the_call)
{
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "127.0.0.1", AF_INET, HK_FOREVER, on_got), 0);
    cr_assert_eq(g.calls, 0);
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "127.0.0.1", AF_INET, HK_FOREVER, on_got), -EBUSY);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, 0);
    /* /etc/hosts answers inside ares_getaddrinfo: still later, from the loop. */
    g.calls = 0;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "localhost", AF_INET, HK_FOREVER, on_got), 0);
    cr_assert_eq(g.calls, 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, 0);
}

Test(dns_resolve, bad_arguments)
{
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    uint64_t d = HK_FOREVER;
    cr_assert_eq(hk_dns_resolve(NULL, &req, "x", AF_INET, d, on_got), -EINVAL);
    cr_assert_eq(hk_dns_resolve(fx.r, NULL, "x", AF_INET, d, on_got), -EINVAL);
    cr_assert_eq(hk_dns_resolve(fx.r, &req, NULL, AF_INET, d, on_got), -EINVAL);
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "x", AF_INET, d, NULL), -EINVAL);
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "", AF_INET, d, on_got), -EINVAL);
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "x", AF_UNIX, d, on_got), -EINVAL);
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "x", AF_INET, HK_DEADLINE_MAX, on_got), -EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_eq(hk_dns_resolve(fx.r, &req, longname, AF_INET, d, on_got), -EINVAL);
    cr_assert_eq(hk_dns_cancel(&req), -EALREADY);
    hk_loop_run(fx.loop, HK_RUN_NOWAIT);
    cr_assert_eq(g.calls, 0, "a failing call never invokes its callback");

    hk_resolver_t *r2;
    hk_resolver_options_t o = {.flags = 0x100};
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &r2), -EINVAL);
    o = (hk_resolver_options_t){.family = AF_UNIX};
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &r2), -EINVAL);
    o = (hk_resolver_options_t){.order = 7};
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &r2), -EINVAL);
    o = (hk_resolver_options_t){.servers = "not an address"};
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &r2), -EINVAL);
    cr_assert_eq(hk_resolver_new(NULL, NULL, &r2), -EINVAL);
}

/* Labels of 50 letters joined by dots, len bytes in all, then final (a letter or '.'). */
static void long_name(char *buf, size_t len, char final)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = i % 51 == 50 ? '.' : 'a';
    buf[len - 1] = final;
    buf[len] = '\0';
}

Test(dns_resolve, name_length_limit_is_253_plus_a_final_dot)
{
    /* dns.h: 253 characters, plus an optional final dot; longer is -EINVAL from the call. */
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    char name[HK_DNS_NAME_MAX + 1];
    long_name(name, 254, 'a');
    int rc = hk_dns_resolve(fx.r, &req, name, AF_INET, HK_FOREVER, on_got);
    if (rc == 0)
        fx_wait(&fx, &g);
    cr_assert_eq(rc, -EINVAL, "254 characters without a final dot: returned %d, then result %d", rc,
                 g.result);
    cr_assert_eq(g.calls, 0, "a failing call never invokes its callback");

    /* The longest names accepted go to the server (which refuses them: not in hark.test). */
    long_name(name, 254, '.');
    g = fx_resolve(&fx, name, AF_INET);
    cr_assert_neq(g.result, -EINVAL, "253 characters and a final dot is a valid name");
    long_name(name, 253, 'a');
    g = fx_resolve(&fx, name, AF_INET);
    cr_assert_neq(g.result, -EINVAL, "253 characters is a valid name");
}

Test(dns_resolve, getaddrinfo_is_never_called)
{
    gai_counting = 1;
    struct got g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, 0);
    g = fx_resolve(&fx, "localhost", AF_UNSPEC);
    cr_assert_eq(g.result, 0);
    g = fx_resolve(&fx, "nope.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, -ENOENT);
    gai_counting = 0;
    cr_assert_eq(gai_calls, 0);
}

static int chain_left;

static void on_chain(hk_dns_req_t *req)
{
    struct got *g = req->data;
    on_got(req);
    cr_assert_eq(req->result, 0);
    if (--chain_left > 0) {
        /* The request is idle in its own callback: it may be submitted again. */
        int rc = hk_dns_resolve(req->resolver, req, req->name, AF_INET, HK_FOREVER, on_chain);
        cr_assert_eq(rc, 0, "%s", hk_strerror(rc));
        g->calls = 0;
    }
}

Test(dns_resolve, resubmit_from_callback)
{
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    chain_left = 5;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "a4.hark.test", AF_INET, HK_FOREVER, on_chain), 0);
    while (chain_left > 0)
        cr_assert_geq(hk_loop_run(fx.loop, HK_RUN_ONCE), 0);
    cr_assert_eq(g.result, 0);
    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.lookups, 5);
    cr_assert_eq(st.queries, 1, "the other four came from the cache");
    cr_assert_eq(st.cache_hits, 4);
}
