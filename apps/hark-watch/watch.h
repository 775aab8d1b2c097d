/*
 * watch.h: the hark-watch daemon on a hark loop: periodic scans on the pool,
 * verdicts on the loop, alerts through hark/log.h, state, metrics, netlink.
 */
#ifndef HARK_WATCH_WATCH_H
#define HARK_WATCH_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hark/loop.h"
#include "hark/pool.h"
#include "baseline.h"
#include "scan.h"

typedef struct watch_config {
    double alpha;         /* tolerated false-positive rate per process and scan */
    double floor;         /* alerts need at least this many sockets above the mean */
    uint64_t warmup;      /* samples per baseline before it may alert */
    uint64_t interval_ns; /* between scans */
    int once;             /* one scan, then exit 1 if anything is flagged */
    int no_netlink;       /* do not try the proc connector */
    int syslog;           /* also send alerts to syslog (/dev/log) */
    int verbose;          /* a debug line per process */
    const char *state_path;
    const char *listen; /* ADDR:PORT for /metrics, or NULL */
    const char *proc_root;
    const char **services; /* executables that count as network services */
    size_t nservices;
} watch_config_t;

typedef struct watch watch_t;

/*
 * Sets up everything (state file loaded, listener bound, netlink probed,
 * first scan queued). Errors are -errno, after one clear line on stderr
 * naming what failed (the state file's path, the listen address...).
 */
int watch_start(hk_loop_t *loop, const watch_config_t *cfg, watch_t **out);

/* Stops timers, listener and netlink, saves state; the loop then ends. */
void watch_stop(watch_t *w);

/* The process exit code once the loop ended: 0, 1 (--once flagged), 3 (runtime error). */
int watch_exit_code(const watch_t *w);
void watch_free(watch_t *w);

/* Netlink events (netlink.c calls these on the loop thread). */
void watch_on_exec(watch_t *w, pid_t pid);
void watch_on_exit(watch_t *w, pid_t pid);

/* Renders the Prometheus text into a malloc'd buffer (metrics.c calls it). */
int watch_render_metrics(watch_t *w, char **body, size_t *len);

/* Sends one line to syslog without blocking (dropped if the socket is full). */
void watch_syslog(int *fd, const char *line);

#endif
