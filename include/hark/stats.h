/*
 * hark/stats.h: small, exact statistics for models and detectors.
 *
 * Welford's online algorithm keeps the count, mean and sum of squared
 * deviations of a stream in O(1) memory, one update per sample, without the
 * catastrophic cancellation of the textbook sum-of-squares formula; two
 * accumulators merge exactly (Chan et al.), so per-thread or per-scan
 * summaries combine into one. The Chebyshev helpers turn a tolerated
 * false-positive rate alpha into the k of a "mean + k sigma" threshold that
 * holds for any distribution with finite variance: P(|X - mu| >= k sigma) <=
 * 1/k^2, so k = 1/sqrt(alpha) gives at most alpha.
 *
 * Nothing here allocates, blocks or touches global state; every function is
 * thread-safe on distinct accumulators. The loop's log-linear lag histogram
 * (HK_LAG_BUCKETS, hk_lag_bucket) and its M/G/1 queue model
 * (hk_loop_queue_model) are in hark/loop.h.
 */
#ifndef HARK_STATS_H
#define HARK_STATS_H

#include "hark/api.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A Welford accumulator. Zero-initialised ({0}) is a valid empty one. */
typedef struct hk_welford {
    uint64_t n;  /* samples seen */
    double mean; /* their mean (0 when n == 0) */
    double m2;   /* sum of squared deviations from the mean */
} hk_welford_t;

/* Empties the accumulator. */
HK_API void hk_stats_welford_init(hk_welford_t *w);

/* Adds one sample. Returns 0, or -EINVAL (and changes nothing) for NaN or infinity. */
HK_API int hk_stats_welford_add(hk_welford_t *w, double x);

/* Adds the samples summarised by src to dst (dst and src may be the same). */
HK_API void hk_stats_welford_merge(hk_welford_t *dst, const hk_welford_t *src);

/*
 * Rebuilds an accumulator from stored values (a state file). Returns 0, or
 * -EINVAL when mean or m2 is not finite, m2 < 0, or n == 0 with mean or m2
 * not zero; *w is then left unchanged.
 */
HK_API int hk_stats_welford_set(hk_welford_t *w, uint64_t n, double mean, double m2);

/* The mean (0 when empty). */
HK_API double hk_stats_welford_mean(const hk_welford_t *w);

/* The sample variance m2 / (n - 1) (0 with fewer than two samples). */
HK_API double hk_stats_welford_variance(const hk_welford_t *w);

/* The population variance m2 / n (0 when empty). */
HK_API double hk_stats_welford_pvariance(const hk_welford_t *w);

/* The square root of the sample variance. */
HK_API double hk_stats_welford_stddev(const hk_welford_t *w);

/*
 * Chebyshev's k for a two-sided false-positive rate alpha in (0, 1]:
 * k = 1/sqrt(alpha). Stores it in *k and returns 0, or returns -EINVAL for
 * alpha outside (0, 1] (or NaN). One-sided use ("above mean + k sigma") is
 * conservative with the same k: its rate is at most alpha too (Cantelli's
 * inequality gives the tighter 1/(1 + k^2)).
 */
HK_API int hk_stats_chebyshev_k(double alpha, double *k);

/* Inverse: the alpha guaranteed by a given k >= 1 (1/k^2); 1 for k < 1 or NaN. */
HK_API double hk_stats_chebyshev_alpha(double k);

/* Square root without libm (libhark does not link it): within one ulp of sqrt(). */
HK_API double hk_stats_sqrt(double x);

#ifdef __cplusplus
}
#endif

#endif
