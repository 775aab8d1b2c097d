/*
 * The netpoller: one epoll set per runtime, shared by all workers.
 *
 * Why edge-triggered, registered once: a coroutine that reads until EAGAIN
 * needs to hear only about new data, and registering on first use and never
 * again avoids an epoll_ctl per wait. Each fd has a descriptor (pd) that
 * remembers readiness seen while nobody waited, so an edge is never lost
 * between a failed read and the wait. epoll data carries the fd and a
 * generation number bumped by hk_co_close(), so events of a closed fd, or of
 * a new file that got the same number, are dropped.
 *
 * Whichever worker runs out of work polls (blocking up to the next deadline);
 * busy workers poll without blocking now and then, so ready fds are noticed
 * even when nobody is idle.
 */
#include "co/internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct hk__pd {
    int lock;
    uint32_t gen;
    /*
     * registered, ready and stream change under lock; the short-read shortcut
     * (hk__pd_read_drained, hk__pd_read_done) reads them without it, so their
     * writes are atomic stores.
     */
    int registered;
    unsigned ready; /* HK_READABLE / HK_WRITABLE / HK_ERROR / HK_HANGUP seen, unconsumed */
    hk__waiter_t *rw, *ww;
    int stream;  /* a SOCK_STREAM socket (checked at registration) */
    int drained; /* atomic: the last read was short, so the receive queue was empty */
    int nodata;  /* atomic: an edge said hang-up, error or urgent data (sticky) */
    /*
     * hk_co_close calls between their forget and their close(): the fd is
     * still open then, so a wait would register it again and park on a
     * registration that the close drops without an event. It gets -EBADF.
     */
    unsigned closing;
};

#define HK__PD_CHUNK 1024u
#define HK__PD_DIR 1024u /* fds below 1 << 20 */
#define HK__EVFD_TAG UINT64_MAX

int hk__poll_init(hk_co_runtime_t *rt)
{
    rt->pd_dir = calloc(HK__PD_DIR, sizeof *rt->pd_dir);
    rt->epfd = epoll_create1(EPOLL_CLOEXEC);
    rt->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!rt->pd_dir || rt->epfd < 0 || rt->evfd < 0) {
        int err = rt->pd_dir ? -errno : -ENOMEM;
        hk__poll_fini(rt);
        return err;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = HK__EVFD_TAG};
    if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->evfd, &ev) < 0) {
        int err = -errno;
        hk__poll_fini(rt);
        return err;
    }
    return 0;
}

void hk__poll_fini(hk_co_runtime_t *rt)
{
    if (rt->epfd >= 0)
        close(rt->epfd);
    if (rt->evfd >= 0)
        close(rt->evfd);
    rt->epfd = rt->evfd = -1;
    if (rt->pd_dir) {
        for (unsigned i = 0; i < HK__PD_DIR; i++)
            free(rt->pd_dir[i]);
        free(rt->pd_dir);
        rt->pd_dir = NULL;
    }
}

