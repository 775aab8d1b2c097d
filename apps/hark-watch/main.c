/*
 * hark-watch: an intrusion detector that reads every process's epoll interest
 * list and alerts when a process watches far more sockets than its
 * executable's baseline (docs/watch.md). Exit codes: 0 (stopped by
 * SIGINT/SIGTERM, or --once found nothing), 1 (--once flagged a process),
 * 2 (bad usage), 3 (start-up or runtime error).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hark/error.h"
#include "hark/log.h"
#include "watch.h"

#define MAX_SERVICES 64

static void usage(FILE *f)
{
    fprintf(f, "usage: hark-watch [--once] [--interval SEC] [--alpha A] [--floor N] [--warmup N]\n"
               "                  [--state FILE] [--listen ADDR:PORT] [--log FILE] [--syslog]\n"
               "                  [--service EXE]... [--no-netlink] [--verbose] [--help]\n"
               "\n"
               "Reads the epoll interest list of every process and alerts (JSON lines) when a\n"
               "process watches more sockets than mean + k sd of its executable's baseline,\n"
               "k = 1/sqrt(alpha) (Chebyshev).\n"
               "  --once            one scan; exit 1 if anything is flagged, 0 if not\n"
               "  --interval SEC    seconds between scans (default 10)\n"
               "  --alpha A         false-positive rate per process and scan (default 0.001)\n"
               "  --floor N         alert only N or more sockets above the mean (default 16)\n"
               "  --warmup N        samples a baseline needs before it alerts (default 20)\n"
               "  --state FILE      keep baselines across restarts in FILE (atomic replace)\n"
               "  --listen A:P      serve Prometheus metrics at http://A:P/metrics (port 0: any)\n"
               "  --log FILE        JSON lines to FILE instead of stdout\n"
               "  --syslog          also send alerts to syslog (facility auth)\n"
               "  --service EXE     count EXE (full path) as a network service (up to 64 times)\n"
               "  --no-netlink      poll only; do not use the netlink process connector\n"
               "  --verbose         one debug line per process and scan\n"
               "Exit codes: 0 ok, 1 flagged (--once), 2 bad usage, 3 error.\n");
}

static int parse_double(const char *s, double *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || v != v)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const char *services[MAX_SERVICES];
    watch_config_t cfg = {.alpha = 0.001,
                          .floor = 16,
                          .warmup = 20,
                          .interval_ns = UINT64_C(10000000000),
                          .services = services};
    const char *log_path = NULL;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--once")) {
            cfg.once = 1;
        } else if (!strcmp(a, "--syslog")) {
            cfg.syslog = 1;
        } else if (!strcmp(a, "--no-netlink")) {
            cfg.no_netlink = 1;
        } else if (!strcmp(a, "--verbose")) {
            cfg.verbose = 1;
        } else if (!v) {
            fprintf(stderr, "hark-watch: unknown argument or missing value: '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--interval") && !parse_double(v, &d) && d >= 0.01 && d <= 86400) {
            cfg.interval_ns = (uint64_t)(d * 1e9);
            i++;
        } else if (!strcmp(a, "--alpha") && !parse_double(v, &d) && d > 0 && d <= 1) {
            cfg.alpha = d;
            i++;
        } else if (!strcmp(a, "--floor") && !parse_double(v, &d) && d >= 0 && d <= 1e9) {
            cfg.floor = d;
            i++;
        } else if (!strcmp(a, "--warmup") && !parse_double(v, &d) && d >= 0 && d <= 1e12) {
            cfg.warmup = (uint64_t)d;
            i++;
        } else if (!strcmp(a, "--state")) {
            cfg.state_path = argv[++i];
        } else if (!strcmp(a, "--listen")) {
            cfg.listen = argv[++i];
        } else if (!strcmp(a, "--log")) {
            log_path = argv[++i];
        } else if (!strcmp(a, "--proc")) { /* another /proc (tests) */
            cfg.proc_root = argv[++i];
        } else if (!strcmp(a, "--service") && cfg.nservices < MAX_SERVICES) {
            services[cfg.nservices++] = argv[++i];
        } else if (!strcmp(a, "--service")) {
            fprintf(stderr, "hark-watch: at most %d --service options\n", MAX_SERVICES);
            return 2;
        } else {
            fprintf(stderr, "hark-watch: bad value for %s: '%s'\n", a, v);
            usage(stderr);
            return 2;
        }
    }

    /* A scraper or log reader that goes away must be an error code, not a crash. */
    signal(SIGPIPE, SIG_IGN);
    hk_log_options_t lo = {.path = log_path,
                           .fd = log_path ? 0 : 1,
                           .format = HK_LOG_JSON,
                           .level = cfg.verbose ? HK_LOG_DEBUG : HK_LOG_INFO};
    int r = hk_log_open(&lo);
    if (r < 0) {
        fprintf(stderr, "hark-watch: cannot open log %s: %s\n", log_path ? log_path : "stdout",
                hk_strerror(r));
        return 3;
    }
    hk_loop_t *loop;
    if ((r = hk_loop_new(&loop, 0)) < 0) {
        fprintf(stderr, "hark-watch: cannot create loop: %s\n", hk_strerror(r));
        return 3;
    }
    watch_t *w;
    if (watch_start(loop, &cfg, &w) < 0) {
        (void)hk_loop_run(loop, HK_RUN_NOWAIT); /* the close callbacks of a failed start */
        hk_loop_free(loop);
        hk_log_close(UINT64_C(1000000000));
        return 3;
    }
    r = hk_loop_run(loop, HK_RUN_DEFAULT);
    int code = r < 0 ? 3 : watch_exit_code(w);
    if (r < 0)
        fprintf(stderr, "hark-watch: loop failed: %s\n", hk_strerror(r));
    watch_free(w);
    if (hk_loop_free(loop) < 0)
        fprintf(stderr, "hark-watch: loop still busy at exit\n");
    hk_log_close(UINT64_C(1000000000));
    return code;
}
