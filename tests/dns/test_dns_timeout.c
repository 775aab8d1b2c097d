/*
 * Deadlines and cancellation, against a server that never answers (a UDP
 * socket of the test that nobody reads) and against dnsmasq.
 */
#include "util.h"

static struct fx fx;

static void teardown(void)
{
    fx_teardown(&fx);
}

TestSuite(dns_timeout, .fini = teardown, .timeout = 60);

/* A 1 ms repeating timer: proof that the loop kept running while a lookup waited. */
static uint64_t ticks;

static void on_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
    ticks++;
}

Test(dns_timeout, deadline_honoured_against_a_silent_server)
{
    /* c-ares alone would wait 5 s: the request's own deadline must end it. */
    hk_resolver_options_t o = {.timeout_ms = 5000, .tries = 2};
    fx_setup_blackhole(&fx, &o);
    static hk_timer_t tick; /* closed at the end: its memory must outlive the close callback */
    hk_timer_init(fx.loop, &tick);
    hk_unref(&tick.base);
    ticks = 0;
    cr_assert_eq(hk_timer_start_in(&tick, on_tick, MS, MS), 0);

    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    uint64_t t0 = hk_time_now(), deadline = t0 + 300 * MS;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "slow.hark.test", AF_UNSPEC, deadline, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.result, -ETIMEDOUT, "%s", hk_strerror(g.result));
    cr_assert_geq(g.at, deadline, "not before the deadline");
    cr_assert_lt(g.at - deadline, 200 * MS, "late by %llu ms",
                 (unsigned long long)((g.at - deadline) / MS));
    /* 300 ticks were due; on a loaded 2-core machine under ASan, accept far fewer. */
    cr_assert_geq(ticks, 30, "the loop stalled: only %llu ticks", (unsigned long long)ticks);

    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.timeouts, 1);
    cr_assert_geq(st.sockets, 1, "the c-ares lookup goes on in the background");
    /* Nothing keeps the loop alive any more: the orphaned lookup is unreferenced. */
    cr_assert_eq(hk_loop_run(fx.loop, HK_RUN_DEFAULT), 0);
    hk_close(&tick.base, NULL);
    hk_loop_run(fx.loop, HK_RUN_NOWAIT);
}

Test(dns_timeout, c_ares_own_timeout_without_a_deadline)
{
    hk_resolver_options_t o = {.timeout_ms = 200, .tries = 1};
    fx_setup_blackhole(&fx, &o);
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    uint64_t t0 = hk_time_now();
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "slow.hark.test", AF_INET, HK_FOREVER, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, -ETIMEDOUT, "%s", hk_strerror(g.result));
    cr_assert_geq(g.at - t0, 150 * MS);
    cr_assert_lt(g.at - t0, 3 * SEC);
    hk_resolver_stats_t st;
    hk_resolver_stats(fx.r, &st);
    cr_assert_eq(st.timeouts, 0, "c-ares's timeout, not the request's deadline");
}

Test(dns_timeout, deadline_zero_tries_once)
{
    fx_setup(&fx, 60, NULL);
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    /* Needs the network: times out at once. */
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "a4.hark.test", AF_INET, 0, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, -ETIMEDOUT);
    /* A literal, /etc/hosts and a cached answer do not. */
    g.calls = 0;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "10.9.8.7", AF_INET, 0, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, 0);
    g.calls = 0;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "localhost", AF_INET, 0, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, 0);
    struct got w = fx_resolve(&fx, "both.hark.test", AF_INET);
    cr_assert_eq(w.result, 0);
    g.calls = 0;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "both.hark.test", AF_INET, 0, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, 0);
    cr_assert_eq(g.flags, HK_DNS_CACHED);
}