void hk__poll_interrupt(hk_co_runtime_t *rt)
{
    uint64_t one = 1;
    ssize_t r = write(rt->evfd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is already non-zero, the poller will wake */
}

/* Under pd->lock: an atomic store for the unlocked readers (struct hk__pd). */
static void hk__pd_set_ready(hk__pd_t *pd, unsigned ready)
{
    __atomic_store_n(&pd->ready, ready, __ATOMIC_RELAXED);
}

static hk__pd_t *hk__pd_get(hk_co_runtime_t *rt, int fd, int create)
{
    if (fd < 0 || (unsigned)fd >= HK__PD_DIR * HK__PD_CHUNK)
        return NULL;
    hk__pd_t **slot = &rt->pd_dir[(unsigned)fd / HK__PD_CHUNK];
    hk__pd_t *chunk = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!chunk) {
        if (!create)
            return NULL;
        hk__pd_t *fresh = calloc(HK__PD_CHUNK, sizeof *fresh);
        if (!fresh)
            return NULL;
        if (__atomic_compare_exchange_n(slot, &chunk, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            chunk = fresh;
        else
            free(fresh);
    }
    return &chunk[(unsigned)fd % HK__PD_CHUNK];
}

/* Under pd->lock: wakes the waiter of one direction if the bits concern it. */
static unsigned hk__pd_notify(hk__pd_t *pd, hk__waiter_t **slot, unsigned bits, int result)
{
    hk__waiter_t *w = *slot;
    if (!w)
        return 0;
    if (pd->rw == w)
        pd->rw = NULL;
    if (pd->ww == w)
        pd->ww = NULL;
    if (!hk__co_claim(w->co, w->seq))
        return 0;
    w->status = (int)bits;
    hk__co_commit(w->co, result);
    return 1;
}

unsigned hk__poll_run(hk_co_runtime_t *rt, int block)
{
    struct epoll_event evs[128];
    int timeout = 0;
    if (block) {
        /*
         * Announce how long we sleep, then look at the nearest deadline once
         * more: a timer added in between published it (next_deadline) and
         * then read poll_until; with both sides sequentially consistent,
         * either it sees our announcement (and interrupts us) or we see its
         * deadline here. One read before the store alone left a window where
         * a new, earlier timer woke nobody.
         */
        uint64_t next = __atomic_load_n(&rt->next_deadline, __ATOMIC_SEQ_CST);
        for (;;) {
            __atomic_store_n(&rt->poll_until, next, __ATOMIC_SEQ_CST);
            uint64_t again = __atomic_load_n(&rt->next_deadline, __ATOMIC_SEQ_CST);
            if (again >= next)
                break;
            next = again;
        }
        if (next == HK_FOREVER) {
            timeout = -1;
        } else {
            uint64_t now = hk_time_now();
            /* At most INT_MAX ms (24.8 days): a later deadline is worked out on waking. */
            uint64_t ms = next <= now ? 0 : (next - now + 999999) / 1000000;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
    }
    int n = epoll_wait(rt->epfd, evs, 128, timeout);
    hk__stat_add(&rt->stats.polls, 1);
    unsigned woken = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == HK__EVFD_TAG) {
            uint64_t v;
            ssize_t r = read(rt->evfd, &v, sizeof v);
            (void)r;
            continue;
        }
        int fd = (int)(uint32_t)evs[i].data.u64;
        uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
        hk__pd_t *pd = hk__pd_get(rt, fd, 0);
        if (!pd)
            continue;
        uint32_t e = evs[i].events;
        unsigned bits = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            bits |= HK_READABLE;
        if (e & EPOLLOUT)
            bits |= HK_WRITABLE;
        if (e & EPOLLERR)
            bits |= HK_ERROR | HK_READABLE | HK_WRITABLE;
        if (e & EPOLLHUP)
            bits |= HK_HANGUP | HK_READABLE | HK_WRITABLE;
        hk__spin_lock(&pd->lock);
        if (pd->registered && pd->gen == gen) {
            /* What a short read does not drain: a FIN, an error, the urgent mark. */
            if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
                __atomic_store_n(&pd->nodata, 1, __ATOMIC_RELAXED);
            hk__pd_set_ready(pd, pd->ready | bits);
            if (bits & HK_READABLE)
                woken += hk__pd_notify(pd, &pd->rw, pd->ready, 0);
            if (bits & HK_WRITABLE)
                woken += hk__pd_notify(pd, &pd->ww, pd->ready, 0);
        }
        hk__spin_unlock(&pd->lock);
    }
    uint64_t next = __atomic_load_n(&rt->next_deadline, __ATOMIC_ACQUIRE);
    if (next != HK_FOREVER && next <= hk_time_now())
        woken += hk__timer_run(rt, hk_time_now());
    return woken;
}

static int hk__pd_register(hk_co_runtime_t *rt, hk__pd_t *pd, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET,
                             .data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)pd->gen << 32)};
    if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (errno != EEXIST || epoll_ctl(rt->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
            return -errno;
    }
    int type = 0;
    socklen_t tlen = sizeof type;
    __atomic_store_n(&pd->stream,
                     getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&pd->drained, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pd->nodata, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pd->registered, 1, __ATOMIC_RELAXED);
    hk__pd_set_ready(pd, 0);
    return 0;
}

