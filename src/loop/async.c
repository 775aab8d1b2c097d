/*
 * Cross-thread wake-ups through one eventfd per loop.
 *
 * A write to an eventfd is a system call, and most sends happen while the
 * target loop is busy running callbacks and will look for work anyway. So a
 * sender sets the handle's flag and the loop's work flag, then writes the
 * eventfd only if the loop has announced that it is (about to be) asleep, and
 * only if no other sender has written since the loop last drained it.
 *
 * The race to avoid: the loop checks the work flag, finds nothing, and sleeps
 * just as a sender sets it. Both sides use sequentially consistent atomics in
 * the opposite order (loop: store sleeping, load work; sender: store work,
 * load sleeping), so at least one of them sees the other: either the loop
 * does not sleep, or the sender writes the eventfd.
 */
#include <stdint.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/stall.h"

int hk__async_setup(hk_loop_t *loop)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = hk__epoll_add_internal(loop, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    loop->eventfd = fd;
    __atomic_store_n(&loop->wakeup_pending, 0, __ATOMIC_SEQ_CST);
    return 0;
}

/* Thread-safe: makes the loop look at its work flag soon. */
void hk__async_wakeup(hk_loop_t *loop)
{
    __atomic_store_n(&loop->work_pending, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&loop->sleeping, __ATOMIC_SEQ_CST))
        return;
    if (__atomic_exchange_n(&loop->wakeup_pending, 1, __ATOMIC_SEQ_CST))
        return;
    uint64_t one = 1;
    /* EAGAIN means the counter is full, so the loop is woken anyway. */
    ssize_t w = write(loop->eventfd, &one, sizeof one);
    (void)w;
}

void hk__async_on_eventfd(hk_loop_t *loop)
{
    uint64_t count;
    ssize_t r = read(loop->eventfd, &count, sizeof count);
    (void)r;
    __atomic_store_n(&loop->wakeup_pending, 0, __ATOMIC_SEQ_CST);
}

int hk_async_init(hk_loop_t *loop, hk_async_t *async, hk_async_cb cb)
{
    if (!loop || !async || !cb)
        return -EINVAL;
    hk__handle_init(loop, &async->base, HK_HANDLE_ASYNC);
    async->_cb = cb;
    async->_pending = 0;
    async->_senders = 0;
    hk__list_insert_tail(&loop->asyncs, &async->_link);
    hk__handle_start(&async->base);
    return 0;
}

/*
 * The sender announces itself in _senders before touching the handle and
 * leaves after its last access to the loop. The moment _pending is set, the
 * loop may run the callback, which may close the handle and free the loop;
 * closing therefore waits until no sender is inside (as libuv's
 * uv__async_spin does).
 */
int hk_async_send(hk_async_t *async)
{
    __atomic_fetch_add(&async->_senders, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_exchange_n(&async->_pending, 1, __ATOMIC_SEQ_CST))
        hk__async_wakeup(async->base.loop);
    __atomic_fetch_sub(&async->_senders, 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* Loop thread: waits for sends in progress on other threads to finish. */
void hk__async_quiesce(hk_async_t *async)
{
    while (__atomic_load_n(&async->_senders, __ATOMIC_SEQ_CST) != 0)
        sched_yield();
}

/* Runs pending async callbacks and signals forwarded by other loops. */
void hk__async_process(hk_loop_t *loop)
{
    if (!__atomic_exchange_n(&loop->work_pending, 0, __ATOMIC_SEQ_CST))
        return;
    hk__signal_process_forwarded(loop);
    struct hk__link tmp;
    hk__list_move(&loop->asyncs, &tmp);
    for (struct hk__link *l; (l = hk__list_rotate(&tmp, &loop->asyncs));) {
        hk_async_t *a = HK_CONTAINER_OF(l, hk_async_t, _link);
        if (!__atomic_exchange_n(&a->_pending, 0, __ATOMIC_SEQ_CST))
            continue;
        loop->stats.callbacks++;
        hk__stall_enter(loop, (const void *)a->_cb);
        a->_cb(a);
        hk__stall_leave(loop);
    }
}
