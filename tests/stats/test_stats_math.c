/*
 * stats: Welford against a two-pass reference on awkward data (large offset,
 * tiny spread), merge equals the concatenated stream in any split, state
 * round trip and validation, Chebyshev's k, and the libm-free square root.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "hark/stats.h"

static void two_pass(const double *x, size_t n, double *mean, double *var)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    double q = 0;
    for (size_t i = 0; i < n; i++)
        q += (x[i] - *mean) * (x[i] - *mean);
    *var = q / (double)(n - 1);
}

Test(welford, empty_and_single)
{
    hk_welford_t w = {0};
    cr_assert_eq(hk_stats_welford_mean(&w), 0.0);
    cr_assert_eq(hk_stats_welford_variance(&w), 0.0);
    cr_assert_eq(hk_stats_welford_pvariance(&w), 0.0);
    cr_assert_eq(hk_stats_welford_add(&w, 5.0), 0);
    cr_assert_eq(w.n, 1);
    cr_assert_eq(hk_stats_welford_mean(&w), 5.0);
    cr_assert_eq(hk_stats_welford_variance(&w), 0.0);
    cr_assert_eq(hk_stats_welford_add(&w, NAN), -EINVAL);
    cr_assert_eq(hk_stats_welford_add(&w, INFINITY), -EINVAL);
    cr_assert_eq(w.n, 1, "a rejected sample changes nothing");
    hk_stats_welford_init(&w);
    cr_assert_eq(w.n, 0);
}

Test(welford, matches_two_pass_with_large_offset)
{
    enum { N = 100000 };
    static double x[N];
    srand(7);
    hk_welford_t w = {0};
    for (int i = 0; i < N; i++) {
        x[i] = 1e9 + (double)(rand() % 1000) / 100.0;
        cr_assert_eq(hk_stats_welford_add(&w, x[i]), 0);
    }
    double mean, var;
    two_pass(x, N, &mean, &var);
    cr_assert_float_eq(hk_stats_welford_mean(&w), mean, 1e-4);
    cr_assert_float_eq(hk_stats_welford_variance(&w), var, var * 1e-6);
    cr_assert_float_eq(hk_stats_welford_stddev(&w), sqrt(var), sqrt(var) * 1e-6);
}

Test(welford, merge_equals_concatenation)
{
    enum { N = 1000 };
    double x[N];
    srand(11);
    for (int i = 0; i < N; i++)
        x[i] = (double)(rand() % 97) - 30.0;
    hk_welford_t all = {0};
    for (int i = 0; i < N; i++)
        hk_stats_welford_add(&all, x[i]);
    for (int split = 0; split <= N; split += 37) {
        hk_welford_t a = {0}, b = {0};
        for (int i = 0; i < split; i++)
            hk_stats_welford_add(&a, x[i]);
        for (int i = split; i < N; i++)
            hk_stats_welford_add(&b, x[i]);
        hk_stats_welford_merge(&a, &b);
        cr_assert_eq(a.n, all.n);
        cr_assert_float_eq(a.mean, all.mean, 1e-9);
        cr_assert_float_eq(a.m2, all.m2, all.m2 * 1e-9);
    }
    /* Merging with itself doubles the samples, keeps the mean. */
    hk_welford_t self = all;
    hk_stats_welford_merge(&self, &self);
    cr_assert_eq(self.n, 2 * all.n);
    cr_assert_float_eq(self.mean, all.mean, 1e-9);
    cr_assert_float_eq(self.m2, 2 * all.m2, all.m2 * 1e-9);
    /* Empty on either side. */
    hk_welford_t e = {0}, c = all;
    hk_stats_welford_merge(&c, &e);
    cr_assert_eq(c.n, all.n);
    hk_stats_welford_merge(&e, &all);
    cr_assert_eq(e.n, all.n);
    cr_assert_eq(e.mean, all.mean);
}

