/*
 * bench/broadcast: one writer tells R reader threads about a new version of
 * a shared object, F times a second. hark (hark/publish.h: RCU + eventfd
 * wake-ups of R loops) against a mutex and a condition variable per reader,
 * in the same run, with the same writer: a thread that sleeps on an absolute
 * 1/F grid, stamps CLOCK_MONOTONIC into the version and publishes.
 *
 * Latency: from the stamp to the reader's callback (hark) or to the reader's
 * return from pthread_cond_wait (condvar), per reader and publication. CPU:
 * the process's user + system time (getrusage, every thread: writer, readers,
 * liburcu's call_rcu thread) from the first publication until every reader
 * has seen the last one, divided by the notifications delivered. Systems
 * alternate, rounds times, and each line pools that system's rounds.
 *
 * Output, one line per system:
 *   broadcast system=<hark|condvar> readers=R rate_hz=F publications=N
 *     notifications=M coalesced=C p50_us= p99_us= p999_us= max_us=
 *     cpu_us_per_notify= writer_us_per_pub=
 * and what being a reader costs a loop that never sleeps (best of rounds):
 *   broadcast test=iteration system=hark attached=<0|1> ns_per_iteration=
 *
 * Usage: broadcast-bench [-r readers] [-f hz] [-s seconds per round] [-n rounds]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "broadcast.h"

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void body_fill(body_t *body, const stamp_t *stamp)
{
    body->stamp = *stamp;
    for (size_t i = 0; i < sizeof body->payload; i++)
        body->payload[i] = (char)(stamp->seq + i);
}

void samples_record(samples_t *s, const stamp_t *stamp)
{
    uint64_t now = bench_now_ns();
    if (s->n < s->cap)
        s->ns[s->n++] = now - stamp->pub_ns;
    s->notifies++;
    __atomic_store_n(&s->last_seq, stamp->seq, __ATOMIC_RELEASE);
}

/* Whether every reader has been notified of version seq (or a later one). */
static int caught_up(const samples_t *per, unsigned readers, uint64_t seq)
{
    for (unsigned i = 0; i < readers; i++)
        if (__atomic_load_n(&per[i].last_seq, __ATOMIC_ACQUIRE) < seq)
            return 0;
    return 1;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

/* Everything one system accumulates over its rounds. */
typedef struct tally {
    const bench_system_t *sys;
    uint64_t *lat; /* every latency sample, ns */
    size_t nlat, cap;
    uint64_t pubs, notifies, dropped;
    double cpu_us, writer_ns;
} tally_t;

/* One round of one system: start the readers, publish on the grid, wait, stop. */
static int measure(const bench_cfg_t *cfg, tally_t *t)
{
    uint64_t npub = (uint64_t)(cfg->seconds * cfg->hz);
    samples_t *per = calloc(cfg->readers, sizeof *per);
    if (!per)
        return -ENOMEM;
    for (unsigned i = 0; i < cfg->readers; i++) {
        per[i].cap = npub + 16;
        per[i].ns = malloc(per[i].cap * sizeof *per[i].ns);
        if (!per[i].ns)
            return -ENOMEM;
    }
    void *ctx;
    int err = t->sys->start(cfg, per, &ctx);
    if (err < 0)
        return err;
    usleep(100 * 1000); /* readers settle into their first wait */

    uint64_t period = 1000000000u / cfg->hz;
    uint64_t writer_ns = 0;
    double cpu0 = cpu_us();
    uint64_t start = bench_now_ns() + period;
    for (uint64_t k = 0; k < npub && err == 0; k++) {
        uint64_t due = start + k * period;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                              .tv_nsec = (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        stamp_t stamp = {.seq = k + 1, .pub_ns = bench_now_ns()};
        err = t->sys->publish(ctx, &stamp);
        writer_ns += bench_now_ns() - stamp.pub_ns;
    }
    while (err == 0 && !caught_up(per, cfg->readers, npub))
        usleep(200);
    double cpu1 = cpu_us();
    t->sys->stop(ctx);
    if (err < 0)
        return err;

    t->pubs += npub;
    t->cpu_us += cpu1 - cpu0;
    t->writer_ns += (double)writer_ns;
    for (unsigned i = 0; i < cfg->readers; i++) {
        t->notifies += per[i].notifies;
        t->dropped += per[i].notifies - per[i].n;
        for (size_t j = 0; j < per[i].n && t->nlat < t->cap; j++)
            t->lat[t->nlat++] = per[i].ns[j];
        free(per[i].ns);
    }
    free(per);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double quantile_us(const tally_t *t, double q)
{
    if (t->nlat == 0)
        return 0;
    size_t i = (size_t)(q * (double)(t->nlat - 1));
    return (double)t->lat[i] / 1000.0;
}

static void report(const bench_cfg_t *cfg, tally_t *t)
{
    qsort(t->lat, t->nlat, sizeof *t->lat, cmp_u64);
    uint64_t expected = t->pubs * cfg->readers;
    printf("broadcast system=%s readers=%u rate_hz=%u publications=%llu notifications=%llu "
           "coalesced=%llu p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "cpu_us_per_notify=%.2f writer_us_per_pub=%.2f\n",
           t->sys->name, cfg->readers, cfg->hz, (unsigned long long)t->pubs,
           (unsigned long long)t->notifies,
           (unsigned long long)(expected > t->notifies ? expected - t->notifies : 0),
           quantile_us(t, 0.50), quantile_us(t, 0.99), quantile_us(t, 0.999), quantile_us(t, 1.0),
           t->notifies ? t->cpu_us / (double)t->notifies : 0.0,
           t->pubs ? t->writer_ns / 1000.0 / (double)t->pubs : 0.0);
    if (t->dropped)
        printf("# %s: %llu samples dropped\n", t->sys->name, (unsigned long long)t->dropped);
}

int main(int argc, char **argv)
{
    bench_cfg_t cfg = {.readers = 8, .hz = 1000, .seconds = 5};
    unsigned rounds = 2;
    int opt;
    while ((opt = getopt(argc, argv, "r:f:s:n:")) != -1) {
        switch (opt) {
        case 'r':
            cfg.readers = (unsigned)atoi(optarg);
            break;
        case 'f':
            cfg.hz = (unsigned)atoi(optarg);
            break;
        case 's':
            cfg.seconds = atof(optarg);
            break;
        case 'n':
            rounds = (unsigned)atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: %s [-r readers] [-f hz] [-s seconds] [-n rounds]\n", argv[0]);
            return 2;
        }
    }
    if (cfg.readers == 0 || cfg.hz == 0 || cfg.hz > 1000000 || cfg.seconds <= 0 || rounds == 0) {
        fprintf(stderr, "broadcast: readers, hz (<= 1000000), seconds and rounds must be > 0\n");
        return 2;
    }
    tally_t tallies[2] = {{.sys = &broadcast_hark}, {.sys = &broadcast_condvar}};
    size_t cap = (size_t)(cfg.seconds * cfg.hz + 16) * cfg.readers * rounds;
    for (int s = 0; s < 2; s++) {
        tallies[s].cap = cap;
        tallies[s].lat = malloc(cap * sizeof *tallies[s].lat);
        if (!tallies[s].lat) {
            fprintf(stderr, "broadcast: out of memory\n");
            return 1;
        }
    }
    printf("# broadcast readers=%u rate_hz=%u seconds_per_round=%g rounds=%u (systems "
           "alternate)\n",
           cfg.readers, cfg.hz, cfg.seconds, rounds);
    fflush(stdout);
    for (unsigned r = 0; r < rounds; r++) {
        for (int s = 0; s < 2; s++) {
            int err = measure(&cfg, &tallies[s]);
            if (err < 0) {
                fprintf(stderr, "broadcast: %s: %s\n", tallies[s].sys->name, strerror(-err));
                return 1;
            }
        }
    }
    for (int s = 0; s < 2; s++) {
        report(&cfg, &tallies[s]);
        free(tallies[s].lat);
    }
    for (int attached = 0; attached <= 1; attached++) {
        double best = 0;
        for (unsigned r = 0; r < rounds; r++) {
            double ns = bench_iteration_ns(attached, 2000000);
            if (ns > 0 && (best == 0 || ns < best))
                best = ns;
        }
        printf("broadcast test=iteration system=hark attached=%d ns_per_iteration=%.1f\n", attached,
               best);
    }
    return 0;
}
