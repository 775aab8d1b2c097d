/*
 * io watchers on epoll.
 *
 * What the kernel does: epoll keys its interest list by (open file
 * description, fd number), not by fd number alone. Closing an fd removes the
 * registration only when it was the last reference to the description; a
 * dup'ed, fork-inherited or SCM_RIGHTS-passed copy keeps it alive, and the
 * kernel keeps reporting events for a number we no longer watch. Events are
 * fetched in batches, so a callback may close fd 7 and open a new fd 7 while
 * an event for the old fd 7 is still waiting in the same batch.
 *
 * What we do: a table indexed by fd number records the active watcher, the
 * watcher whose registration the kernel holds, and a generation number. The
 * generation goes into epoll_data next to the fd's slot and is bumped whenever a
 * (re)initialised watcher takes the fd, so events for an old registration are
 * recognised and dropped. Interest changes made in callbacks are recorded in
 * a change list and applied once before the next sleep, after folding: a stop
 * followed by a start, or a modify back to the old mask, costs no syscall.
 * epoll refuses regular files with EPERM; they are always ready, so such
 * watchers go on a list that is dispatched every iteration instead.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop/stall.h"

#define HK__IO_INTEREST (HK_READABLE | HK_WRITABLE)
#define HK__IO_MODES (HK_EDGE | HK_ONESHOT | HK_EXCLUSIVE)

_Static_assert(HK_READABLE == EPOLLIN && HK_WRITABLE == EPOLLOUT && HK_ERROR == EPOLLERR &&
                   HK_HANGUP == EPOLLHUP,
               "hark's readiness bits are epoll's");

static uint32_t hk__to_epoll(unsigned events)
{
    uint32_t e = events & HK__IO_INTEREST;
    if (events & HK_EDGE)
        e |= EPOLLET;
    if (events & HK_ONESHOT)
        e |= EPOLLONESHOT;
    if (events & HK_EXCLUSIVE)
        e |= EPOLLEXCLUSIVE;
    return e;
}

static int hk__io_validate(unsigned events)
{
    if (events & ~(HK__IO_INTEREST | HK__IO_MODES))
        return -EINVAL;
    if (!(events & HK__IO_INTEREST))
        return -EINVAL;
    if ((events & HK_EXCLUSIVE) && (events & HK_ONESHOT))
        return -EINVAL;
    return 0;
}

int hk__epoll_ctl(hk_loop_t *loop, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    loop->stats.epoll_ctl_calls++;
    return epoll_ctl(loop->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

/* See internal.h: the low half is the slot's offset, not the fd. */
static uint64_t hk__tag(int fd, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint32_t)fd * (uint32_t)sizeof(struct hk__fdslot);
}

/* Generations skip 0, which tags the loop's own fds (hk__epoll_add_internal). */
static uint32_t hk__next_gen(uint32_t gen)
{
    return gen + 1 ? gen + 1 : 1;
}

/*
 * The events a watcher's callback may receive exactly as epoll_wait reported
 * them: its interest bits (HK_READABLE and HK_WRITABLE are EPOLLIN and
 * EPOLLOUT), unless it is ONESHOT, whose first event must also disarm it.
 * An event with any other bit (an error, a hang-up, an interest dropped
 * earlier in the batch) takes the dispatcher's slow path, so the common event
 * costs one test instead of the revents arithmetic and the ONESHOT check. The
 * slot keeps the complement (slow), so that test is a single AND with memory.
 */
static uint32_t hk__fast(unsigned events)
{
    return events & HK_ONESHOT ? 0 : events & HK__IO_INTEREST;
}

/*
 * Sets the slot's active watcher. The dispatcher accepts an event only if its
 * tag equals slot->live: one 64-bit compare checks both "a watcher is active"
 * and "the event belongs to the current registration".
 */
static void hk__slot_set(struct hk__fdslot *s, int fd, hk_io_t *w)
{
    s->w = w;
    s->live = w ? hk__tag(fd, s->gen) : HK__LIVE_NONE;
    s->slow = w ? ~hk__fast(w->_events) : ~0u;
}

int hk__fdtable_reserve(hk_loop_t *loop, int fd)
{
    if ((uint32_t)fd < loop->fds_cap)
        return 0;
    uint64_t cap = loop->fds_cap ? loop->fds_cap : 64;
    while (cap <= (uint64_t)fd)
        cap *= 2;
    if (cap > HK__TAG_SLOT_MAX)
        return -EBADF; /* a tag's slot offset must fit in 32 bits */
    struct hk__fdslot *fds = realloc(loop->fds, cap * sizeof *fds);
    if (!fds)
        return -ENOMEM;
    memset(fds + loop->fds_cap, 0, (cap - loop->fds_cap) * sizeof *fds);
    for (uint64_t i = loop->fds_cap; i < cap; i++)
        fds[i].live = HK__LIVE_NONE;
    loop->fds = fds;
    loop->fds_cap = (uint32_t)cap;
    return 0;
}