/*
 * Why a short read lets the next read skip its system call: a stream
 * socket's read returns everything queued up to the length asked, so a
 * short read proves the queue was empty when it returned, and any byte that
 * arrives later raises a new edge on the registration (the netpoller sets
 * ready, or wakes the waiter). So the next read can go straight to the wait,
 * instead of paying a read that returns EAGAIN first; a ready bit seen
 * meanwhile (even one left by the data already read) sends it to the system
 * call as before. Only for fds registered here (edges tracked) and stream
 * sockets: a datagram, a TTY line or a pipe read proves nothing. Not either
 * once an edge reported a hang-up, an error or urgent data: a read stops
 * short before a FIN or the urgent mark, and when that arrived with the data
 * (one edge, consumed by the wait that woke us) no new edge would come.
 */
int hk__pd_read_drained(hk_co_runtime_t *rt, int fd)
{
    hk__pd_t *pd = hk__pd_get(rt, fd, 0);
    return pd && __atomic_load_n(&pd->drained, __ATOMIC_RELAXED) &&
           !__atomic_load_n(&pd->nodata, __ATOMIC_RELAXED) &&
           !(__atomic_load_n(&pd->ready, __ATOMIC_RELAXED) & HK_READABLE);
}

void hk__pd_read_done(hk_co_runtime_t *rt, int fd, int drained)
{
    hk__pd_t *pd = hk__pd_get(rt, fd, 0);
    if (pd && __atomic_load_n(&pd->registered, __ATOMIC_RELAXED) &&
        __atomic_load_n(&pd->stream, __ATOMIC_RELAXED) &&
        __atomic_load_n(&pd->drained, __ATOMIC_RELAXED) != drained)
        __atomic_store_n(&pd->drained, drained, __ATOMIC_RELAXED);
}

int hk__pd_wait(hk_co_runtime_t *rt, int fd, unsigned events, uint64_t deadline, int fresh)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    unsigned want = events & (HK_READABLE | HK_WRITABLE);
    if (!want || (events & ~want))
        return -EINVAL;
    hk__pd_t *pd = hk__pd_get(rt, fd, 1);
    if (!pd)
        return fd < 0 ? -EBADF : -ENOMEM;
    hk__spin_lock(&pd->lock);
    if (pd->closing) {
        hk__spin_unlock(&pd->lock);
        return -EBADF;
    }
    if (!pd->registered) {
        int r = hk__pd_register(rt, pd, fd);
        if (r < 0) {
            hk__spin_unlock(&pd->lock);
            return r;
        }
    }
    if (fresh) {
        /*
         * Report the current state, not an edge that may be stale by now. The
         * readable edge this consumes may be the one a drained read would
         * wait for: forget the drain, so that the next read tries first.
         */
        hk__pd_set_ready(pd, pd->ready & ~want);
        if (want & HK_READABLE)
            __atomic_store_n(&pd->drained, 0, __ATOMIC_RELAXED);
        uint32_t gen = pd->gen;
        hk__spin_unlock(&pd->lock);
        struct pollfd p = {.fd = fd,
                           .events = (short)((want & HK_READABLE ? POLLIN : 0) |
                                             (want & HK_WRITABLE ? POLLOUT : 0))};
        if (poll(&p, 1, 0) > 0) {
            if (p.revents & POLLNVAL)
                return -EBADF;
            unsigned bits =
                (p.revents & POLLIN ? HK_READABLE : 0) | (p.revents & POLLOUT ? HK_WRITABLE : 0) |
                (p.revents & POLLERR ? HK_ERROR : 0) | (p.revents & POLLHUP ? HK_HANGUP : 0);
            return (int)bits;
        }
        hk__spin_lock(&pd->lock);
        /*
         * hk_co_close ran while the lock was dropped: it found no waiter to
         * wake, and parking on the forgotten registration would never end.
         */
        if (pd->gen != gen) {
            hk__spin_unlock(&pd->lock);
            return -EBADF;
        }
    }
    if (pd->ready & want) {
        unsigned bits = pd->ready & (want | HK_ERROR | HK_HANGUP);
        hk__pd_set_ready(pd, pd->ready & ~want);
        hk__spin_unlock(&pd->lock);
        return (int)bits;
    }
    int r = 0;
    if (deadline == 0)
        r = -ETIMEDOUT;
    else if (((want & HK_READABLE) && pd->rw) || ((want & HK_WRITABLE) && pd->ww))
        r = -EBUSY;
    else
        r = hk__co_begin(self, 0);
    if (r < 0) {
        hk__spin_unlock(&pd->lock);
        return r;
    }
    hk__waiter_t w = {.co = self, .seq = self->seq};
    if (want & HK_READABLE)
        pd->rw = &w;
    if (want & HK_WRITABLE)
        pd->ww = &w;
    hk__spin_unlock(&pd->lock);
    r = hk__co_park(self, deadline);
    hk__spin_lock(&pd->lock);
    if (pd->rw == &w)
        pd->rw = NULL;
    if (pd->ww == &w)
        pd->ww = NULL;
    if (r == 0)
        hk__pd_set_ready(pd, pd->ready & ~want);
    hk__spin_unlock(&pd->lock);
    return r < 0 ? r : w.status;
}

