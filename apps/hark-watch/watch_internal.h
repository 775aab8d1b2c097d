/*
 * watch_internal.h: the daemon's state, shared by watch.c (scans, verdicts,
 * state) and expose.c (the /metrics text). Private to hark-watch.
 */
#ifndef HARK_WATCH_WATCH_INTERNAL_H
#define HARK_WATCH_WATCH_INTERNAL_H

#include "hark/loop.h"
#include "hark/pool.h"
#include "metrics.h"
#include "netlink.h"
#include "watch.h"

#define EXEC_PIDS_MAX 256
#define SCAN_SHARDS_MAX 8

/* An alert decided on the loop, reported once the endpoints are resolved. */
typedef struct pending_alert {
    size_t proc; /* index in scan.procs */
    int cls;
    verdict_t v; /* as judged, before this scan's sample joined the baseline */
} pending_alert_t;

struct watch {
    hk_loop_t *loop;
    watch_config_t cfg;
    baseline_t bl;
    scan_t scan; /* the merged result of the last scan */
    /* A full scan runs as one job per shard (scan_shard_t) on the pool, merged into scan. */
    struct scan_shard {
        hk_work_t work;
        scanner_t scanner;
        scan_t scan;
        struct watch *w;
    } shards[SCAN_SHARDS_MAX];
    unsigned nshards, outstanding;
    int shard_status;
    hk_work_t save_work, ep_work;
    pending_alert_t *pend;
    size_t npend;
    int scanning, rescan, saving, save_again, stopping, exit_code;
    pid_t exec_pids[EXEC_PIDS_MAX], scan_pids[EXEC_PIDS_MAX];
    size_t nexec, nscan_pids;
    hk_timer_t timer, exec_timer;
    hk_signal_t sigint, sigterm;
    pid_t *flagged;
    size_t nflagged, flagcap;
    char *save_buf;
    size_t save_len;
    int save_err;
    int syslog_fd;
    metrics_server_t *metrics;
    procconn_t *netlink;
    /* Counters for /metrics. */
    uint64_t scans, partial_scans, alerts, gone, denied, truncated, bad_lines, exits, save_errors;
    uint64_t last_procs, last_epolls, last_entries, last_kinds[WK_KINDS], last_scan_ns;
    uint64_t flagged_now;
};

#endif
