/*
 * bench/drift/load.c: the load, identical for every system.
 *
 * Why timerfds and not a feeder thread writing a pipe: the benchmark is pinned
 * to one core, where a feeder would have to preempt the spinning loop to
 * deliver an arrival (the scheduler may let the loop run a whole slice first),
 * bunching arrivals and breaking the Poisson schedule. A timerfd is made ready
 * by the kernel's hrtimer interrupt at the arrival time, whatever the loop
 * does. Job k rides on fd k % nfds; when its callback has run, the fd is armed
 * for job k + nfds. With 256 fds a job's fd is always armed before its
 * arrival unless 256 jobs wait at once; late_arms counts the exceptions.
 */
#include "drift.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

uint64_t drift_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t drift_realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int drift_arm(drift_load_t *l, int slot, int job)
{
    drift_run_t *r = l->run;
    l->job[slot] = job;
    if (job >= r->sched->njobs)
        return 0; /* no more jobs for this fd: it stays disarmed */
    uint64_t at = r->t0 + r->sched->arrival[job];
    if (at <= drift_now())
        r->late_arms++;
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at / 1000000000u);
    its.it_value.tv_nsec = (long)(at % 1000000000u);
    return timerfd_settime(l->fds[slot], TFD_TIMER_ABSTIME, &its, NULL) < 0 ? -errno : 0;
}

int drift_load_open(drift_load_t *l, drift_run_t *r)
{
    l->run = r;
    l->fds = calloc((size_t)r->nfds, sizeof *l->fds);
    l->job = calloc((size_t)r->nfds, sizeof *l->job);
    if (!l->fds || !l->job)
        return -ENOMEM;
    for (int i = 0; i < r->nfds; i++)
        l->fds[i] = -1;
    for (int i = 0; i < r->nfds; i++) {
        l->fds[i] = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (l->fds[i] < 0)
            return -errno;
        int err = drift_arm(l, i, i);
        if (err < 0)
            return err;
    }
    return 0;
}

void drift_load_ready(drift_load_t *l, int slot)
{
    drift_run_t *r = l->run;
    uint64_t start = drift_now();
    uint64_t n;
    if (read(l->fds[slot], &n, sizeof n) != (ssize_t)sizeof n)
        return; /* not expired (a stale readiness): nothing to serve */
    int job = l->job[slot];
    if (job < 0 || job >= r->sched->njobs)
        return;
    uint64_t arrival = r->t0 + r->sched->arrival[job];
    uint64_t service = r->sched->service[job];
    while (drift_now() - start < service) {
        /* the job: busy for its drawn service time */
    }
    r->served++;
    if (r->sched->arrival[job] >= r->warmup) {
        r->wait_sum += (double)(start > arrival ? start - arrival : 0);
        r->wait_n++;
        r->busy_ns += (double)(drift_now() - start);
    }
    (void)drift_arm(l, slot, job + r->nfds);
}

void drift_load_close(drift_load_t *l)
{
    for (int i = 0; l->fds && i < l->run->nfds; i++) {
        if (l->fds[i] >= 0)
            close(l->fds[i]);
    }
    free(l->fds);
    free(l->job);
    l->fds = NULL;
    l->job = NULL;
}

/*
 * The time this thread spent runnable but not running (its second schedstat
 * field, ns): another task had the core. 0 when unavailable.
 */
uint64_t drift_runq_wait(int fd)
{
    char buf[96];
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long oncpu, wait;
    return sscanf(buf, "%llu %llu", &oncpu, &wait) == 2 ? wait : 0;
}

void drift_tick(drift_run_t *r, uint64_t now, uint64_t grid)
{
    if (r->done >= r->ticks)
        return;
    if (r->done > 0 && grid > r->last_grid + r->period)
        r->lost += (grid - r->last_grid) / r->period - 1;
    r->last_grid = grid;
    r->late[r->done++] = (int64_t)(now - grid);
    /* After the timestamp, so the read never delays the tick it measures. */
    uint64_t w = drift_runq_wait(r->schedfd);
    if (r->done > 1 && w - r->runq_last > r->runq_max_gap)
        r->runq_max_gap = w - r->runq_last;
    if (r->done == 1)
        r->runq_first = w;
    r->runq_last = w;
}
