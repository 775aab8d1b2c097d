/*
 * Loop counters (iterations, events, callbacks, timers_fired, lag) and the
 * lag histogram helpers.
 */
#include "util.h"

static int g_io_calls;

static void io_cb(hk_io_t *io, unsigned revents)
{
    (void)io;
    (void)revents;
    g_io_calls++;
}

static int g_timer_calls;

static void timer_cb(hk_timer_t *t, uint64_t e)
{
    (void)t;
    (void)e;
    g_timer_calls++;
}

static void hook_cb(hk_hook_t *h)
{
    (void)h;
}

Test(stats, counters)
{
    hk_loop_t *loop = new_loop(0);
    hk_loop_stats_t s0 = get_stats(loop);
    cr_assert_eq(s0.iterations, 0);
    cr_assert_eq(s0.events, 0);
    cr_assert_eq(s0.callbacks, 0);
    cr_assert_eq(s0.timers_fired, 0);
    cr_assert_eq(s0.stale_events, 0);
    cr_assert_eq(s0.lag_count, 0);

    for (int i = 0; i < 5; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    hk_loop_stats_t s1 = get_stats(loop);
    cr_assert_eq(s1.iterations, 5);
    cr_assert_eq(s1.events, 0);
    cr_assert_eq(s1.callbacks, 0);

    /* io: a level-triggered readable pipe gives one event per iteration. */
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    hk_io_t io;
    cr_assert_eq(hk_io_init(loop, &io, p[0]), 0);
    cr_assert_eq(hk_io_start(&io, HK_READABLE, io_cb), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    hk_loop_stats_t s2 = get_stats(loop);
    cr_assert_eq(g_io_calls, 3);
    cr_assert_eq(s2.iterations - s1.iterations, 3);
    cr_assert_eq(s2.events - s1.events, 3);
    cr_assert_eq(s2.callbacks - s1.callbacks, 3);
    cr_assert_geq(s2.epoll_ctl_calls - s1.epoll_ctl_calls, 1, "the ADD is counted");
    cr_assert_eq(hk_io_stop(&io), 0);

    /* Timers and hooks count as callbacks too. */
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, timer_cb, 0, 0), 0);
    hk_hook_t chk;
    cr_assert_eq(hk_hook_init(loop, &chk, HK_HOOK_CHECK), 0);
    cr_assert_eq(hk_hook_start(&chk, hook_cb), 0);
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_loop_stats_t s3 = get_stats(loop);
    RUN_UNTIL(loop, &g, g_timer_calls > 0);
    hk_loop_stats_t s4 = get_stats(loop);
    uint64_t its = s4.iterations - s3.iterations;
    cr_assert_eq(s4.timers_fired - s3.timers_fired, 1);
    cr_assert_eq(s4.events - s3.events, 0, "a stopped watcher gives no events");
    cr_assert_eq(s4.callbacks - s3.callbacks, 1 + its, "one timer plus one check per iteration");
    cr_assert_geq(s4.lag_count, s3.lag_count + 1, "a fired timer is a lag sample");

    /* Sleeping is accounted. */
    cr_assert_eq(hk_hook_stop(&chk), 0);
    cr_assert_eq(hk_timer_start_in(&t, timer_cb, MS(20), 0), 0);
    RUN_UNTIL(loop, &g, g_timer_calls > 1);
    hk_loop_stats_t s5 = get_stats(loop);
    cr_assert_gt(s5.ns_asleep, s4.ns_asleep, "the loop slept for a 20 ms timer");

    /* Lag histogram consistency. */
    uint64_t sum = 0;
    for (int i = 0; i < HK_LAG_BUCKETS; i++)
        sum += s5.lag_hist[i];
    cr_assert_eq(sum, s5.lag_count);
    cr_assert_geq(s5.lag_sum_ns, s5.lag_max_ns);
    cr_assert_leq(s5.lag_max_ns, s5.lag_sum_ns);
    uint64_t q50 = hk_loop_stats_lag_quantile(&s5, 0.5);
    uint64_t q100 = hk_loop_stats_lag_quantile(&s5, 1.0);
    cr_assert_leq(q50, q100);
    cr_assert_geq(q100, s5.lag_max_ns, "q=1 bounds the largest sample");

    hk_close(&io.base, NULL);
    hk_close(&t.base, NULL);
    hk_close(&chk.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

/*
 * loop.h: for io, lag is "the time the last callback of a batch started minus
 * the time epoll_wait returned it": every batch is one sample, a batch of one
 * event included.
 */
Test(stats, io_batches_are_lag_samples)
{
    hk_loop_t *loop = new_loop(0);
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    write_byte(p[1]);
    hk_io_t a, b;
    cr_assert_eq(hk_io_init(loop, &a, p[0]), 0);
    cr_assert_eq(hk_io_start(&a, HK_READABLE, io_cb), 0);
    cr_assert_eq(hk_io_init(loop, &b, q[0]), 0);
    cr_assert_eq(hk_io_start(&b, HK_READABLE, io_cb), 0);

    hk_loop_stats_t s0 = get_stats(loop);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0); /* a batch of one */
    hk_loop_stats_t s1 = get_stats(loop);
    cr_assert_eq(s1.events - s0.events, 1);
    write_byte(q[1]);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0); /* a batch of two */
    hk_loop_stats_t s2 = get_stats(loop);
    cr_assert_eq(s2.events - s1.events, 2);
    cr_assert_eq(s2.lag_count - s1.lag_count, 1, "a batch of two events is one lag sample");
    cr_assert_eq(s1.lag_count - s0.lag_count, 1, "a batch of one event is one lag sample");

    hk_close(&a.base, NULL);
    hk_close(&b.base, NULL);
    close_pair(p);
    close_pair(q);
    finish_loop(loop);
}

