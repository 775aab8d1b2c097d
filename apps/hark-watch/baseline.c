/*
 * Baselines and the alert rule.
 *
 * Why Chebyshev and not a z-score: interest-list sizes are counts that are
 * skewed and often multi-modal (a server idles with 3 sockets, peaks with
 * 300). A "3 sigma" rule promises 0.27 % false positives only for a normal
 * distribution; Chebyshev promises alpha for any distribution with finite
 * variance, with k = 1/sqrt(alpha). The one-sided rule (only growth alerts)
 * is tighter still. Two guards: a warm-up (no verdict from a handful of
 * samples, whose variance estimate is worthless) and an absolute floor (a
 * baseline of zeros has sigma 0, and one socket must not alert).
 *
 * Why samples that alert are learned too: keeping them out looks safer (a
 * compromised process cannot teach the detector its new behaviour) but biases
 * the estimate low, and then Chebyshev's promise is void: a rare but normal
 * mode that the warm-up happened not to see alerts forever (measured in
 * tests/apps/hark-watch/test_watch_baseline.c: 0.36 % alerts for alpha 0.1 %
 * with exclusion; about none with inclusion). The price: after its first
 * alert, a persistent anomaly widens its executable's baseline; the alert has
 * been raised by then, and the daemon does not repeat it while the process
 * stays flagged. Samples of one scan are gathered in a pending accumulator and merged at the
 * end of the scan (Chan's merge), so every process of a scan is judged
 * against the same baseline, whatever the order of /proc.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"

int baseline_init(baseline_t *b, double alpha, double floor, uint64_t warmup)
{
    double k;
    if (hk_stats_chebyshev_k(alpha, &k) < 0 || !(floor >= 0))
        return -EINVAL;
    memset(b, 0, sizeof *b);
    b->alpha = alpha;
    b->k = k;
    b->floor = floor;
    b->warmup = warmup;
    return 0;
}

void baseline_free(baseline_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i].exe);
    free(b->v);
    free(b->index);
    b->v = NULL;
    b->index = NULL;
    b->n = b->cap = b->icap = 0;
}

static uint64_t hash(const char *s, int cls)
{
    uint64_t h = 1469598103934665603u ^ (uint64_t)cls;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211u;
    return h;
}

static uint32_t *slot(const baseline_t *b, const char *exe, int cls)
{
    size_t mask = b->icap - 1;
    for (size_t i = hash(exe, cls) & mask;; i = (i + 1) & mask) {
        uint32_t *s = &b->index[i];
        if (!*s)
            return s;
        const bl_entry_t *e = &b->v[*s - 1];
        if (e->cls == cls && !strcmp(e->exe, exe))
            return s;
    }
}

static int rehash(baseline_t *b, size_t icap)
{
    uint32_t *idx = calloc(icap, sizeof *idx);
    if (!idx)
        return -ENOMEM;
    free(b->index);
    b->index = idx;
    b->icap = icap;
    for (size_t i = 0; i < b->n; i++)
        *slot(b, b->v[i].exe, b->v[i].cls) = (uint32_t)i + 1;
    return 0;
}

bl_entry_t *baseline_get(baseline_t *b, const char *exe, int cls, int create)
{
    if (b->icap) {
        uint32_t *s = slot(b, exe, cls);
        if (*s)
            return &b->v[*s - 1];
    }
    if (!create)
        return NULL;
    if ((b->n + 1) * 2 > b->icap && rehash(b, b->icap ? b->icap * 2 : 64) < 0)
        return NULL;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        bl_entry_t *v = realloc(b->v, cap * sizeof *v);
        if (!v)
            return NULL;
        b->v = v;
        b->cap = cap;
    }
    char *copy = strdup(exe);
    if (!copy)
        return NULL;
    bl_entry_t *e = &b->v[b->n];
    memset(e, 0, sizeof *e);
    e->exe = copy;
    e->cls = (uint8_t)cls;
    *slot(b, exe, cls) = (uint32_t)++b->n;
    return e;
}

void baseline_judge(const baseline_t *b, const bl_entry_t *e, double x, verdict_t *v)
{
    v->mean = hk_stats_welford_mean(&e->w);
    v->sd = hk_stats_welford_stddev(&e->w);
    v->threshold = v->mean + b->k * v->sd;
    if (v->threshold < v->mean + b->floor)
        v->threshold = v->mean + b->floor;
    v->samples = e->w.n;
    v->warming = e->w.n < b->warmup;
    /* x >= mean + floor and x > mean + k sd, folded into one threshold. */
    v->alert = !v->warming && x > v->mean + b->k * v->sd && x >= v->mean + b->floor;
}

void baseline_observe(bl_entry_t *e, double x)
{
    hk_stats_welford_add(&e->pending, x);
}

void baseline_commit(baseline_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        hk_stats_welford_merge(&b->v[i].w, &b->v[i].pending);
        hk_stats_welford_init(&b->v[i].pending);
    }
}
