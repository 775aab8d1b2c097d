/*
 * bench/drift: timer lateness under load, hark (plain and HK_TIMER_ONTIME),
 * libuv and libev, against the M/G/1 model.
 *
 * Method: for each load rho, a schedule is drawn once from a fixed seed:
 * Poisson arrivals at rate rho / E[S] and exponential service times of mean
 * E[S] (200 us), covering a warm-up and the ticks. Every system then serves
 * that same schedule (load.c) while a repeating timer of 10 ms ticks; the
 * tick's lateness is its run time minus the grid point it serves (libuv keeps
 * no grid: first + i * period, so its drift shows), grid points left without a
 * callback are counted as lost,
 * and each job's wait is the start of its callback minus its arrival. The
 * model's Pollaczek-Khinchine wait is computed from the drawn schedule for
 * every row, and from the loop's own online estimate for hark rows.
 *
 * Usage: drift-bench [-r RHO,...] [-n TICKS] [-w WARMUP_MS] [-p PERIOD_MS]
 *                    [-m SERVICE_US] [-f FDS] [-S SEED] [-s SYSTEM,...] [-A ATTEMPTS]
 *                    [-P MAX_GAP_US] [--quick]
 * Output: one `drift system=... rho=... key=value ...` line per run. A rho whose
 * runs were disturbed (the loop thread waited more than MAX_GAP_US, default
 * 5 ms, for its core between two ticks: another task had it) runs again, all
 * systems, up to ATTEMPTS (3) times. hark rows add the loop's counters of
 * HK_TIMER_HOLD (holds, holds_late, held_share: the share of the run spent
 * holding) and grid_mod_4ms_us, the grid's phase against a 250 Hz kernel
 * tick (which fires at multiples of 4 ms of CLOCK_MONOTONIC): with phase 0 or
 * 2 ms every other grid point coincides with the tick's interrupt.
 */
#include "drift.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hark/loop.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#define MS_NS UINT64_C(1000000)
#define US_NS UINT64_C(1000)

typedef struct drift_opts {
    double rhos[16];
    int nrho;
    int ticks;
    uint64_t warmup, period, service;
    int nfds;
    uint64_t seed;
    char systems[128];
    int attempts;        /* runs of a rho group at most, when disturbed */
    uint64_t max_gap_us; /* run-queue wait between two ticks above which a run is disturbed */
} drift_opts_t;

#define DRIFT_MAX_SYSTEMS 8