/*
 * Forgets fd in rt's netpoller before it is closed: waiters get -EBADF, and
 * so does every wait until hk__pd_closed (the fd is still open in between,
 * and a wait that registered it again would never hear of the close). The
 * next wait after that registers afresh.
 */
static void hk__pd_forget(hk_co_runtime_t *rt, void *arg)
{
    int fd = (int)(intptr_t)arg;
    hk__pd_t *pd = hk__pd_get(rt, fd, 1); /* a first wait may come during the close */
    if (!pd)
        return;
    hk__spin_lock(&pd->lock);
    pd->closing++;
    int was = pd->registered;
    pd->gen++;
    __atomic_store_n(&pd->registered, 0, __ATOMIC_RELAXED);
    hk__pd_set_ready(pd, 0);
    __atomic_store_n(&pd->drained, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&pd->nodata, 0, __ATOMIC_RELAXED);
    hk__pd_notify(pd, &pd->rw, 0, -EBADF);
    hk__pd_notify(pd, &pd->ww, 0, -EBADF);
    if (was)
        epoll_ctl(rt->epfd, EPOLL_CTL_DEL, fd, NULL);
    hk__spin_unlock(&pd->lock);
}

/* fd is closed: waits on its number register again (a new file may have it by now). */
static void hk__pd_closed(hk_co_runtime_t *rt, void *arg)
{
    hk__pd_t *pd = hk__pd_get(rt, (int)(intptr_t)arg, 0);
    if (!pd)
        return;
    hk__spin_lock(&pd->lock);
    if (pd->closing > 0) /* 0: a runtime that started during the close never forgot it */
        pd->closing--;
    hk__spin_unlock(&pd->lock);
}

int hk_co_close(int fd)
{
    hk__worker_t *wk = hk__worker_current();
    hk_co_runtime_t *rt = wk ? wk->rt : NULL;
    void *arg = (void *)(intptr_t)fd;
    if (rt)
        hk__pd_forget(rt, arg);
    else /* a pool thread (hk_co_blocking) or any other: every runtime may know fd */
        hk__runtime_each(hk__pd_forget, arg);
    int r = close(fd) < 0 ? -errno : 0;
    if (rt)
        hk__pd_closed(rt, arg);
    else
        hk__runtime_each(hk__pd_closed, arg);
    return r;
}
