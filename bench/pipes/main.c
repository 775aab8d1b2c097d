/*
 * bench/pipes/main.c: the harness of the pipes benchmark (see common.h).
 *
 * Why it is built this way: only the loop's work per event should be timed,
 * so creating the socketpairs and registering the watchers happen before the
 * clock starts, and one warm-up round (untimed) faults in the kernel's and
 * the library's data structures. A round is timed as a whole, with
 * CLOCK_MONOTONIC, and divided by the events it fired. The best round is
 * reported (ns_per_event, stat=best), with the median and the worst next to
 * it: on a 2-core machine shared with builds and tests the noise is one-sided
 * (other work only ever adds time) and often lasts for more than half of the
 * rounds, so the best of many long rounds is the estimate it spoils least.
 *
 * Usage: pipes-<system> [-n N,N,...] [-a A,A,...] [-c RING] [-w WRITES] [-t MS] [-r ROUNDS]
 *                       [--instr]
 * With -t, calibration rounds first size W (at most WRITES) so that a round
 * lasts about MS milliseconds: poll at N=9000 costs a millisecond per
 * event where epoll costs microseconds, and one W cannot suit both.
 * --instr is for callgrind: no warm-up round, no timing, and the line
 * carries events=<total events inside pipes_timed_<system>> and, for
 * systems that count them, iterations=<total loop iterations>.
 * -c RING passes the bytes among RING socketpairs spread evenly over the N
 * (default: all N, libevent's method); the others are watched and stay idle.
 * Systems that count their loop iterations also report, for the best round,
 * iters (iterations), k (events per iteration) and ns_per_iter.
 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PIPES_MAX_LIST 16

static uint64_t pipes_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int pipes_parse_list(const char *arg, int *out)
{
    int count = 0;
    const char *p = arg;
    while (*p != '\0') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 1000000 || count == PIPES_MAX_LIST) {
            return -1;
        }
        out[count++] = (int)v;
        p = end;
        if (*p == ',') {
            p++;
        } else if (*p != '\0') {
            return -1;
        }
    }
    return count;
}

static void pipes_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            fprintf(stderr, "pipes: setrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
        }
    }
}

static long pipes_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 1L << 30;
    }
    return (long)rl.rlim_cur;
}

static void pipes_close_fds(pipes_bench_t *b, int count)
{
    for (int i = 0; i < count; i++) {
        close(b->fds[i]);
    }
    free(b->fds);
    free(b->next_wfd);
    b->fds = NULL;
    b->next_wfd = NULL;
}

/* Creates the n socketpairs; on failure closes what it made and returns -errno. */
static int pipes_open_fds(pipes_bench_t *b)
{
    b->fds = malloc(sizeof(int) * 2 * (size_t)b->n);
    b->next_wfd = malloc(sizeof(int) * (size_t)b->n);
    if (b->fds == NULL || b->next_wfd == NULL) {
        pipes_close_fds(b, 0);
        return -ENOMEM;
    }
    for (int i = 0; i < b->n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &b->fds[2 * i]) !=
            0) {
            int err = -errno;
            pipes_close_fds(b, 2 * i);
            return err;
        }
    }
    for (int i = 0; i < b->n; i++) {
        b->next_wfd[i] = b->fds[2 * ((i + 1) % b->n) + 1];
    }
    /* The ring's member j is socketpair j * n / ring: spread, so a scan meets idle ones. */
    for (int j = 0; j < b->ring; j++) {
        int from = (int)((long)j * b->n / b->ring);
        int to = (int)((long)((j + 1) % b->ring) * b->n / b->ring);
        b->next_wfd[from] = b->fds[2 * to + 1];
    }
    return 0;
}

/*
 * One round: seed the active bytes, then run the system's timed function.
 * *iters gets the round's loop iterations (0 if the system does not count).
 */
static int pipes_round(pipes_bench_t *b, uint64_t *ns, long *iters)
{
    int space = b->ring / b->active;
    b->count = 0;
    b->failures = 0;
    b->writes_left = b->writes;
    b->expected = b->active + b->writes;
    for (int i = 0; i < b->active; i++) {
        int idx = (int)((long)i * space * b->n / b->ring);
        if (send(b->fds[2 * idx + 1], "e", 1, 0) != 1) {
            return -errno;
        }
    }
    long it0 = pipes_system.iterations != NULL ? pipes_system.iterations(b) : 0;
    uint64_t t0 = pipes_now_ns();
    pipes_system.timed(b);
    uint64_t t1 = pipes_now_ns();
    *ns = t1 - t0;
    *iters = pipes_system.iterations != NULL ? pipes_system.iterations(b) - it0 : 0;
    if (b->failures != 0 || b->count != b->expected) {
        fprintf(stderr, "pipes: %s: round ended with count=%ld expected=%ld failures=%ld\n",
                pipes_system.name, b->count, b->expected, b->failures);
        return -EIO;
    }
    return 0;
}

