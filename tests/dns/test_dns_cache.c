/*
 * The answer cache: hits counted, TTLs honoured (dnsmasq's --local-ttl=1),
 * the max-TTL cap, negative caching of NXDOMAIN/NODATA, LRU eviction.
 */
#include "dns/internal.h"
#include "support/turkish_locale.h"
#include "util.h"

static struct fx fx;

static void teardown(void)
{
    fx_teardown(&fx);
}

TestSuite(dns_cache, .fini = teardown, .timeout = 60);

static hk_resolver_stats_t stats(void)
{
    hk_resolver_stats_t st;
    cr_assert_eq(hk_resolver_stats(fx.r, &st), 0);
    return st;
}

/* Sleeps while the loop is idle (nothing to run): the cache goes by the loop's time. */
static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000);
    hk_loop_update_time(fx.loop);
}

Test(dns_cache, second_lookup_is_served_from_the_cache)
{
    fx_setup(&fx, 60, NULL);
    struct got g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.result, 0);
    cr_assert_eq(g.flags, 0);
    cr_assert_eq(stats().queries, 1);
    cr_assert_eq(stats().cache_entries, 1);

    struct got h = fx_resolve(&fx, "BOTH.hark.test", AF_UNSPEC);
    cr_assert_eq(h.result, 0);
    cr_assert_eq(h.flags, HK_DNS_CACHED);
    cr_assert_eq(h.naddrs, 2);
    cr_assert(has_addr(&h, "10.1.2.4") && has_addr(&h, "fd00::5"));
    cr_assert_leq(h.ttl_s, 60);
    cr_assert_geq(h.ttl_s, 59);
    hk_resolver_stats_t st = stats();
    cr_assert_eq(st.queries, 1, "no second query");
    cr_assert_eq(st.cache_hits, 1);
    cr_assert_eq(st.cache_misses, 1);

    /* Keyed by family too: AF_INET is another entry. */
    g = fx_resolve(&fx, "both.hark.test", AF_INET);
    cr_assert_eq(g.flags, 0);
    cr_assert_eq(g.naddrs, 1);
    cr_assert_eq(stats().queries, 2);

    hk_resolver_cache_clear(fx.r);
    cr_assert_eq(stats().cache_entries, 0);
    g = fx_resolve(&fx, "both.hark.test", AF_UNSPEC);
    cr_assert_eq(g.flags, 0);
    cr_assert_eq(stats().queries, 3);
}

Test(dns_cache, entries_expire_with_their_ttl)
{
    fx_setup(&fx, 1, NULL);
    struct got g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.result, 0);
    cr_assert_eq(g.ttl_s, 1);
    g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.flags, HK_DNS_CACHED, "within the TTL");
    cr_assert_eq(g.ttl_s, 1);
    sleep_ms(1100);
    g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.result, 0);
    cr_assert_eq(g.flags, 0, "expired: asked again");
    cr_assert_eq(stats().queries, 2);
}

Test(dns_cache, max_ttl_caps_long_ttls)
{
    hk_resolver_options_t o = {.cache_max_ttl_s = 1};
    fx_setup(&fx, 3600, &o);
    struct got g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.ttl_s, 3600, "the answer's own TTL is reported");
    g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.flags, HK_DNS_CACHED);
    cr_assert_eq(g.ttl_s, 1, "kept for the cap only");
    sleep_ms(1100);
    g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.flags, 0);
}

Test(dns_cache, nxdomain_and_nodata_are_cached_briefly)
{
    hk_resolver_options_t o = {.negative_ttl_s = 1};
    fx_setup(&fx, 60, &o);
    struct got g = fx_resolve(&fx, "nope.hark.test", AF_INET);
    cr_assert_eq(g.result, -ENOENT);
    g = fx_resolve(&fx, "nope.hark.test", AF_INET);
    cr_assert_eq(g.result, -ENOENT);
    cr_assert_eq(g.flags, HK_DNS_CACHED);
    g = fx_resolve(&fx, "a4.hark.test", AF_INET6);
    cr_assert_eq(g.result, -ENODATA);
    g = fx_resolve(&fx, "a4.hark.test", AF_INET6);
    cr_assert_eq(g.result, -ENODATA);
    cr_assert_eq(g.flags, HK_DNS_CACHED);
    cr_assert_eq(stats().queries, 2);
    sleep_ms(1100);
    g = fx_resolve(&fx, "nope.hark.test", AF_INET);
    cr_assert_eq(g.result, -ENOENT);
    cr_assert_eq(g.flags, 0);
    cr_assert_eq(stats().queries, 3);
}

Test(dns_cache, timeouts_are_not_cached)
{
    hk_resolver_options_t o = {.timeout_ms = 100, .tries = 1};
    fx_setup_blackhole(&fx, &o);
    struct got g = fx_resolve(&fx, "t.hark.test", AF_INET);
    cr_assert_eq(g.result, -ETIMEDOUT);
    cr_assert_eq(stats().cache_entries, 0);
}

Test(dns_cache, lru_evicts_the_least_recently_used)
{
    hk_resolver_options_t o = {.cache_entries = 2};
    fx_setup(&fx, 60, &o);
    fx_resolve(&fx, "a4.hark.test", AF_INET);
    fx_resolve(&fx, "both.hark.test", AF_INET);
    fx_resolve(&fx, "a4.hark.test", AF_INET);   /* hit: a4 becomes the most recent */
    fx_resolve(&fx, "many.hark.test", AF_INET); /* evicts both */
    cr_assert_eq(stats().cache_entries, 2);
    cr_assert_eq(fx_resolve(&fx, "a4.hark.test", AF_INET).flags, HK_DNS_CACHED);
    cr_assert_eq(fx_resolve(&fx, "many.hark.test", AF_INET).flags, HK_DNS_CACHED);
    cr_assert_eq(fx_resolve(&fx, "both.hark.test", AF_INET).flags, 0);
}

Test(dns_cache, no_cache_flag)
{
    hk_resolver_options_t o = {.flags = HK_RESOLVER_NO_CACHE};
    fx_setup(&fx, 60, &o);
    fx_resolve(&fx, "a4.hark.test", AF_INET);
    struct got g = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g.flags, 0);
    cr_assert_eq(stats().queries, 2);
    cr_assert_eq(stats().cache_entries, 0);
}

/*
 * Cache keys fold ASCII only, whatever the locale: under a Turkish one,
 * tolower('I') is a dotless i, so IP.TEST used to get a key of its own
 * (a miss for a name already cached), and two names that differ only in
 * Latin-1 letters used to share one.
 */
Test(dns_cache, name_keys_fold_ascii_only_in_any_locale)
{
    char dir[] = "/tmp/hk-locale-XXXXXX";
    turkish_locale_enter(dir);
    char upper[HK_DNS_NAME_MAX + 1], latin[HK_DNS_NAME_MAX + 1];
    int r1 = hk__dns_name_key("IP.TEST", upper);
    int r2 = hk__dns_name_key("\xc9T\xc9.TEST", latin);
    turkish_locale_leave(dir);
    cr_assert_eq(r1, 0);
    cr_assert_eq(r2, 0);
    cr_assert_str_eq(upper, "ip.test");
    cr_assert_str_eq(latin, "\xc9t\xc9.test");
}