static int hk__queue_change(hk_loop_t *loop, int fd)
{
    struct hk__fdslot *s = &loop->fds[fd];
    if (s->queued)
        return 0;
    if (loop->nchanges == loop->changes_cap) {
        uint32_t cap = loop->changes_cap ? loop->changes_cap * 2 : 64;
        int *c = realloc(loop->changes, cap * sizeof *c);
        if (!c)
            return -ENOMEM;
        loop->changes = c;
        loop->changes_cap = cap;
    }
    loop->changes[loop->nchanges++] = fd;
    s->queued = 1;
    return 0;
}

/* A regular file: epoll said EPERM. Serve it from the always-ready list. */
static void hk__io_make_file(hk_loop_t *loop, struct hk__fdslot *s, hk_io_t *io)
{
    s->is_file = 1;
    s->registered = 0;
    s->kmask = 0;
    hk__list_insert_tail(&loop->files, &io->_file_link);
}

/*
 * The slot's current registration can no longer be reached by number: its
 * file was closed, and a dup'ed copy may keep it alive and reporting. Its
 * events are recognised by their generation (hk__io_internal_event).
 */
static void hk__mark_lost(hk_loop_t *loop, struct hk__fdslot *s)
{
    s->lost_gen = s->gen;
    s->lost_iter = (uint8_t)loop->stats.iterations;
}

/*
 * Puts fd into the epoll set with mask want and generation gen, whatever the
 * set held before. EPOLLEXCLUSIVE registrations cannot be modified (the
 * kernel allows the flag with ADD only), so they are replaced by DEL + ADD. A
 * MOD that finds nothing (the old file was closed, the number reused) falls
 * back to ADD; if the old file lives on through a dup'ed copy, its
 * registration is now out of reach, so it is marked lost. Returns 1 when the
 * fd turned out to be a regular file.
 */
static int hk__register(hk_loop_t *loop, int fd, struct hk__fdslot *s, uint32_t want, uint32_t gen)
{
    int r;
    uint64_t tag = hk__tag(fd, gen);
    if (s->registered && !((s->kmask | want) & EPOLLEXCLUSIVE)) {
        r = hk__epoll_ctl(loop, EPOLL_CTL_MOD, fd, want, tag);
        if (r == -ENOENT) {
            if (gen != s->gen)
                hk__mark_lost(loop, s);
            r = hk__epoll_ctl(loop, EPOLL_CTL_ADD, fd, want, tag);
        }
    } else {
        if (s->registered) {
            r = hk__epoll_ctl(loop, EPOLL_CTL_DEL, fd, 0, 0);
            if ((r == -ENOENT || r == -EBADF) && gen != s->gen)
                hk__mark_lost(loop, s);
        }
        r = hk__epoll_ctl(loop, EPOLL_CTL_ADD, fd, want, tag);
    }
    if (r == -EPERM)
        return 1;
    if (r < 0) {
        s->registered = 0;
        s->kmask = 0;
        return r;
    }
    s->registered = 1;
    s->kmask = want;
    s->gen = gen;
    if (s->lost_gen == gen)
        s->lost_gen = 0; /* the kernel holds this generation again, reachable */
    return 0;
}

/*
 * Removes fd's registration. EBADF means the number was closed first: if the
 * file is still open through a dup'ed copy, the registration lives on and
 * can no longer be reached by number; lost_gen lets the dispatcher recognise
 * its events and rebuild the epoll set (hk__io_rebuild).
 */
static void hk__unregister(hk_loop_t *loop, int fd, struct hk__fdslot *s)
{
    if (hk__epoll_ctl(loop, EPOLL_CTL_DEL, fd, 0, 0) == -EBADF)
        hk__mark_lost(loop, s);
    s->registered = 0;
    s->kmask = 0;
}

int hk_io_init(hk_loop_t *loop, hk_io_t *io, int fd)
{
    if (!loop || !io)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    hk__handle_init(loop, &io->base, HK_HANDLE_IO);
    io->base._flags |= HK__FRESH;
    io->fd = fd;
    io->_events = 0;
    io->_cb = NULL;
    hk__list_init(&io->_file_link);
    return 0;
}