Test(dns_timeout, deadlines_fire_in_order)
{
    hk_resolver_options_t o = {.timeout_ms = 5000, .tries = 1};
    fx_setup_blackhole(&fx, &o);
    enum { N = 8 };
    hk_dns_req_t reqs[N];
    struct got gs[N];
    memset(gs, 0, sizeof(gs));
    uint64_t t0 = hk_time_now();
    /* Submitted in a shuffled order; deadlines 100..450 ms apart by 50 ms. */
    static const int order[N] = {5, 2, 7, 0, 3, 6, 1, 4};
    for (int k = 0; k < N; k++) {
        int i = order[k];
        reqs[i].data = &gs[i];
        char name[32];
        snprintf(name, sizeof(name), "s%d.hark.test", i);
        uint64_t d = t0 + (100 + 50 * (uint64_t)i) * MS;
        cr_assert_eq(hk_dns_resolve(fx.r, &reqs[i], name, AF_INET, d, on_got), 0);
    }
    for (int i = 0; i < N; i++)
        fx_wait(&fx, &gs[i]);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(gs[i].result, -ETIMEDOUT);
        cr_assert_geq(gs[i].at, t0 + (100 + 50 * (uint64_t)i) * MS);
        if (i > 0)
            cr_assert_geq(gs[i].at, gs[i - 1].at);
    }
}

Test(dns_timeout, cancel_a_pending_lookup)
{
    hk_resolver_options_t o = {.timeout_ms = 5000, .tries = 1};
    fx_setup_blackhole(&fx, &o);
    hk_dns_req_t a, b;
    struct got ga = {0}, gb = {0};
    a.data = &ga;
    b.data = &gb;
    cr_assert_eq(hk_dns_resolve(fx.r, &a, "x.hark.test", AF_UNSPEC, HK_FOREVER, on_got), 0);
    cr_assert_eq(hk_dns_resolve(fx.r, &b, "y.hark.test", AF_UNSPEC, HK_FOREVER, on_got), 0);
    /* Let c-ares send its queries, then cancel one of the two. */
    for (int i = 0; i < 3; i++)
        hk_loop_run(fx.loop, HK_RUN_NOWAIT);
    uint64_t t0 = hk_time_now();
    cr_assert_eq(hk_dns_cancel(&a), 0);
    cr_assert_eq(ga.calls, 0, "the callback runs later, from the loop");
    cr_assert_eq(hk_dns_cancel(&a), 0, "still in flight until its callback");
    fx_wait(&fx, &ga);
    cr_assert_eq(ga.result, -ECANCELED);
    cr_assert_lt(ga.at - t0, 100 * MS);
    cr_assert_eq(gb.calls, 0, "the other lookup is untouched");
    cr_assert_eq(hk_dns_cancel(&a), -EALREADY);
    /* The request may be reused at once, though its c-ares lookup goes on. */
    cr_assert_eq(hk_dns_resolve(fx.r, &a, "127.0.0.1", AF_INET, HK_FOREVER, on_got), 0);
    ga.calls = 0;
    fx_wait(&fx, &ga);
    cr_assert_eq(ga.result, 0);
    cr_assert_eq(hk_dns_cancel(&b), 0);
    fx_wait(&fx, &gb);
    cr_assert_eq(gb.result, -ECANCELED);
}

Test(dns_timeout, cancel_after_the_answer_arrived)
{
    fx_setup(&fx, 60, NULL);
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    /* A literal is answered at once, its callback queued: cancel still wins. */
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "10.0.0.9", AF_INET, HK_FOREVER, on_got), 0);
    cr_assert_eq(hk_dns_cancel(&req), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, -ECANCELED);
    cr_assert_eq(g.naddrs, 0);
}

Test(dns_timeout, cancelled_lookup_still_fills_the_cache)
{
    fx_setup(&fx, 60, NULL);
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    cr_assert_eq(hk_dns_resolve(fx.r, &req, "a4.hark.test", AF_INET, HK_FOREVER, on_got), 0);
    cr_assert_eq(hk_dns_cancel(&req), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, -ECANCELED);
    hk_resolver_stats_t st;
    for (int i = 0; i < 200; i++) {
        hk_resolver_stats(fx.r, &st);
        if (st.orphans)
            break;
        /* Nothing refs the loop now: poll it until the answer lands. */
        hk_loop_run(fx.loop, HK_RUN_NOWAIT);
        usleep(5000);
    }
    cr_assert_eq(st.orphans, 1);
    cr_assert_eq(st.cache_entries, 1);
    struct got g2 = fx_resolve(&fx, "a4.hark.test", AF_INET);
    cr_assert_eq(g2.result, 0);
    cr_assert_eq(g2.flags, HK_DNS_CACHED);
}

