/*
 * Chebyshev's inequality as a threshold rule, and a square root that needs no
 * libm.
 *
 * Why Chebyshev: an anomaly threshold "mean + k sigma" promises a false
 * positive rate only under some distribution; with k = 3 that is 0.27 % for a
 * normal one, but interest-list sizes are counts, skewed and multi-modal.
 * Chebyshev holds for every distribution with finite variance: the
 * probability of a deviation of at least k sigma is at most 1/k^2. The price
 * is a wide threshold (alpha = 0.001 gives k = 31.6).
 *
 * Why our own square root: libhark.so links with --no-undefined and without
 * libm; a call to sqrt() can survive inlining (for errno on negative input),
 * so it would be an undefined symbol. Newton's iteration from an exponent-
 * halved first guess converges quadratically: six steps reach full double
 * precision from a guess within a factor of two (the result is within one ulp of
 * the correctly rounded root).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "hark/stats.h"

double hk_stats_sqrt(double x)
{
    /* +-0 and +inf are their own roots; every negative (-inf too) and NaN give NaN. */
    if (!(x > 0.0) || isinf(x))
        return x == 0.0 || x > 0.0 ? x : NAN;
    if (x < 0x1p-1022) /* subnormal: the exponent trick needs a normal number */
        return hk_stats_sqrt(x * 0x1p104) * 0x1p-52;
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    /* Halve the biased exponent: a guess within a factor of about 1.5. */
    bits = (bits >> 1) + (UINT64_C(1023) << 51);
    double g;
    memcpy(&g, &bits, sizeof g);
    for (int i = 0; i < 6; i++)
        g = 0.5 * (g + x / g);
    return g;
}

int hk_stats_chebyshev_k(double alpha, double *k)
{
    if (!(alpha > 0.0 && alpha <= 1.0))
        return -EINVAL;
    *k = 1.0 / hk_stats_sqrt(alpha);
    return 0;
}

double hk_stats_chebyshev_alpha(double k)
{
    if (!(k >= 1.0))
        return 1.0;
    return 1.0 / (k * k);
}