/*
 * The writes per round for a round of about target_ns: the largest step of
 * 100, 200, 500, 1000, ... that fits, at least 100 and at most max_writes.
 * A 1-2-5 step keeps W the same across systems of similar speed.
 */
static long pipes_pick_writes(double ns_per_event, uint64_t target_ns, long max_writes)
{
    long best = 100;
    for (long step = 100; step <= max_writes; step *= 10) {
        static const long mult[] = {1, 2, 5};
        for (int i = 0; i < 3; i++) {
            long w = step * mult[i];
            if (w <= max_writes && (double)w * ns_per_event <= (double)target_ns) {
                best = w;
            }
        }
    }
    return best < max_writes ? best : max_writes;
}

typedef struct pipes_sample {
    uint64_t ns;
    long iters;
} pipes_sample_t;

static int pipes_cmp_sample(const void *a, const void *b)
{
    uint64_t x = ((const pipes_sample_t *)a)->ns, y = ((const pipes_sample_t *)b)->ns;
    return (x > y) - (x < y);
}

static int pipes_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pipes_median(double *v, int count)
{
    qsort(v, (size_t)count, sizeof(*v), pipes_cmp_double);
    return count % 2 ? v[count / 2] : (v[count / 2 - 1] + v[count / 2]) / 2;
}

/*
 * Prints a configuration's line from its rounds (sorted here). The per-event
 * figures are the libevent method's; the per-iteration ones (best round's
 * iterations, k = events per iteration, ns per iteration of the best round
 * and median of the rounds' own ns per iteration) are what the fit uses.
 */
static void pipes_report(const pipes_bench_t *b, pipes_sample_t *s, int rounds)
{
    double *v = malloc(sizeof(*v) * (size_t)rounds);
    if (v == NULL) {
        fprintf(stderr, "pipes: out of memory\n");
        return;
    }
    double events = (double)b->expected;
    qsort(s, (size_t)rounds, sizeof(*s), pipes_cmp_sample);
    for (int r = 0; r < rounds; r++) {
        v[r] = (double)s[r].ns / events;
    }
    double med = pipes_median(v, rounds);
    printf("pipes system=%s n=%d active=%d writes=%ld ns_per_event=%.1f instr_per_event=- "
           "stat=best rounds=%d median=%.1f max=%.1f ring=%d",
           pipes_system.name, b->n, b->active, b->writes, (double)s[0].ns / events, rounds, med,
           (double)s[rounds - 1].ns / events, b->ring);
    if (pipes_system.iterations != NULL && s[0].iters > 0) {
        for (int r = 0; r < rounds; r++) {
            v[r] = (double)s[r].ns / (double)(s[r].iters > 0 ? s[r].iters : 1);
        }
        printf(" iters=%ld k=%.2f ns_per_iter=%.1f median_per_iter=%.1f", s[0].iters,
               events / (double)s[0].iters, (double)s[0].ns / (double)s[0].iters,
               pipes_median(v, rounds));
    }
    printf("\n");
    free(v);
}

