/*
 * Loop creation, destruction and fork. The loop owns one epoll fd, one eventfd
 * for wake-ups from other threads, and, on demand, a signalfd and a timerfd
 * (the latter only on kernels without epoll_pwait2, or when asked).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loop/stall.h"

uint64_t hk__clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t hk_time_now(void)
{
    return hk__clock_now();
}

int hk_loop_new(hk_loop_t **loopp, unsigned flags)
{
    if (!loopp || (flags & ~(HK_LOOP_TIMERFD | HK_LOOP_NO_METRICS)))
        return -EINVAL;
    hk_loop_t *loop = calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    loop->flags = flags;
    loop->metrics = !(flags & HK_LOOP_NO_METRICS);
    loop->eventfd = -1;
    loop->sigfd = -1;
    loop->timerfd = -1;
    sigemptyset(&loop->sigmask);
    hk__list_init(&loop->files);
    hk__list_init(&loop->defers);
    hk__list_init(&loop->asyncs);
    hk__list_init(&loop->signals);
    for (int i = 0; i < 3; i++)
        hk__list_init(&loop->hooks[i]);

    int err;
    loop->events_cap = 64;
    loop->events = malloc(sizeof(struct epoll_event) * (size_t)loop->events_cap);
    if (!loop->events) {
        err = -ENOMEM;
        goto fail;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        err = -errno;
        goto fail;
    }
    err = hk__async_setup(loop);
    if (err < 0)
        goto fail;
    if (flags & HK_LOOP_TIMERFD) {
        err = hk__timerfd_setup(loop);
        if (err < 0)
            goto fail;
    }
    loop->now = hk__clock_now();
    *loopp = loop;
    return 0;

fail:
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->eventfd >= 0)
        close(loop->eventfd);
    free(loop->events);
    free(loop);
    return err;
}

int hk_loop_free(hk_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->running || loop->open_handles > 0 || loop->closing || loop->pending_reqs > 0)
        return -EBUSY;
    hk__loop_ext_free_all(loop);
    hk__stall_free(loop);
    hk__queue_free(loop);
    hk__signal_loop_free(loop);
    close(loop->epfd);
    close(loop->eventfd);
    if (loop->timerfd >= 0)
        close(loop->timerfd);
    free(loop->fds);
    free(loop->changes);
    free(loop->heap);
    free(loop->parked);
    free(loop->events);
    free(loop);
    return 0;
}

void hk_loop_stop(hk_loop_t *loop)
{
    loop->stop_flag = 1;
}

int hk_loop_alive(const hk_loop_t *loop)
{
    return loop->active_refs > 0 || loop->closing != NULL || !hk__list_empty(&loop->defers);
}

uint64_t hk_loop_now(const hk_loop_t *loop)
{
    return loop->now;
}

void hk_loop_update_time(hk_loop_t *loop)
{
    loop->now = hk__clock_now();
}

int hk_loop_backend_fd(const hk_loop_t *loop)
{
    return loop->epfd;
}

/*
 * After fork the child shares the parent's epoll instance, eventfd and timerfd
 * (they are open file descriptions, not copies): an epoll_ctl in the child
 * would change the parent's interest list. So the child gets fresh ones and
 * re-registers every fd from the fd table with the same generation tags.
 */
int hk_loop_fork(hk_loop_t *loop)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    close(loop->epfd);
    loop->epfd = epfd;

    close(loop->eventfd);
    loop->eventfd = -1;
    int err = hk__async_setup(loop);
    if (err < 0)
        return err;
    if (loop->timerfd >= 0) {
        close(loop->timerfd);
        loop->timerfd = -1;
        err = hk__timerfd_setup(loop);
        if (err < 0)
            return err;
    }
    err = hk__signal_fork(loop);
    if (err < 0)
        return err;
    return hk__io_reregister_all(loop);
}
