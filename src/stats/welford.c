/*
 * Welford's online mean and variance, and Chan's merge of two accumulators.
 *
 * Why not sum and sum of squares: var = (sum(x^2) - n mean^2) / (n - 1)
 * subtracts two large, nearly equal numbers; with counts around 1e6 and small
 * spread the result loses every significant digit, even goes negative. Welford
 * updates the mean and the sum of squared deviations (m2) incrementally, each
 * step well conditioned. The merge formula (Chan, Golub, LeVeque 1979) gives
 * exactly the accumulator of the concatenated streams, up to rounding, so a
 * detector can summarise one scan and fold it into a long-lived baseline.
 */
#include <errno.h>
#include <math.h>

#include "hark/stats.h"

void hk_stats_welford_init(hk_welford_t *w)
{
    w->n = 0;
    w->mean = 0.0;
    w->m2 = 0.0;
}

int hk_stats_welford_add(hk_welford_t *w, double x)
{
    if (!isfinite(x))
        return -EINVAL;
    w->n++;
    double n = (double)w->n;
    double delta = x - w->mean;
    if (isfinite(delta))
        w->mean += delta / n;
    else /* |x - mean| overflows (samples of opposite sign near DBL_MAX): scale first */
        w->mean += x / n - w->mean / n;
    w->m2 += delta * (x - w->mean); /* same sign as delta^2: may overflow to +inf, never < 0 */
    return 0;
}

void hk_stats_welford_merge(hk_welford_t *dst, const hk_welford_t *src)
{
    if (src->n == 0)
        return;
    if (dst->n == 0) {
        *dst = *src;
        return;
    }
    hk_welford_t a = *dst, b = *src; /* src may alias dst */
    double n = (double)a.n + (double)b.n;
    double delta = b.mean - a.mean;
    dst->n = a.n + b.n;
    dst->mean = a.mean + delta * ((double)b.n / n);
    dst->m2 = a.m2 + b.m2 + delta * delta * ((double)a.n * (double)b.n / n);
}

int hk_stats_welford_set(hk_welford_t *w, uint64_t n, double mean, double m2)
{
    if (!isfinite(mean) || !isfinite(m2) || m2 < 0.0)
        return -EINVAL;
    if (n == 0 && (mean != 0.0 || m2 != 0.0))
        return -EINVAL;
    w->n = n;
    w->mean = mean;
    w->m2 = m2;
    return 0;
}

double hk_stats_welford_mean(const hk_welford_t *w)
{
    return w->n ? w->mean : 0.0;
}

double hk_stats_welford_variance(const hk_welford_t *w)
{
    return w->n > 1 ? w->m2 / (double)(w->n - 1) : 0.0;
}

double hk_stats_welford_pvariance(const hk_welford_t *w)
{
    return w->n ? w->m2 / (double)w->n : 0.0;
}

double hk_stats_welford_stddev(const hk_welford_t *w)
{
    return hk_stats_sqrt(hk_stats_welford_variance(w));
}