/* splitmix64: a fixed seed gives the same schedule on every machine. */
static uint64_t drift_rand(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Exponential with the given mean, by inversion of a uniform in (0, 1]. */
static double drift_exp(uint64_t *s, double mean)
{
    double u = ((double)(drift_rand(s) >> 11) + 1.0) / 9007199254740992.0;
    return -mean * log(u);
}

static int drift_draw(drift_sched_t *d, const drift_opts_t *o, double rho, uint64_t horizon)
{
    double lambda_ns = rho / (double)o->service;
    size_t cap = (size_t)((double)horizon * lambda_ns * 1.5) + 64;
    d->arrival = malloc(cap * sizeof *d->arrival);
    d->service = malloc(cap * sizeof *d->service);
    if (!d->arrival || !d->service)
        return -ENOMEM;
    uint64_t seed = o->seed ^ (uint64_t)(rho * 1000.0 + 0.5);
    double t = 0;
    d->njobs = 0;
    for (;;) {
        t += drift_exp(&seed, 1.0 / lambda_ns);
        if (t >= (double)horizon || (size_t)d->njobs == cap)
            break;
        d->arrival[d->njobs] = (uint64_t)t;
        d->service[d->njobs] = (uint64_t)(drift_exp(&seed, (double)o->service) + 0.5);
        d->njobs++;
    }
    return 0;
}

/* The M/G/1 model of the schedule's jobs that arrive in [from, to). */
static void drift_sched_model(const drift_sched_t *d, uint64_t from, uint64_t to,
                              hk_loop_queue_t *q)
{
    double n = 0, s = 0, s2 = 0;
    for (int k = 0; k < d->njobs; k++) {
        if (d->arrival[k] < from || d->arrival[k] >= to)
            continue;
        double x = (double)d->service[k];
        n++;
        s += x;
        s2 += x * x;
    }
    memset(q, 0, sizeof *q);
    if (n == 0)
        return;
    q->arrival_rate = n * 1e9 / (double)(to - from);
    q->service_mean_ns = s / n;
    q->service_m2_ns2 = s2 / n;
    (void)hk_loop_queue_model(q);
}

static int drift_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double us(double ns)
{
    return ns / 1000.0;
}

static double drift_wait_us(uint64_t ns)
{
    return ns == HK_FOREVER ? INFINITY : us((double)ns);
}

/* Involuntary context switches of this thread: another task took the core (contention). */
static long drift_preempted(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nivcsw : 0;
}

/* Formats the run's line into line[cap]. */
static void drift_report(char *line, size_t cap, const char *sys, double rho, drift_run_t *r,
                         const hk_loop_queue_t *m, long preempted)
{
    int n = r->done;
    if (n == 0) {
        snprintf(line, cap, "# drift system=%s rho=%.2f: no tick ran\n", sys, rho);
        return;
    }
    double sum = 0, asum = 0, first = 0, last = 0, sxy = 0;
    int dec = n / 10 > 0 ? n / 10 : 1;
    for (int i = 0; i < n; i++) {
        double x = (double)r->late[i];
        sum += x;
        sxy += ((double)i - (n - 1) / 2.0) * x;
        asum += x < 0 ? -x : x;
        if (i < dec)
            first += x;
        if (i >= n - dec)
            last += x;
    }
    int64_t *sorted = malloc((size_t)n * sizeof *sorted);
    line[0] = '\0';
    if (!sorted)
        return;
    memcpy(sorted, r->late, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, drift_cmp);
    int i99 = (int)ceil(0.99 * n) - 1;
    /* Least-squares slope of lateness against tick number, times the run: the accumulated drift. */
    double sxx = (double)n * ((double)n * n - 1) / 12.0;
    double growth = sxx > 0 ? sxy / sxx * (n - 1) : 0;
    double dur = (double)n * (double)r->period;
    int is_hark = strncmp(sys, "hark", 4) == 0;
    double loop_wq = r->loop_est_n ? r->loop_wq_sum / r->loop_est_n : 0;
    double loop_res = r->loop_est_n ? r->loop_res_sum / r->loop_est_n : 0;
    snprintf(line, cap,
             "drift system=%s rho=%.2f ticks=%d mean_late_us=%.1f p99_late_us=%.1f "
             "last_late_us=%.1f model_wq_us=%.1f schedule_wq_us=%.1f wait_us=%.1f "
             "mean_abs_late_us=%.1f max_late_us=%.1f first_decile_us=%.1f last_decile_us=%.1f "
             "model_residual_us=%.1f schedule_residual_us=%.1f loop_rho=%.3f busy_rho=%.3f "
             "growth_us=%.1f lost_ticks=%llu jobs=%llu late_arms=%llu preempted=%ld "
             "runq_wait_ms=%.1f runq_max_gap_us=%.0f p50_late_us=%.1f loop_wake_us=%.1f "
             "loop_advance_us=%.1f model_wq_wake_us=%.1f loop_hold_window_us=%.1f holds=%llu "
             "holds_late=%llu held_share=%.4f grid_mod_4ms_us=%llu\n",
             sys, rho, n, us(sum / n), us((double)sorted[i99]), us((double)r->late[n - 1]),
             is_hark ? us(loop_wq) : drift_wait_us(m->wait_ns), drift_wait_us(m->wait_ns),
             r->wait_n ? us(r->wait_sum / (double)r->wait_n) : 0.0, us(asum / n),
             us((double)sorted[n - 1]), us(first / dec), us(last / dec),
             is_hark ? us(loop_res) : us((double)m->residual_ns), us((double)m->residual_ns),
             r->loop_est_n ? r->loop_rho_sum / r->loop_est_n : 0.0, r->busy_ns / dur, us(growth),
             (unsigned long long)r->lost, (unsigned long long)r->served,
             (unsigned long long)r->late_arms, preempted,
             (double)(r->runq_last - r->runq_first) / 1e6, us((double)r->runq_max_gap),
             us((double)sorted[(n - 1) / 2]),
             r->loop_est_n ? us(r->loop_wake_sum / r->loop_est_n) : 0,
             r->loop_est_n ? us(r->loop_adv_sum / r->loop_est_n) : 0,
             r->loop_est_n ? us(r->loop_wqw_sum / r->loop_est_n) : 0,
             r->loop_est_n ? us(r->loop_hold_sum / r->loop_est_n) : 0, (unsigned long long)r->holds,
             (unsigned long long)r->holds_late, (double)r->held_ns / dur,
             (unsigned long long)(r->first % (4 * MS_NS) / 1000));
    free(sorted);
}

/*
 * One run; its line goes to line[cap], and the longest run-queue wait of the
 * loop thread between two ticks (another task had the core) to *gap.
 */
static int drift_one(const char *sys, double rho, const drift_opts_t *o, const drift_sched_t *d,
                     const hk_loop_queue_t *m, char *line, size_t cap, uint64_t *gap)
{
    drift_run_t r = {.sched = d,
                     .period = o->period,
                     .warmup = o->warmup,
                     .ticks = o->ticks,
                     .nfds = o->nfds,
                     .ontime = strcmp(sys, "hark-ontime") == 0 ? 1
                               : strcmp(sys, "hark-hold") == 0 ? 2
                                                               : 0};
    line[0] = '\0';
    *gap = 0;
    r.late = calloc((size_t)o->ticks, sizeof *r.late);
    if (!r.late)
        return -ENOMEM;
    /* 50 ms to set up before the first arrival; the first tick on a whole millisecond. */
    r.t0 = drift_now() + 50 * MS_NS;
    r.first = (r.t0 + o->warmup + MS_NS - 1) / MS_NS * MS_NS;
    int err;
    long before = drift_preempted();
    r.schedfd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (strncmp(sys, "hark", 4) == 0)
        err = drift_run_hark(&r);
    else if (strcmp(sys, "libuv") == 0)
        err = drift_run_libuv(&r);
    else if (strcmp(sys, "libev") == 0)
        err = drift_run_libev(&r);
    else
        err = -EINVAL;
    if (err < 0)
        fprintf(stderr, "drift: %s at rho=%.2f: %s\n", sys, rho, strerror(-err));
    else
        drift_report(line, cap, sys, rho, &r, m, drift_preempted() - before);
    *gap = r.runq_max_gap;
    if (r.schedfd >= 0)
        close(r.schedfd);
    free(r.late);
    return err;
}

/*
 * Runs every system on one schedule. The core is shared with other work: when
 * the loop thread waited for its core longer than o->max_gap_us between two
 * ticks in some run (its schedstat run-queue time), the lateness there
 * measures another task, not the loop, so the whole group runs again (up to
 * o->attempts times), keeping all systems of a rho from the same attempt. The
 * choice is made on the thread's run-queue time, never on the results.
 */
static int drift_group(const drift_opts_t *o, double rho, const drift_sched_t *d,
                       const hk_loop_queue_t *m)
{
    char lines[DRIFT_MAX_SYSTEMS][1024];
    int status = 0;
    uint64_t limit = o->max_gap_us * US_NS;
    for (int attempt = 1; attempt <= o->attempts; attempt++) {
        char list[128];
        snprintf(list, sizeof list, "%s", o->systems);
        char *save = NULL;
        int n = 0;
        uint64_t worst = 0;
        status = 0;
        for (char *s = strtok_r(list, ",", &save); s && n < DRIFT_MAX_SYSTEMS;
             s = strtok_r(NULL, ",", &save), n++) {
            uint64_t gap;
            if (drift_one(s, rho, o, d, m, lines[n], sizeof lines[n], &gap) < 0)
                status = -1;
            if (gap > worst)
                worst = gap;
        }
        if (worst > limit && attempt < o->attempts) {
            printf("# drift rho=%.2f attempt=%d disturbed: the loop waited %.0f us for its core "
                   "between two ticks (> %llu us), again\n",
                   rho, attempt, us((double)worst), (unsigned long long)o->max_gap_us);
            fflush(stdout);
            continue;
        }
        for (int i = 0; i < n; i++) {
            size_t len = strlen(lines[i]);
            if (len > 0 && lines[i][len - 1] == '\n')
                lines[i][len - 1] = '\0';
            if (lines[i][0])
                printf("%s attempt=%d disturbed=%d\n", lines[i], attempt, worst > limit);
        }
        fflush(stdout);
        break;
    }
    return status;
}

static int drift_parse_rhos(drift_opts_t *o, char *arg)
{
    o->nrho = 0;
    for (char *t = strtok(arg, ","); t && o->nrho < 16; t = strtok(NULL, ",")) {
        double x = atof(t);
        if (!(x > 0 && x < 1))
            return -EINVAL;
        o->rhos[o->nrho++] = x;
    }
    return o->nrho > 0 ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
    drift_opts_t o = {.rhos = {0.1, 0.3, 0.5, 0.7},
                      .nrho = 4,
                      .ticks = 1000,
                      .warmup = 1000 * MS_NS,
                      .period = 10 * MS_NS,
                      .service = 200 * US_NS,
                      .nfds = 256,
                      .seed = 20261127,
                      .systems = "hark,hark-ontime,hark-hold,libuv,libev",
                      .attempts = 3,
                      .max_gap_us = 5000};
    static const struct option longs[] = {{"quick", no_argument, NULL, 'q'}, {0}};
    int c;
    while ((c = getopt_long(argc, argv, "r:n:w:p:m:f:S:s:qA:P:", longs, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (drift_parse_rhos(&o, optarg) < 0) {
                fprintf(stderr, "drift: -r takes loads in (0, 1)\n");
                return 2;
            }
            break;
        case 'n':
            o.ticks = atoi(optarg);
            break;
        case 'w':
            o.warmup = (uint64_t)atol(optarg) * MS_NS;
            break;
        case 'p':
            o.period = (uint64_t)atol(optarg) * MS_NS;
            break;
        case 'm':
            o.service = (uint64_t)atol(optarg) * US_NS;
            break;
        case 'f':
            o.nfds = atoi(optarg);
            break;
        case 'S':
            o.seed = strtoull(optarg, NULL, 0);
            break;
        case 's':
            snprintf(o.systems, sizeof o.systems, "%s", optarg);
            break;
        case 'A':
            o.attempts = atoi(optarg);
            break;
        case 'P':
            o.max_gap_us = (uint64_t)atol(optarg);
            break;
        case 'q':
            o.ticks = 100;
            o.warmup = 300 * MS_NS;
            break;
        default:
            fprintf(stderr, "usage: drift-bench [-r RHO,...] [-n TICKS] [-w WARMUP_MS] "
                            "[-p PERIOD_MS] [-m SERVICE_US] [-f FDS] [-S SEED] [-s SYSTEM,...] "
                            "[-A ATTEMPTS] [-P MAX_GAP_US] [--quick]\n");
            return 2;
        }
    }
    if (o.ticks < 1 || o.nfds < 1 || o.period < MS_NS || o.service == 0 || o.attempts < 1) {
        fprintf(stderr, "drift: bad parameters\n");
        return 2;
    }
    /*
     * Timer slack (50 us by default) would add up to that much to every
     * timed wake-up, of every system alike; it is kernel policy, not the
     * loops' queueing, so the experiment sets it to the minimum.
     */
    int slack = prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0;
    printf("# drift timer_slack_ns=%s\n", slack ? "1" : "default");
    printf("# drift ticks=%d period_ms=%llu service_us=%llu warmup_ms=%llu fds=%d seed=%llu "
           "systems=%s\n",
           o.ticks, (unsigned long long)(o.period / MS_NS), (unsigned long long)(o.service / US_NS),
           (unsigned long long)(o.warmup / MS_NS), o.nfds, (unsigned long long)o.seed, o.systems);
    int status = 0;
    for (int i = 0; i < o.nrho; i++) {
        double rho = o.rhos[i];
        /* The schedule covers the warm-up, the ticks and a margin for late ones. */
        uint64_t horizon = o.warmup + MS_NS + (uint64_t)(o.ticks + 50) * o.period;
        drift_sched_t d = {0};
        if (drift_draw(&d, &o, rho, horizon) < 0) {
            fprintf(stderr, "drift: out of memory\n");
            return 1;
        }
        hk_loop_queue_t m;
        drift_sched_model(&d, o.warmup, o.warmup + (uint64_t)o.ticks * o.period, &m);
        if (drift_group(&o, rho, &d, &m) < 0)
            status = 1;
        free(d.arrival);
        free(d.service);
    }
    return status;
}
