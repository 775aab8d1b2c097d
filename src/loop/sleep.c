/*
 * Sleeping until the next event or timer deadline.
 *
 * epoll_wait takes a timeout in milliseconds, so a loop built on it wakes up to
 * 1 ms late (or early, then spins). epoll_pwait2 (Linux 5.11) takes a
 * timespec: we use it and get nanosecond deadlines. Where it is missing
 * (ENOSYS) or when HK_LOOP_TIMERFD asks for it, one timerfd armed with
 * TFD_TIMER_ABSTIME at the earliest deadline sits in the epoll set, and we
 * sleep in epoll_wait with no timeout; re-arming happens only when the
 * earliest deadline changes.
 */
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "loop/internal.h"

int hk__timerfd_setup(hk_loop_t *loop)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = hk__epoll_add_internal(loop, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    loop->timerfd = fd;
    loop->timerfd_armed = HK_FOREVER;
    loop->use_timerfd = 1;
    return 0;
}

void hk__timerfd_drain(hk_loop_t *loop)
{
    uint64_t expirations;
    /* Nothing to do with the count: the heap knows which timers are due. */
    if (read(loop->timerfd, &expirations, sizeof expirations) < 0) {
        /* EAGAIN: already drained or re-armed; harmless. */
    }
    /* The wake-up's lateness is sampled by the caller (run.c), as for epoll_pwait2. */
    loop->timerfd_armed = HK_FOREVER; /* it fired: a one-shot timerfd is now disarmed */
}

static int hk__timerfd_arm(hk_loop_t *loop, uint64_t deadline)
{
    if (deadline == loop->timerfd_armed)
        return 0;
    struct itimerspec its = {0};
    if (deadline != HK_FOREVER) {
        its.it_value.tv_sec = (time_t)(deadline / 1000000000u);
        its.it_value.tv_nsec = (long)(deadline % 1000000000u);
    }
    if (timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        return -errno;
    loop->timerfd_armed = deadline;
    return 0;
}

static void hk__grow_events(hk_loop_t *loop, int n)
{
    if (n < loop->events_cap || loop->events_cap >= 4096)
        return;
    int cap = loop->events_cap * 2;
    struct epoll_event *ev = realloc(loop->events, sizeof *ev * (size_t)cap);
    if (ev) {
        loop->events = ev;
        loop->events_cap = cap;
    }
}

static int hk__epoll_wait_timerfd(hk_loop_t *loop, uint64_t deadline)
{
    int timeout_ms = 0;
    if (deadline != 0) {
        int r = hk__timerfd_arm(loop, deadline);
        if (r < 0)
            return r;
        timeout_ms = -1;
    }
    return epoll_wait(loop->epfd, loop->events, loop->events_cap, timeout_ms);
}

/*
 * Sleeps until deadline (absolute ns; 0 = do not sleep, HK_FOREVER = no
 * deadline) or until events arrive. now is the current time when the caller
 * has just read it, or 0. Returns the number of events in
 * loop->events, or -errno. EINTR counts as zero events.
 */
int hk__sleep(hk_loop_t *loop, uint64_t deadline, uint64_t now)
{
    int n;
    /* Announce the sleep before the last check for async work (see async.c). */
    __atomic_store_n(&loop->sleeping, 1, __ATOMIC_SEQ_CST);
    if (deadline != 0 && __atomic_load_n(&loop->work_pending, __ATOMIC_SEQ_CST))
        deadline = 0;

    if (!loop->use_timerfd) {
        struct timespec ts = {0}, *tsp = NULL;
        if (deadline != HK_FOREVER) {
            if (deadline && !now)
                now = hk__clock_now();
            uint64_t rel = deadline > now ? deadline - now : 0;
            ts.tv_sec = (time_t)(rel / 1000000000u);
            ts.tv_nsec = (long)(rel % 1000000000u);
            tsp = &ts;
        }
        n = epoll_pwait2(loop->epfd, loop->events, loop->events_cap, tsp, NULL);
        if (n < 0 && errno == ENOSYS) {
            int r = hk__timerfd_setup(loop);
            if (r < 0) {
                __atomic_store_n(&loop->sleeping, 0, __ATOMIC_SEQ_CST);
                return r;
            }
            n = hk__epoll_wait_timerfd(loop, deadline);
        }
    } else {
        n = hk__epoll_wait_timerfd(loop, deadline);
    }
    int err = errno;
    __atomic_store_n(&loop->sleeping, 0, __ATOMIC_SEQ_CST);
    if (n < 0)
        return err == EINTR ? 0 : -err;
    hk__grow_events(loop, n);
    return n;
}