static int free_calls;
static hk_resolver_t *to_free;

static void on_got_free_again(hk_dns_req_t *req)
{
    on_got(req);
    free_calls++;
    hk_dns_req_t other = {0};
    cr_assert_eq(hk_dns_resolve(req->resolver, &other, "x", AF_INET, HK_FOREVER, on_got),
                 -ESHUTDOWN);
    cr_assert_eq(hk_resolver_free(to_free), -EALREADY);
}

Test(dns_timeout, free_cancels_everything_in_flight)
{
    hk_resolver_options_t o = {.timeout_ms = 5000, .tries = 1};
    fx_setup_blackhole(&fx, &o);
    hk_dns_req_t a, b, c;
    struct got ga = {0}, gb = {0}, gc = {0};
    a.data = &ga;
    b.data = &gb;
    c.data = &gc;
    to_free = fx.r;
    free_calls = 0;
    cr_assert_eq(hk_dns_resolve(fx.r, &a, "x.hark.test", AF_UNSPEC, HK_FOREVER, on_got_free_again),
                 0);
    cr_assert_eq(
        hk_dns_resolve(fx.r, &b, "y.hark.test", AF_INET, hk_time_now() + SEC, on_got_free_again),
        0);
    hk_loop_run(fx.loop, HK_RUN_NOWAIT);
    /* c's answer is queued, not delivered, when the resolver goes. */
    cr_assert_eq(hk_dns_resolve(fx.r, &c, "10.1.1.1", AF_INET, HK_FOREVER, on_got_free_again), 0);
    cr_assert_eq(hk_resolver_free(fx.r), 0);
    fx.r = NULL;
    cr_assert_eq(free_calls, 3, "every callback ran inside hk_resolver_free");
    cr_assert_eq(ga.result, -ECANCELED);
    cr_assert_eq(gb.result, -ECANCELED);
    cr_assert_eq(gc.result, -ECANCELED);
    hk_loop_run(fx.loop, HK_RUN_NOWAIT);
    cr_assert_eq(ga.calls + gb.calls + gc.calls, 3, "and never again");
}

static void on_got_then_free(hk_dns_req_t *req)
{
    on_got(req);
    cr_assert_eq(hk_resolver_free(req->resolver), 0);
}

Test(dns_timeout, free_from_a_callback)
{
    fx_setup(&fx, 60, NULL);
    hk_dns_req_t a, b;
    struct got ga = {0}, gb = {0};
    a.data = &ga;
    b.data = &gb;
    cr_assert_eq(hk_dns_resolve(fx.r, &a, "10.0.0.1", AF_INET, HK_FOREVER, on_got_then_free), 0);
    cr_assert_eq(hk_dns_resolve(fx.r, &b, "a4.hark.test", AF_INET, HK_FOREVER, on_got), 0);
    fx.r = NULL;
    fx_wait(&fx, &ga);
    cr_assert_eq(ga.result, 0);
    cr_assert_eq(gb.calls, 1);
    cr_assert_eq(gb.result, -ECANCELED);
}

Test(dns_timeout, closed_port_is_connection_refused)
{
    /* A port nobody listens on: the ICMP "port unreachable" ends the lookup at once. */
    hk_resolver_options_t o = {.timeout_ms = 5000, .tries = 1};
    fx_setup_blackhole(&fx, &o);
    char servers[64];
    int fd = blackhole_open(servers, sizeof(servers));
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(hk_resolver_free(fx.r), 0);
    o.servers = servers;
    cr_assert_eq(hk_resolver_new(fx.loop, &o, &fx.r), 0);
    uint64_t t0 = hk_time_now();
    struct got g = fx_resolve(&fx, "x.hark.test", AF_INET);
    cr_assert_eq(g.result, -ECONNREFUSED, "%s", hk_strerror(g.result));
    cr_assert_lt(g.at - t0, 2 * SEC, "not by a timeout");
}
