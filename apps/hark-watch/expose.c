/*
 * The Prometheus text of /metrics: counters of the daemon since start, and
 * gauges of the last full scan. Rendered on the loop into a fresh buffer per
 * request (a few KiB); metrics.c sends and frees it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "watch_internal.h"

int watch_render_metrics(watch_t *w, char **body, size_t *len)
{
    size_t cap = 4096 + 128 * WK_KINDS;
    char *b = malloc(cap);
    if (!b)
        return -ENOMEM;
    size_t n = 0;
#define OUT(...) n += (size_t)snprintf(b + n, n < cap ? cap - n : 0, __VA_ARGS__)
#define METRIC(name, type, help, value)                                                            \
    OUT("# HELP hark_watch_" name " " help "\n# TYPE hark_watch_" name " " type "\n"               \
        "hark_watch_" name " %llu\n",                                                              \
        (unsigned long long)(value))
    METRIC("scans_total", "counter", "Full scans of /proc.", w->scans);
    METRIC("partial_scans_total", "counter", "Scans of processes that just exec'd.",
           w->partial_scans);
    METRIC("alerts_total", "counter", "Alerts raised.", w->alerts);
    METRIC("flagged_processes", "gauge", "Processes above their baseline now.", w->flagged_now);
    METRIC("processes", "gauge", "Processes seen by the last full scan.", w->last_procs);
    METRIC("epoll_sets", "gauge", "Epoll sets seen by the last full scan.", w->last_epolls);
    METRIC("baselines", "gauge", "Baselines (executable and class) known.", w->bl.n);
    METRIC("skipped_gone_total", "counter", "Processes that exited mid-scan.", w->gone);
    METRIC("skipped_denied_total", "counter", "Processes we may not inspect.", w->denied);
    METRIC("skipped_truncated_total", "counter", "Processes with an epoll set past 32 MiB.",
           w->truncated);
    METRIC("bad_fdinfo_lines_total", "counter", "fdinfo lines that did not parse.", w->bad_lines);
    METRIC("process_exits_total", "counter", "Exit events from the proc connector.", w->exits);
    METRIC("netlink_enabled", "gauge", "1 when the proc connector is on.", w->netlink != NULL);
    METRIC("state_save_errors_total", "counter", "Failed writes of the state file.",
           w->save_errors);
    OUT("# HELP hark_watch_scan_duration_seconds Duration of the last full scan.\n"
        "# TYPE hark_watch_scan_duration_seconds gauge\n"
        "hark_watch_scan_duration_seconds %.6f\n",
        w->last_scan_ns / 1e9);
    OUT("# HELP hark_watch_interest_entries Epoll interest entries by kind of watched fd.\n"
        "# TYPE hark_watch_interest_entries gauge\n");
    for (int k = 0; k < WK_KINDS; k++)
        OUT("hark_watch_interest_entries{kind=\"%s\"} %llu\n", watch_kind_name(k),
            (unsigned long long)w->last_kinds[k]);
#undef METRIC
#undef OUT
    if (n >= cap) {
        free(b);
        return -ENOBUFS;
    }
    *body = b;
    *len = n;
    return 0;
}