int hk_io_start(hk_io_t *io, unsigned events, hk_io_cb cb)
{
    int r = hk__io_validate(events);
    if (r < 0 || !cb)
        return -EINVAL;
    if (io->base._flags & HK__ACTIVE)
        return -EBUSY;
    if (io->base._flags & (HK__CLOSING | HK__CLOSED))
        return -EINVAL;
    hk_loop_t *loop = io->base.loop;
    int fd = io->fd;
    r = hk__fdtable_reserve(loop, fd);
    if (r < 0)
        return r;
    struct hk__fdslot *s = &loop->fds[fd];
    if (s->w && s->w != io)
        return -EEXIST;

    uint32_t want = hk__to_epoll(events);
    bool fresh = (io->base._flags & HK__FRESH) || s->owner != io;
    if (fresh || !s->registered) {
        /* A new file may sit behind this number: register now, new generation. */
        if (fresh)
            s->is_file = 0;
        if (!s->is_file) {
            r = hk__register(loop, fd, s, want, hk__next_gen(s->gen));
            if (r < 0)
                return r;
            if (r == 1)
                hk__io_make_file(loop, s, io);
        } else {
            hk__list_insert_tail(&loop->files, &io->_file_link);
        }
        s->owner = io;
        io->base._flags &= (uint16_t)~HK__FRESH;
    } else if (s->is_file) {
        hk__list_insert_tail(&loop->files, &io->_file_link);
    } else if (want != s->kmask) {
        r = hk__queue_change(loop, fd);
        if (r < 0)
            return r;
    }
    io->_events = events;
    io->_cb = cb;
    hk__slot_set(s, fd, io);
    hk__handle_start(&io->base);
    return 0;
}

int hk_io_modify(hk_io_t *io, unsigned events)
{
    int r = hk__io_validate(events);
    if (r < 0)
        return r;
    if (!(io->base._flags & HK__ACTIVE))
        return -ENOTCONN;
    if ((events & HK__IO_MODES) != (io->_events & HK__IO_MODES))
        return -EINVAL;
    if (events == io->_events)
        return 0;
    hk_loop_t *loop = io->base.loop;
    struct hk__fdslot *s = &loop->fds[io->fd];
    io->_events = events;
    s->slow = ~hk__fast(events);
    if (!s->is_file && hk__to_epoll(events) != s->kmask)
        return hk__queue_change(loop, io->fd);
    return 0;
}

int hk_io_stop(hk_io_t *io)
{
    if (!(io->base._flags & HK__ACTIVE))
        return -EALREADY;
    hk_loop_t *loop = io->base.loop;
    struct hk__fdslot *s = &loop->fds[io->fd];
    hk__slot_set(s, io->fd, NULL);
    if (s->is_file)
        hk__list_remove(&io->_file_link);
    else if (s->kmask != 0)
        (void)hk__queue_change(loop, io->fd); /* on ENOMEM the DEL happens at close */
    hk__handle_stop(&io->base);
    return 0;
}

void hk__io_close(hk_io_t *io)
{
    hk_loop_t *loop = io->base.loop;
    (void)hk_io_stop(io);
    if ((uint32_t)io->fd < loop->fds_cap) {
        struct hk__fdslot *s = &loop->fds[io->fd];
        if (s->owner == io) {
            s->owner = NULL;
            /*
             * At once, not with the next changes: the caller may close the fd
             * right after hk_close, and if a dup'ed copy keeps the file open,
             * a later DEL by number (EBADF) could no longer reach the
             * registration, which would then report events forever.
             */
            if (s->registered && !s->is_file)
                hk__unregister(loop, io->fd, s);
        }
    }
}

/* A change could not be applied (ENOMEM, ENOSPC, EBADF...): tell the watcher. */
static void hk__io_fail(hk_loop_t *loop, hk_io_t *w)
{
    (void)hk_io_stop(w);
    loop->stats.callbacks++;
    w->_cb(w, HK_ERROR);
}

/*
 * A registration outlived its fd number (a dup'ed copy keeps the file open,
 * and the DEL came after the close): the kernel keeps reporting it and no
 * epoll_ctl can reach it any more. The only way out is a new epoll set: it
 * takes the old one's number (dup3, so hk_loop_backend_fd stays valid), and
 * the loop's own fds and every active watcher are registered again.
 */