Test(welford, set_validates)
{
    hk_welford_t w = {0};
    cr_assert_eq(hk_stats_welford_set(&w, 10, 2.5, 4.0), 0);
    cr_assert_eq(w.n, 10);
    cr_assert_eq(hk_stats_welford_set(&w, 3, NAN, 1.0), -EINVAL);
    cr_assert_eq(hk_stats_welford_set(&w, 3, 1.0, -1.0), -EINVAL);
    cr_assert_eq(hk_stats_welford_set(&w, 0, 1.0, 0.0), -EINVAL);
    cr_assert_eq(hk_stats_welford_set(&w, 3, 1.0, INFINITY), -EINVAL);
    cr_assert_eq(w.n, 10, "a failed set changes nothing");
    cr_assert_eq(w.mean, 2.5);
}

Test(chebyshev, k_and_alpha)
{
    double k = 0;
    cr_assert_eq(hk_stats_chebyshev_k(0.01, &k), 0);
    cr_assert_float_eq(k, 10.0, 1e-12);
    cr_assert_eq(hk_stats_chebyshev_k(0.001, &k), 0);
    cr_assert_float_eq(k, 31.6227766016838, 1e-9);
    cr_assert_eq(hk_stats_chebyshev_k(1.0, &k), 0);
    cr_assert_float_eq(k, 1.0, 1e-15);
    k = 42;
    cr_assert_eq(hk_stats_chebyshev_k(0.0, &k), -EINVAL);
    cr_assert_eq(hk_stats_chebyshev_k(-0.5, &k), -EINVAL);
    cr_assert_eq(hk_stats_chebyshev_k(1.5, &k), -EINVAL);
    cr_assert_eq(hk_stats_chebyshev_k(NAN, &k), -EINVAL);
    cr_assert_eq(k, 42, "a failed call leaves k alone");
    cr_assert_float_eq(hk_stats_chebyshev_alpha(10.0), 0.01, 1e-15);
    cr_assert_eq(hk_stats_chebyshev_alpha(0.5), 1.0);
    cr_assert_eq(hk_stats_chebyshev_alpha(NAN), 1.0);
}

Test(chebyshev, bound_holds_for_skewed_distribution)
{
    /* Exponential-like counts: the empirical tail above mean + k sd stays under 1/k^2. */
    enum { N = 200000 };
    srand(3);
    static double x[N];
    hk_welford_t w = {0};
    for (int i = 0; i < N; i++) {
        double u = (rand() + 1.0) / ((double)RAND_MAX + 2.0);
        x[i] = floor(-log(u) * 5.0);
        hk_stats_welford_add(&w, x[i]);
    }
    double k;
    hk_stats_chebyshev_k(0.01, &k);
    double thr = w.mean + k * hk_stats_welford_stddev(&w);
    int over = 0;
    for (int i = 0; i < N; i++)
        over += x[i] > thr;
    cr_assert_leq((double)over / N, 0.01);
}

Test(sqrt, matches_libm)
{
    double xs[] = {0.0, 1.0, 2.0, 0.25, 1e-300, 3e-310, 1e300, 123456789.0, 0.001, 7.0};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
        cr_assert_float_eq(hk_stats_sqrt(xs[i]), sqrt(xs[i]), sqrt(xs[i]) * 2.3e-16,
                           "sqrt(%g): %.17g != %.17g", xs[i], hk_stats_sqrt(xs[i]), sqrt(xs[i]));
    srand(5);
    for (int i = 0; i < 100000; i++) {
        double v = (double)rand() * (double)rand() / 7.0 + (double)rand() / RAND_MAX;
        cr_assert_float_eq(hk_stats_sqrt(v), sqrt(v), sqrt(v) * 2.3e-16, "sqrt(%.17g)", v);
    }
    cr_assert(isnan(hk_stats_sqrt(-1.0)));
    cr_assert(isnan(hk_stats_sqrt(NAN)));
    cr_assert(isinf(hk_stats_sqrt(INFINITY)));
}

/* Every negative number has no real root, -infinity too (stats.h: "within one ulp of sqrt()"). */
Test(sqrt, negative_infinity_is_nan)
{
    cr_assert(isnan(sqrt(-INFINITY)));
    cr_assert(isnan(hk_stats_sqrt(-INFINITY)), "hk_stats_sqrt(-inf) = %g",
              hk_stats_sqrt(-INFINITY));
    cr_assert(isnan(hk_stats_sqrt(-DBL_MAX)));
    cr_assert(signbit(hk_stats_sqrt(-0.0)) && hk_stats_sqrt(-0.0) == 0.0, "sqrt(-0) is -0");
}
