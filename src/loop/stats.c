/*
 * Loop metrics. Counters are plain increments on the loop thread. Lag goes
 * into a log-linear histogram (4 sub-buckets per power of two, as
 * HdrHistogram does with more precision): one bit scan and one increment per
 * sample, so it can stay on. Samples are taken per due timer and once per io
 * batch, never per event, to keep the clock out of the per-event path.
 */
#include <string.h>

#include "loop/internal.h"

unsigned hk_lag_bucket(uint64_t ns)
{
    if (ns < 4)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (msb - 2)) & 3u;
    return 4u * (msb - 1u) + sub;
}

uint64_t hk_lag_bucket_max(unsigned bucket)
{
    if (bucket < 4)
        return bucket;
    if (bucket >= HK_LAG_BUCKETS - 1 - 3)
        return UINT64_MAX;
    unsigned msb = bucket / 4u + 1u;
    uint64_t sub = bucket % 4u;
    return ((4u + sub + 1u) << (msb - 2u)) - 1u;
}

void hk__lag_record(hk_loop_t *loop, uint64_t lag_ns)
{
    hk_loop_stats_t *s = &loop->stats;
    s->lag_hist[hk_lag_bucket(lag_ns)]++;
    s->lag_count++;
    s->lag_sum_ns += lag_ns;
    if (lag_ns > s->lag_max_ns)
        s->lag_max_ns = lag_ns;
}

int hk_loop_stats(const hk_loop_t *loop, hk_loop_stats_t *out)
{
    if (!loop || !out)
        return -EINVAL;
    memcpy(out, &loop->stats, sizeof *out);
    /* Batches of one are counted with one increment on the hot path. */
    out->lag_hist[0] += loop->lag_zero;
    out->lag_count += loop->lag_zero;
    return 0;
}

uint64_t hk_loop_stats_lag_quantile(const hk_loop_stats_t *stats, double q)
{
    if (!stats || stats->lag_count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)stats->lag_count + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HK_LAG_BUCKETS; b++) {
        seen += stats->lag_hist[b];
        if (seen >= rank) {
            uint64_t max = hk_lag_bucket_max(b);
            return max < stats->lag_max_ns ? max : stats->lag_max_ns;
        }
    }
    return stats->lag_max_ns;
}