static void hk__io_rebuild(hk_loop_t *loop)
{
    loop->io_rebuild = 0;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return; /* EMFILE, ENOMEM: the stale events go on being dropped; tried again later */
    if (dup3(ep, loop->epfd, O_CLOEXEC) < 0) {
        close(ep);
        return;
    }
    close(ep);
    loop->stats.epoll_rebuilds++;
    int own[] = {loop->eventfd, loop->sigfd, loop->timerfd};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (own[i] >= 0)
            (void)hk__epoll_ctl(loop, EPOLL_CTL_ADD, own[i], EPOLLIN, hk__tag(own[i], 0));
    (void)hk__io_reregister_all(loop);
}

void hk__io_apply_changes(hk_loop_t *loop)
{
    if (HK_UNLIKELY(loop->io_rebuild))
        hk__io_rebuild(loop);
    /* Callbacks run by hk__io_fail may queue more changes; take them too. */
    for (uint32_t i = 0; i < loop->nchanges; i++) {
        int fd = loop->changes[i];
        struct hk__fdslot *s = &loop->fds[fd];
        s->queued = 0;
        if (s->is_file)
            continue;
        hk_io_t *w = s->w;
        uint32_t want = w ? hk__to_epoll(w->_events) : 0;
        if (want == s->kmask)
            continue;
        if (want == 0) {
            /* ENOENT, or EBADF: the fd was closed first (see hk__unregister). */
            hk__unregister(loop, fd, s);
            continue;
        }
        int r = hk__register(loop, fd, s, want, s->gen);
        if (r == 1) {
            hk__io_make_file(loop, s, w);
        } else if (r < 0) {
            hk__io_fail(loop, w);
        }
    }
    loop->nchanges = 0;
}

/*
 * Registers one of the loop's own fds (eventfd, signalfd, timerfd): its slot
 * is reserved so that the dispatcher can look at it like any other, and its
 * generation is 0, which sends its events to hk__io_internal_event.
 */
int hk__epoll_add_internal(hk_loop_t *loop, int fd)
{
    int r = hk__fdtable_reserve(loop, fd);
    if (r < 0)
        return r;
    /*
     * The number may have been a watched fd closed in this iteration, with its
     * DEL still queued: forget that registration, or the queued DEL would
     * remove this one.
     */
    struct hk__fdslot *s = &loop->fds[fd];
    s->registered = 0;
    s->kmask = 0;
    s->owner = NULL;
    return hk__epoll_ctl(loop, EPOLL_CTL_ADD, fd, EPOLLIN, hk__tag(fd, 0));
}

/*
 * An event that reaches no watcher: the loop's own fd, or a stale one. A
 * stale event of the slot's current ONESHOT registration (its watcher was
 * stopped earlier in the batch) means the kernel disarmed it: record that, so
 * that a restart with the same mask re-arms it instead of finding nothing to
 * change. Returns whether tag was one of the loop's own fds (and handles it).
 */
static bool hk__io_internal_event(hk_loop_t *loop, struct hk__fdslot *s, uint64_t tag)
{
    uint32_t gen = (uint32_t)(tag >> 32);
    if (gen) {
        if (gen == s->gen && (s->kmask & EPOLLONESHOT))
            s->kmask = 0;
        /*
         * The registration we could not remove, still reporting after the
         * batch in which it was lost (events fetched before that are merely
         * stale); queued, so that the next apply runs.
         */
        if (gen == s->lost_gen && s->lost_iter != (uint8_t)loop->stats.iterations) {
            loop->io_rebuild = 1;
            (void)hk__queue_change(loop, (int)(s - loop->fds));
        }
        return false;
    }
    int fd = (int)((uint32_t)tag / sizeof(struct hk__fdslot));
    if (fd == loop->eventfd)
        hk__async_on_eventfd(loop);
    else if (fd == loop->sigfd)
        hk__signal_on_fd(loop);
    else if (fd == loop->timerfd)
        hk__timerfd_drain(loop);
    else
        return false; /* closed and replaced earlier in this batch */
    return true;
}

static inline __attribute__((always_inline)) void hk__io_invoke(hk_loop_t *loop, hk_io_t *w,
                                                                unsigned rev, const bool hooked)
{
    if (hooked)
        hk__stall_enter(loop, (const void *)w->_cb);
    w->_cb(w, rev);
    if (hooked) {
        hk__stall_leave(loop);
        if (loop->queue_on)
            hk__queue_after_cb(loop); /* may run timers that fell due (ONTIME) */
    }
}

/*
 * The hot path: keep it short. Everything unusual is behind one branch. It is
 * compiled twice, with and without the per-callback hooks (the stall detector,
 * the queue model's clock read), so they cost nothing per event while off.
 * loop->fds is re-read after every callback, which may grow the table. Per
 * event: the slot is the table plus the tag's low half, one 64-bit compare
 * checks "active" and "current registration", one AND checks "nothing
 * unusual", then the call (about 14 instructions on x86-64 with GCC -O2).
 */
