/*
 * bench/log: what one log call costs the calling thread.
 *
 * Method: each call is timed alone with the TSC (lfence; rdtsc before and
 * rdtscp; lfence after), minus the cost of an empty timed region measured the
 * same way, converted to ns with the TSC rate calibrated against
 * CLOCK_MONOTONIC. Per-call timing (not batch averages) is what shows a p99:
 * the rare call that hits a write(2) or a page fault. Calls come in rounds of
 * ROUND; between rounds the loggers get to flush (hark_log_flush, fflush),
 * outside the timed regions, so hark's ring never overflows (dropped=0 is
 * checked and printed) and we measure the call, not the drop path.
 *
 * Systems, same message ("bench" with two integers), same file system:
 *   hark              hk_log(HK_LOG_INFO, "bench", "a=%d b=%d", i, j) into a file sink
 *   fprintf           fprintf of the same line with a timestamp, line-buffered:
 *                     every call ends in write(2), as a synchronous logger does
 *   fprintf-buffered  the same with a 64 KiB stdio buffer (a write every ~1000 calls;
 *                     not a logger: a crash loses the buffer)
 *
 * Output: one line per system, `log system=<who> calls= p50_ns= p99_ns= p999_ns=
 * mean_ns= dropped=`.
 */
#include <hark.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

enum { ROUND = 2000, ROUNDS = 200, WARM = 20 };

static double ns_per_tick;
static uint64_t overhead_ticks;

static inline uint64_t t_begin(void)
{
    _mm_lfence();
    return __rdtsc();
}

static inline uint64_t t_end(void)
{
    unsigned aux;
    uint64_t t = __rdtscp(&aux);
    _mm_lfence();
    return t;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void calibrate(void)
{
    uint64_t n0 = mono_ns(), c0 = __rdtsc();
    while (mono_ns() - n0 < 200 * 1000 * 1000)
        ;
    uint64_t n1 = mono_ns(), c1 = __rdtsc();
    ns_per_tick = (double)(n1 - n0) / (double)(c1 - c0);
    uint64_t s[10001];
    for (int i = 0; i < 10001; i++) {
        uint64_t a = t_begin();
        uint64_t b = t_end();
        s[i] = b - a;
    }
    qsort(s, 10001, sizeof s[0], cmp_u64);
    overhead_ticks = s[5000];
}

typedef struct result {
    uint64_t *ticks;
    size_t n;
} result_t;

static void report(const char *system, result_t *r, uint64_t dropped)
{
    qsort(r->ticks, r->n, sizeof r->ticks[0], cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < r->n; i++)
        sum += (double)r->ticks[i];
    double q[3] = {0.5, 0.99, 0.999};
    double v[3];
    for (int i = 0; i < 3; i++)
        v[i] = (double)r->ticks[(size_t)(q[i] * (double)(r->n - 1))] * ns_per_tick;
    printf("log system=%s calls=%zu p50_ns=%.0f p99_ns=%.0f p999_ns=%.0f mean_ns=%.0f "
           "dropped=%" PRIu64 "\n",
           system, r->n, v[0], v[1], v[2], sum / (double)r->n * ns_per_tick, dropped);
    fflush(stdout);
}

static inline uint64_t sub_overhead(uint64_t t)
{
    return t > overhead_ticks ? t - overhead_ticks : 0;
}

static void run_hark(const char *dir, result_t *r)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench-log-hark.log", dir);
    hk_log_options_t o = {0};
    o.path = path;
    o.ring_bytes = 8u << 20;
    if (hk_log_open(&o) < 0) {
        fprintf(stderr, "bench-log: hk_log_open %s failed\n", path);
        exit(1);
    }
    hk_log_stats_t s0, s1;
    hk_log_stats(&s0);
    r->n = 0;
    for (int round = 0; round < WARM + ROUNDS; round++) {
        for (int i = 0; i < ROUND; i++) {
            uint64_t a = t_begin();
            hk_log(HK_LOG_INFO, "bench", "a=%d b=%d", i, round);
            uint64_t b = t_end();
            if (round >= WARM)
                r->ticks[r->n++] = sub_overhead(b - a);
        }
        hk_log_flush(UINT64_C(5) * 1000 * 1000 * 1000);
    }
    hk_log_stats(&s1);
    hk_log_close(UINT64_C(5) * 1000 * 1000 * 1000);
    unlink(path);
    report("hark", r, s1.dropped - s0.dropped);
}

static void run_fprintf(const char *dir, const char *system, int buffered, result_t *r)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench-log-%s.log", dir, system);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    static char buf[65536];
    setvbuf(f, buffered ? buf : NULL, buffered ? _IOFBF : _IOLBF, buffered ? sizeof buf : 0);
    r->n = 0;
    for (int round = 0; round < WARM + ROUNDS; round++) {
        for (int i = 0; i < ROUND; i++) {
            uint64_t a = t_begin();
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            fprintf(f, "%lld.%06ld level=info msg=\"bench\" a=%d b=%d\n", (long long)ts.tv_sec,
                    ts.tv_nsec / 1000, i, round);
            uint64_t b = t_end();
            if (round >= WARM)
                r->ticks[r->n++] = sub_overhead(b - a);
        }
        fflush(f);
    }
    fclose(f);
    unlink(path);
    report(system, r, 0);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    calibrate();
    result_t r = {malloc(sizeof(uint64_t) * ROUND * ROUNDS), 0};
    if (!r.ticks)
        return 1;
    printf("# log calls=%d rounds=%d tsc_ns_per_tick=%.4f timing_overhead_ns=%.1f dir=%s\n",
           ROUND * ROUNDS, ROUNDS, ns_per_tick, (double)overhead_ticks * ns_per_tick, dir);
    run_hark(dir, &r);
    run_fprintf(dir, "fprintf", 0, &r);
    run_fprintf(dir, "fprintf-buffered", 1, &r);
    free(r.ticks);
    return 0;
}
