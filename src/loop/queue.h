/*
 * The queue model's estimator, apart from the loop: it takes explicit times, so
 * the tests feed it synthetic samples and compare it with the formula.
 *
 * Why two windows: a long horizon gives a steady estimate, a short one follows
 * a load that changes. We keep the current window and the previous one and
 * merge them (Chan's exact merge of two Welford accumulators) when asked, so
 * the estimate always covers between one and two windows of the most recent
 * callbacks, with no per-sample history.
 */
#ifndef HK_LOOP_QUEUE_H
#define HK_LOOP_QUEUE_H

#include <stdint.h>

#include "hark/loop.h"
#include "hark/stats.h"

struct hk__qwin {
    hk_welford_t svc;  /* service times (ns) of the callbacks that ended in the window */
    hk_welford_t wake; /* how late the loop woke up after sleeping until a timer (ns) */
    uint64_t start;    /* when the window began */
};

struct hk__queue {
    uint64_t window;
    struct hk__qwin cur, prev;
    int have_prev;      /* prev is a real window (else the horizon starts at cur.start) */
    int explicit_on;    /* hk_loop_queue_measure turned it on */
    unsigned ontime;    /* active ONTIME timers */
    uint64_t mark;      /* the clock read that ended the last measured callback */
    uint64_t callbacks; /* samples since creation */
    uint64_t ontime_runs;
    uint64_t ontime_early;
    uint64_t ontime_early_ns;
    uint64_t holds;      /* HOLD timer runs that held the loop until their grid point */
    uint64_t holds_late; /* HOLD timer runs that reached their grid point late */
    uint64_t held_ns;    /* time spent holding */
};

/* How many mean residual service times a hold window spans (see hk__queue_hold_window). */
#define HK__HOLD_RESIDUALS 3.0

/* An empty estimator whose first window starts at now. */
void hk__queue_init(struct hk__queue *q, uint64_t now, uint64_t window);

/* One callback of service_ns that ended at now (times never go backwards). */
void hk__queue_sample(struct hk__queue *q, uint64_t now, uint64_t service_ns);

/* The loop slept until a timer and woke up at now, late_ns after it. */
void hk__queue_wake_sample(struct hk__queue *q, uint64_t now, uint64_t late_ns);

/* The estimate at now (the counters of out are left alone). */
void hk__queue_estimate(const struct hk__queue *q, uint64_t now, hk_loop_queue_t *out);

/*
 * The advance of an ONTIME timer of this period (0: one-shot) at now: the
 * residual wait plus (1 - rho) times the wake-up latency, 0 below
 * HK_QUEUE_MIN_SAMPLES, at most period / 2 and HK_TIMER_ONTIME_MAX_NS.
 */
uint64_t hk__queue_advance(const struct hk__queue *q, uint64_t now, uint64_t period);

/*
 * The hold window of an HK_TIMER_HOLD timer of this period (0: one-shot) at
 * now: 2 wake_ns + HK__HOLD_RESIDUALS E[S^2] / (2 E[S]), at least
 * HK_TIMER_HOLD_MIN_NS, at most period / 4, (1 - rho) period / 2 and
 * HK_TIMER_ONTIME_MAX_NS.
 */
uint64_t hk__queue_hold_window(const struct hk__queue *q, uint64_t now, uint64_t period);

#endif