static inline __attribute__((always_inline)) void hk__io_dispatch_impl(hk_loop_t *loop, int n,
                                                                       const bool hooked)
{
    const struct epoll_event *ev = loop->events;
    int skipped = 0;
    for (int i = 0; i < n; i++) {
        uint64_t tag = ev[i].data.u64;
        struct hk__fdslot *s = (struct hk__fdslot *)(void *)((char *)loop->fds + (uint32_t)tag);
        if (HK_UNLIKELY(s->live != tag)) {
            if (!hk__io_internal_event(loop, s, tag))
                loop->stats.stale_events++; /* stopped, or an old registration */
            skipped++;
            continue;
        }
        hk_io_t *w = s->w;
        uint32_t e = ev[i].events;
        if (HK_LIKELY(!(e & s->slow))) {
            hk__io_invoke(loop, w, e, hooked);
            continue;
        }
        unsigned interest = w->_events;
        unsigned rev = e & (interest | HK_ERROR | HK_HANGUP);
        /* Errors and hang-ups also set the interest bits, so a read or write sees them. */
        if (HK_UNLIKELY(e & (EPOLLERR | EPOLLHUP)))
            rev |= interest & HK__IO_INTEREST;
        if (HK_UNLIKELY(!rev || (interest & HK_ONESHOT))) {
            if (!rev) {
                if (interest & HK_ONESHOT)
                    s->kmask = 0; /* disarmed all the same; the queued modify re-arms it */
                skipped++;
                continue; /* interest dropped earlier in this batch */
            }
            /* The kernel disarmed it; it stays registered for a cheap re-arm. */
            s->kmask = 0;
            hk__slot_set(s, w->fd, NULL);
            hk__handle_stop(&w->base);
        }
        hk__io_invoke(loop, w, rev, hooked);
    }
    uint64_t dispatched = (uint64_t)(n - skipped);
    loop->stats.events += dispatched;
    loop->stats.callbacks += dispatched;
    if (loop->metrics && dispatched > 0) {
        /* One sample per batch: a batch of one is served at once (no clock read). */
        if (n > 1)
            hk__lag_record(loop, hk__clock_now() - loop->woke_at);
        else
            loop->lag_zero++;
    }
}

void hk__io_dispatch(hk_loop_t *loop, int n)
{
    if (HK_UNLIKELY(loop->hooked)) {
        if (loop->queue_on)
            hk__queue_batch_begin(loop);
        hk__io_dispatch_impl(loop, n, true);
    } else
        hk__io_dispatch_impl(loop, n, false);
}

void hk__io_run_files(hk_loop_t *loop)
{
    struct hk__link tmp;
    hk__list_move(&loop->files, &tmp);
    for (struct hk__link *l; (l = hk__list_rotate(&tmp, &loop->files));) {
        hk_io_t *w = HK_CONTAINER_OF(l, hk_io_t, _file_link);
        unsigned rev = w->_events & HK__IO_INTEREST;
        if (w->_events & HK_ONESHOT)
            (void)hk_io_stop(w);
        loop->stats.events++;
        loop->stats.callbacks++;
        hk__stall_enter(loop, (const void *)w->_cb);
        w->_cb(w, rev);
        hk__stall_leave(loop);
    }
}

/*
 * After fork, into the child's new epoll set. Only fds with an active
 * watcher: a stopped one would be removed by its queued change anyway, and
 * its number may now be the child's new epoll fd or eventfd.
 */
int hk__io_reregister_all(hk_loop_t *loop)
{
    for (uint32_t fd = 0; fd < loop->fds_cap; fd++) {
        struct hk__fdslot *s = &loop->fds[fd];
        s->lost_gen = 0; /* a new epoll set: nothing of the old one is left */
        if (!s->registered)
            continue;
        if (s->kmask == 0 || !s->w) {
            s->registered = 0; /* disarmed ONESHOT or stopped: the next start ADDs */
            s->kmask = 0;
            continue;
        }
        int r = hk__epoll_ctl(loop, EPOLL_CTL_ADD, (int)fd, s->kmask, hk__tag((int)fd, s->gen));
        /* The number no longer names the watched file: closed, or now one of the loop's own. */
        if (r == -EBADF || r == -EEXIST || r == -EINVAL) {
            s->registered = 0;
            s->kmask = 0;
        } else if (r < 0) {
            return r;
        }
    }
    return 0;
}
