/*
 * bench/broadcast: what the two systems share. main.c paces the writer and
 * reduces the samples; hark.c and condvar.c each publish to R reader threads
 * their own way and record, per reader, the latency of every notification.
 */
#ifndef HK_BENCH_BROADCAST_H
#define HK_BENCH_BROADCAST_H

#include <stddef.h>
#include <stdint.h>

/*
 * One reader's record, written by the reader only: latencies (ns),
 * preallocated so recording never allocates, and the last version seen.
 */
typedef struct samples {
    uint64_t *ns;
    size_t n, cap;
    uint64_t notifies; /* every notification, also those beyond cap */
    uint64_t last_seq; /* atomic: the driver polls it */
} samples_t;

/* What a published version carries in both systems. */
typedef struct stamp {
    uint64_t seq;    /* 1, 2, ... */
    uint64_t pub_ns; /* CLOCK_MONOTONIC just before the publication */
} stamp_t;

/* The published object in both systems: the stamp and a small configuration. */
typedef struct body {
    stamp_t stamp;
    char payload[48];
} body_t;

typedef struct bench_cfg {
    unsigned readers;
    unsigned hz;
    double seconds;
} bench_cfg_t;

/* One system, as seen by the driver. */
typedef struct bench_system {
    const char *name;
    /* Starts the readers; *ctx gets the system's state. */
    int (*start)(const bench_cfg_t *cfg, samples_t *per_reader, void **ctx);
    /* Publishes one version (writer thread). */
    int (*publish)(void *ctx, const stamp_t *stamp);
    /* Stops the readers and frees everything. */
    void (*stop)(void *ctx);
} bench_system_t;

extern const bench_system_t broadcast_hark;
extern const bench_system_t broadcast_condvar;

uint64_t bench_now_ns(void);
/* ns per iteration of a loop that never sleeps, attached to publish or not (hark.c). */
double bench_iteration_ns(int attached, uint64_t iterations);
/* Fills a new version's body (the writer). */
void body_fill(body_t *body, const stamp_t *stamp);
/* A reader was notified of the version stamped stamp (called by the reader). */
void samples_record(samples_t *s, const stamp_t *stamp);

#endif
