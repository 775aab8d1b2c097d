/*
 * bench/capacity/place.h: where the ingest and the sender run.
 *
 * Why: capacity is per core, so the ingest and its load generator each get
 * one core of the two (-c), and neither steals the other's. On a machine
 * shared with other work, a core is still not ours alone: with -F the process
 * runs SCHED_FIFO, ahead of ordinary processes, so that the knee measured is
 * the ingest's and not the share of the core the scheduler gave it. The
 * kernel's real-time throttling (95 % of each second by default) keeps the
 * rest of the machine alive, and the runs are seconds long.
 */
#ifndef CAP_PLACE_H
#define CAP_PLACE_H

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

/* Pins to cpu (when >= 0) and switches to SCHED_FIFO at fifo (when > 0); warns on failure. */
static inline void cap_place(const char *who, int cpu, int fifo)
{
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) {
            fprintf(stderr, "%s: cpu %d: %s\n", who, cpu, strerror(errno));
        }
    }
    if (fifo > 0) {
        struct sched_param sp = {.sched_priority = fifo};
        if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
            fprintf(stderr, "%s: SCHED_FIFO %d: %s\n", who, fifo, strerror(errno));
        }
    }
}

#endif