/* Runs every round of one (n, active) configuration and prints its line. */
static int pipes_config(int n, int active, int ring, long writes, uint64_t target_ns, int rounds,
                        int instr)
{
    ring = ring <= 0 || ring > n ? n : ring;
    pipes_bench_t b = {.n = n, .active = active, .ring = ring, .writes = writes};
    const char *who = pipes_system.name;

    if (active > ring) {
        printf("# pipes system=%s n=%d active=%d: skipped, more active than the ring's %d\n", who,
               n, active, ring);
        return 0;
    }
    if (2L * n + 32 > pipes_nofile()) {
        printf("# pipes system=%s n=%d active=%d: skipped, needs %ld fds, RLIMIT_NOFILE is %ld\n",
               who, n, active, 2L * n + 32, pipes_nofile());
        return 0;
    }
    int err = pipes_open_fds(&b);
    if (err < 0) {
        printf("# pipes system=%s n=%d active=%d: skipped, socketpair: %s\n", who, n, active,
               strerror(-err));
        return 0;
    }
    int max_fd = 0;
    for (int i = 0; i < 2 * n; i++) {
        max_fd = b.fds[i] > max_fd ? b.fds[i] : max_fd;
    }
    if (pipes_system.fd_limit > 0 && max_fd >= pipes_system.fd_limit) {
        printf("# pipes system=%s n=%d active=%d: skipped, fd %d is not below FD_SETSIZE %d\n", who,
               n, active, max_fd, pipes_system.fd_limit);
        pipes_close_fds(&b, 2 * n);
        return 0;
    }
    err = pipes_system.setup(&b);
    if (err < 0) {
        fprintf(stderr, "pipes: %s: setup n=%d: %s\n", who, n, strerror(-err));
        pipes_close_fds(&b, 2 * n);
        return err;
    }

    pipes_sample_t *s = calloc((size_t)rounds, sizeof(*s));
    pipes_sample_t warm;
    err = s == NULL ? -ENOMEM : 0;
    if (err == 0 && !instr && target_ns > 0) {
        /*
         * Calibration sizes W so that a round lasts about target_ns: rounds of
         * 200, 2000, ... writes until one lasts a tenth of the target (and at
         * least two have run). The estimate is the cheapest round's cost per
         * event: a stall on a busy machine only ever makes a round slower, so
         * one stall cannot shrink W.
         */
        double est = 0;
        b.writes = writes < 200 ? writes : 200;
        for (int done = 1; err == 0; done++) {
            err = pipes_round(&b, &warm.ns, &warm.iters);
            double e = (double)warm.ns / (double)b.expected;
            est = done == 1 || e < est ? e : est;
            if ((done >= 2 && warm.ns >= target_ns / 10) || done >= 6) {
                break;
            }
            if (warm.ns < target_ns / 10) {
                b.writes = b.writes * 10 < writes ? b.writes * 10 : writes;
            }
        }
        b.writes = pipes_pick_writes(est, target_ns, writes);
        writes = b.writes;
    }
    if (err == 0 && !instr) {
        err = pipes_round(&b, &warm.ns, &warm.iters);
    }
    long iterations = 0;
    for (int r = 0; err == 0 && r < rounds; r++) {
        err = pipes_round(&b, &s[r].ns, &s[r].iters);
        iterations += s[r].iters;
    }
    if (err == 0 && instr) {
        printf("pipes system=%s n=%d active=%d writes=%ld ns_per_event=- instr_per_event=- "
               "rounds=%d events=%ld ring=%d",
               who, n, active, writes, rounds, (long)rounds * b.expected, ring);
        if (pipes_system.iterations != NULL) {
            printf(" iterations=%ld", iterations);
        }
        printf("\n");
    } else if (err == 0) {
        pipes_report(&b, s, rounds);
    } else {
        fprintf(stderr, "pipes: %s n=%d active=%d: %s\n", who, n, active, strerror(-err));
    }
    fflush(stdout);
    free(s);
    pipes_system.teardown(&b);
    pipes_close_fds(&b, 2 * n);
    return err;
}

static void pipes_usage(FILE *f)
{
    fprintf(f,
            "usage: pipes-%s [-n N,N,...] [-a A,A,...] [-c RING] [-w WRITES] [-t MS] [-r ROUNDS]\n"
            "       [--instr]\n"
            "  -c  socketpairs that pass bytes (spread over N; the rest stay idle; default N)\n"
            "  -w  writes per round (with -t: the most)   -t  size W for rounds of about MS ms\n"
            "  -r  timed rounds; the best is reported     --instr  for callgrind: no warm-up\n",
            pipes_system.name);
}

int main(int argc, char **argv)
{
    int ns[PIPES_MAX_LIST] = {100, 1000, 3000, 6000, 9000}, n_count = 5;
    int as[PIPES_MAX_LIST] = {1, 100}, a_count = 2;
    long writes = 100000, target_ms = 0;
    int rounds = 15, instr = 0, ring = 0;
    static const struct option opts[] = {
        {"instr", no_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "n:a:c:w:r:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            n_count = pipes_parse_list(optarg, ns);
            break;
        case 'a':
            a_count = pipes_parse_list(optarg, as);
            break;
        case 'c':
            ring = (int)strtol(optarg, NULL, 10);
            break;
        case 'w':
            writes = strtol(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (int)strtol(optarg, NULL, 10);
            break;
        case 't':
            target_ms = strtol(optarg, NULL, 10);
            break;
        case 'I':
            instr = 1;
            break;
        case 'h':
            pipes_usage(stdout);
            return 0;
        default:
            pipes_usage(stderr);
            return 2;
        }
        if (n_count <= 0 || a_count <= 0 || writes <= 0 || rounds <= 0 || target_ms < 0 ||
            ring < 0) {
            pipes_usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        pipes_usage(stderr);
        return 2;
    }

    pipes_raise_nofile();
    int status = 0;
    for (int i = 0; i < n_count; i++) {
        for (int j = 0; j < a_count; j++) {
            if (pipes_config(ns[i], as[j], ring, writes, (uint64_t)target_ms * 1000000u, rounds,
                             instr) < 0) {
                status = 1;
            }
        }
    }
    return status;
}