static uint64_t probe_values(uint64_t *v, size_t cap)
{
    size_t n = 0;
    for (uint64_t x = 0; x < 4096 && n < cap; x++)
        v[n++] = x;
    for (int k = 12; k < 64 && n + 4 < cap; k++) {
        uint64_t p = UINT64_C(1) << k;
        v[n++] = p - 1;
        v[n++] = p;
        v[n++] = p + 1;
        v[n++] = p + p / 3;
    }
    v[n++] = UINT64_MAX - 1;
    v[n++] = UINT64_MAX;
    return n;
}

Test(stats, lag_bucket_helpers)
{
    static uint64_t v[8192];
    size_t n = probe_values(v, sizeof v / sizeof v[0] - 2);
    unsigned prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = v[i];
        unsigned b = hk_lag_bucket(x);
        cr_assert_lt(b, HK_LAG_BUCKETS, "bucket(%llu) = %u", (unsigned long long)x, b);
        cr_assert_geq(b, prev, "bucket not monotonic at %llu", (unsigned long long)x);
        prev = b;
        cr_assert_geq(hk_lag_bucket_max(b), x, "bucket_max(bucket(%llu)) = %llu",
                      (unsigned long long)x, (unsigned long long)hk_lag_bucket_max(b));
        if (b > 0)
            cr_assert_lt(hk_lag_bucket_max(b - 1), x, "%llu belongs in a lower bucket",
                         (unsigned long long)x);
        /* 4 buckets per power of two: a bucket's bound is within 25 % of its values. */
        if (x >= 1024 && x < (UINT64_C(1) << 60))
            cr_assert_leq(hk_lag_bucket_max(b), x + x / 4 + 1, "bucket too wide at %llu",
                          (unsigned long long)x);
    }
    for (unsigned b = 1; b < HK_LAG_BUCKETS; b++)
        cr_assert_geq(hk_lag_bucket_max(b), hk_lag_bucket_max(b - 1));
    cr_assert_eq(hk_lag_bucket(0), 0);
}

Test(stats, quantiles)
{
    hk_loop_stats_t st;
    memset(&st, 0, sizeof st);
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 0.0), 0);
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 0.5), 0);
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 1.0), 0);

    /* 90 samples of 1 us and 10 of 1 ms. */
    unsigned b1 = hk_lag_bucket(1000), b2 = hk_lag_bucket(1000000);
    st.lag_hist[b1] = 90;
    st.lag_hist[b2] = 10;
    st.lag_count = 100;
    st.lag_sum_ns = 90 * 1000 + 10 * 1000000;
    st.lag_max_ns = 1000000;
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 0.5), hk_lag_bucket_max(b1));
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 0.8), hk_lag_bucket_max(b1));
    /* An upper bound: the bucket's bound, or the largest sample if that is lower. */
    uint64_t top = hk_lag_bucket_max(b2) < st.lag_max_ns ? hk_lag_bucket_max(b2) : st.lag_max_ns;
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 0.99), top);
    cr_assert_eq(hk_loop_stats_lag_quantile(&st, 1.0), top);
    cr_assert_geq(hk_loop_stats_lag_quantile(&st, 1.0), st.lag_max_ns);
    uint64_t prev = 0;
    for (int i = 0; i <= 100; i++) {
        uint64_t q = hk_loop_stats_lag_quantile(&st, i / 100.0);
        cr_assert_geq(q, prev, "quantile not monotonic at %d %%", i);
        prev = q;
    }
}
