/*
 * Upstream counters for /metrics and the status page, by upstream name and
 * server (host:port as configured).
 *
 * Why a registry of its own: the upstream state (upstream.h) is per worker
 * and per configuration generation, and a reload replaces it, while a
 * Prometheus counter must only grow for as long as the process lives. So the
 * counters live here, found by name when a worker builds a generation's
 * state, and are kept until exit (a server dropped by a reload keeps its
 * last figures; one that comes back continues them).
 *
 * Each entry has one slot per worker, written only by that worker's thread
 * with httpd_count (no lock and no shared cache line on the request path)
 * and summed with httpd_read by the thread that renders /metrics.
 */
#ifndef HTTPD_UPSTREAM_STATS_H
#define HTTPD_UPSTREAM_STATS_H

#include <stdint.h>

typedef struct httpd httpd_t;

/* One worker's figures for one server. Gauges are counts this worker holds now. */
typedef struct httpd_ustat {
    uint64_t requests;      /* exchanges started on a connection to the server (each try) */
    uint64_t connects;      /* new connections opened for exchanges */
    uint64_t reused;        /* exchanges on a pooled keep-alive connection */
    uint64_t failures;      /* failed exchanges: connect, timeout, cut or bad response */
    uint64_t downs;         /* times passive health marked the server down */
    uint64_t checks_ok;     /* active health checks passed ... */
    uint64_t checks_failed; /* ... and failed */
    uint64_t responses[5];  /* response heads received, by class 1xx..5xx */
    uint64_t active;        /* gauge: exchanges in progress */
    uint64_t idle;          /* gauge: idle keep-alive connections in the pool */
    uint64_t down_until;    /* CLOCK_MONOTONIC ns; UINT64_MAX while active checks fail */
} __attribute__((aligned(64))) httpd_ustat_t;

typedef struct httpd_ustats_entry {
    struct httpd_ustats_entry *next;
    char *upstream;
    char *server;     /* "host:port" */
    httpd_ustat_t *w; /* [nworkers] */
} httpd_ustats_entry_t;

/*
 * The slot of worker for server host:port of upstream (created on first
 * use, then the same one for every generation). NULL on ENOMEM.
 */
httpd_ustat_t *httpd_ustats_slot(httpd_t *srv, unsigned worker, const char *upstream,
                                 const char *host, int port);

/* Frees the registry (at exit, after the workers ended). */
void httpd_ustats_free(httpd_t *srv);

#endif
