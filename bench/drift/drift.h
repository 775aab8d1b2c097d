/*
 * bench/drift: shared parts of the timer-drift experiment.
 *
 * One run = one system serving one drawn schedule: Poisson arrivals of jobs
 * with exponential service times, delivered to the loop as ready fds, while a
 * 10 ms repeating timer ticks. The load reaches every system the same way: a
 * pool of timerfds, each armed (TFD_TIMER_ABSTIME) at the arrival time of the
 * job it carries, watched as plain readable fds. The kernel makes the fd ready
 * at the arrival time whether the loop sleeps or spins, with no feeder thread
 * to schedule on a shared core; the job's callback reads the timerfd, spins
 * for the drawn service time and re-arms the fd for a later job.
 */
#ifndef DRIFT_H
#define DRIFT_H

#include <stdint.h>

/* A drawn workload: times in ns relative to the run's start. */
typedef struct drift_sched {
    uint64_t *arrival;
    uint64_t *service;
    int njobs;
} drift_sched_t;

/* Everything one run needs and measures. */
typedef struct drift_run {
    const drift_sched_t *sched;
    uint64_t t0;     /* CLOCK_MONOTONIC ns of schedule time 0 */
    uint64_t first;  /* CLOCK_MONOTONIC ns of the first tick (a whole millisecond) */
    uint64_t period; /* tick period, ns */
    uint64_t warmup; /* schedule time from which job waits count (steady state) */
    int ticks;       /* ticks to run */
    int nfds;        /* timerfds carrying the load */
    int ontime;      /* hark: 1 HK_TIMER_ONTIME, 2 HK_TIMER_HOLD */
    /* results */
    int64_t *late; /* per tick callback: run time minus the grid point it serves (< 0: early) */
    int done;      /* tick callbacks run */
    uint64_t last_grid; /* the grid point the previous callback served */
    uint64_t lost;      /* grid points no callback served (skipped, or merged into one) */
    double wait_sum;    /* job waits (start of the callback minus arrival), after warmup */
    uint64_t wait_n;
    double busy_ns; /* time spent serving jobs after warmup */
    uint64_t served;
    uint64_t late_arms; /* jobs whose fd could only be armed after their arrival time */
    double loop_wq_sum, loop_res_sum, loop_rho_sum; /* hark: the loop's estimate at each tick */
    double loop_wake_sum, loop_adv_sum, loop_wqw_sum;
    int loop_est_n;
    /* hark: the loop's ONTIME/HOLD counters at the end (hk_loop_queue_stats) */
    uint64_t holds, holds_late, held_ns;
    double loop_hold_sum; /* hold_window_ns summed over the ticks */
    /* contention: run-queue wait of the loop thread (schedstat), read at every tick */
    int schedfd;
    uint64_t runq_first, runq_last, runq_max_gap;
} drift_run_t;

/* CLOCK_MONOTONIC and CLOCK_REALTIME in ns. */
uint64_t drift_now(void);
uint64_t drift_realtime(void);

/* The load: a pool of timerfds (load.c). */
typedef struct drift_load {
    drift_run_t *run;
    int *fds;
    int *job; /* the job each fd carries, or -1 */
} drift_load_t;

int drift_load_open(drift_load_t *l, drift_run_t *run);
/* The callback of fd slot i: one job served. */
void drift_load_ready(drift_load_t *l, int slot);
void drift_load_close(drift_load_t *l);

/* Run-queue wait of the calling thread so far (ns), from an open schedstat fd. */
uint64_t drift_runq_wait(int fd);

/*
 * Records a tick callback run at now that serves grid point grid (both ns, in
 * the system's clock): the grid point the system says it serves (hark: the
 * deadline before the next; libev: the periodic's time before the next; libuv,
 * which keeps no grid: first + i * period, its drift included).
 */
void drift_tick(drift_run_t *run, uint64_t now, uint64_t grid);

/* The systems (hark.c, libuv.c, libev.c): 0 or -errno. */
int drift_run_hark(drift_run_t *run);
int drift_run_libuv(drift_run_t *run);
int drift_run_libev(drift_run_t *run);

#endif
