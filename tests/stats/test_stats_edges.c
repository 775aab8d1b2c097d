/*
 * Welford at the edges of double range: hk_stats_welford_add takes any finite
 * sample, so the accumulator must stay meaningful for finite samples whose
 * difference overflows. m2 is a sum of squares: never negative.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <hark.h>
#include <math.h>

Test(welford_edges, opposite_extremes_give_mean_zero_and_a_nonnegative_m2)
{
    hk_welford_t w = {0};
    cr_assert_eq(hk_stats_welford_add(&w, DBL_MAX), 0);
    cr_assert_eq(hk_stats_welford_add(&w, -DBL_MAX), 0);
    /* The mean of {DBL_MAX, -DBL_MAX} is 0, which a double represents exactly. */
    cr_expect_eq(hk_stats_welford_mean(&w), 0.0, "mean %g", hk_stats_welford_mean(&w));
    /* A sum of squared deviations cannot be negative (it may overflow to +inf). */
    cr_expect(!(w.m2 < 0.0), "m2 %g", w.m2);
    cr_expect(!(hk_stats_welford_variance(&w) < 0.0), "variance %g", hk_stats_welford_variance(&w));
    cr_expect(!isnan(hk_stats_welford_stddev(&w)), "stddev %g", hk_stats_welford_stddev(&w));
}
