/*
 * io watchers on real pipes, socketpairs, eventfds and regular files:
 * readiness, the three modes, the cheap paths inside callbacks (counted with
 * epoll_ctl_calls), watchers that stop or close each other within one batch,
 * fd number reuse within a batch (the generation tag), many idle watchers,
 * and the close/free lifecycle.
 */
#include "util.h"

#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

typedef struct watch {
    hk_io_t io;
    int calls;
    unsigned last;
    unsigned all;
    int drain;           /* read everything in the callback */
    struct watch *other; /* for the cross-watcher tests */
    int closed;          /* close callback ran */
} watch_t;

static void count_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    w->calls++;
    w->last = revents;
    w->all |= revents;
    if (w->drain)
        drain_fd(io->fd);
}

static void watch_closed(hk_handle_t *h)
{
    watch_t *w = (watch_t *)h;
    w->closed++;
}

static void watch_start(hk_loop_t *loop, watch_t *w, int fd, unsigned events, hk_io_cb cb)
{
    int r = hk_io_init(loop, &w->io, fd);
    cr_assert_eq(r, 0, "hk_io_init: %s", hk_err_name(r));
    r = hk_io_start(&w->io, events, cb);
    cr_assert_eq(r, 0, "hk_io_start(%#x): %s", events, hk_err_name(r));
    cr_assert(hk_is_active(&w->io.base));
}

Test(io, pipe_readable)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE, count_cb);
    cr_assert_eq(w.io.fd, p[0]);

    /* Nothing to read yet: a non-blocking iteration delivers nothing. */
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, 0);

    write_byte(p[1]);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert_eq(w.calls, 1);
    cr_assert(w.last & HK_READABLE);
    cr_assert_not(w.last & (HK_ERROR | HK_WRITABLE));

    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

Test(io, socketpair_writable_then_both)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int s[2];
    make_socketpair(s);
    watch_t w = {0};
    watch_start(loop, &w, s[0], HK_WRITABLE, count_cb);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert(w.last & HK_WRITABLE);
    cr_assert_not(w.last & HK_READABLE, "no interest in reading and nothing to read");

    write_byte(s[1]);
    cr_assert_eq(hk_io_modify(&w.io, HK_READABLE | HK_WRITABLE), 0);
    int before = w.calls;
    RUN_UNTIL(loop, &g, w.calls > before);
    cr_assert_eq(w.last & (HK_READABLE | HK_WRITABLE), HK_READABLE | HK_WRITABLE);

    /* Read interest only: writability is no longer reported. */
    cr_assert_eq(hk_io_modify(&w.io, HK_READABLE), 0);
    before = w.calls;
    RUN_UNTIL(loop, &g, w.calls > before);
    cr_assert_eq(w.last & (HK_READABLE | HK_WRITABLE), HK_READABLE);

    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(s);
    finish_loop(loop);
}

Test(io, eventfd_readable)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cr_assert_geq(efd, 0);
    watch_t w = {.drain = 1};
    watch_start(loop, &w, efd, HK_READABLE, count_cb);
    uint64_t one = 1;
    cr_assert_eq(write(efd, &one, sizeof one), (ssize_t)sizeof one);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert(w.last & HK_READABLE);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, 1, "drained eventfd must not fire again");
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close(efd);
    finish_loop(loop);
}

Test(io, hangup_reported)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int s[2], p[2];
    make_socketpair(s);
    make_pipe(p);
    watch_t ws = {0}, wp = {0};
    watch_start(loop, &ws, s[0], HK_READABLE, count_cb);
    watch_start(loop, &wp, p[0], HK_READABLE, count_cb);
    close(s[1]);
    close(p[1]);
    RUN_UNTIL(loop, &g, ws.calls > 0 && wp.calls > 0);
    cr_assert(ws.all & HK_HANGUP, "socketpair peer closed: revents %#x", ws.all);
    cr_assert(wp.all & HK_HANGUP, "pipe writer closed: revents %#x", wp.all);
    hk_close(&ws.io.base, NULL);
    hk_close(&wp.io.base, NULL);
    guard_close(&g);
    close(s[0]);
    close(p[0]);
    finish_loop(loop);
}

Test(io, level_triggered_repeats_until_drained)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE, count_cb);
    for (int i = 1; i <= 3; i++) {
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
        cr_assert_eq(w.calls, i, "level-triggered: iteration %d", i);
    }
    cr_assert_eq(drain_fd(p[0]), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, 3, "no callbacks once drained");
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

Test(io, edge_fires_once_per_change)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE | HK_EDGE, count_cb);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert_eq(w.calls, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, 1, "edge-triggered: not drained, but no new edge");
    write_byte(p[1]);
    RUN_UNTIL(loop, &g, w.calls > 1);
    cr_assert_eq(w.calls, 2);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, 2);
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

Test(io, oneshot_fires_once_and_rearms)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE | HK_ONESHOT, count_cb);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert_eq(w.calls, 1);
    cr_assert_not(hk_is_active(&w.io.base), "oneshot watcher is inactive after its event");
    cr_assert_eq(hk_io_stop(&w.io), -EALREADY);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, 1, "oneshot: the data is still there but the watcher is disarmed");

    /* Re-arm: a single EPOLL_CTL_MOD (loop.h). */
    hk_loop_stats_t a = get_stats(loop);
    cr_assert_eq(hk_io_start(&w.io, HK_READABLE | HK_ONESHOT, count_cb), 0);
    cr_assert(hk_is_active(&w.io.base));
    RUN_UNTIL(loop, &g, w.calls > 1);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_eq(w.calls, 2);
    cr_assert_eq(b.epoll_ctl_calls - a.epoll_ctl_calls, 1, "re-arm cost %llu epoll_ctl calls",
                 (unsigned long long)(b.epoll_ctl_calls - a.epoll_ctl_calls));
    cr_assert_not(hk_is_active(&w.io.base));
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

Test(io, exclusive)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int s[2];
    make_socketpair(s);
    watch_t w = {0};
    cr_assert_eq(hk_io_init(loop, &w.io, s[0]), 0);
    cr_assert_eq(hk_io_start(&w.io, HK_READABLE | HK_EXCLUSIVE | HK_ONESHOT, count_cb), -EINVAL);
    cr_assert_not(hk_is_active(&w.io.base), "a failed start changes nothing");
    cr_assert_eq(hk_io_start(&w.io, HK_READABLE | HK_EXCLUSIVE, count_cb), 0);
    write_byte(s[1]);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert(w.last & HK_READABLE);
    cr_assert_eq(drain_fd(s[0]), 1);

    /* Changing an exclusive watcher's interest is a DEL and an ADD (loop.h). */
    hk_loop_stats_t a = get_stats(loop);
    cr_assert_eq(hk_io_modify(&w.io, HK_READABLE | HK_WRITABLE | HK_EXCLUSIVE), 0);
    int before = w.calls;
    RUN_UNTIL(loop, &g, w.calls > before);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert(w.last & HK_WRITABLE);
    cr_assert_eq(b.epoll_ctl_calls - a.epoll_ctl_calls, 2, "exclusive modify: %llu ctl calls",
                 (unsigned long long)(b.epoll_ctl_calls - a.epoll_ctl_calls));
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(s);
    finish_loop(loop);
}

/* Level-triggered; on its second call, modifies the mask to what it already is. */
static hk_loop_stats_t g_in_before, g_in_after;
static int g_modify_r = 1;

static void modify_same_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    if (w->calls == 2) {
        g_in_before = get_stats(io->base.loop);
        g_modify_r = hk_io_modify(io, HK_READABLE);
        g_in_after = get_stats(io->base.loop);
    }
}

Test(io, modify_unchanged_in_callback_costs_nothing)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE, modify_same_cb);
    RUN_UNTIL(loop, &g, w.calls == 1);
    hk_loop_stats_t a = get_stats(loop);
    RUN_UNTIL(loop, &g, w.calls == 2);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_eq(g_modify_r, 0);
    cr_assert_eq(g_in_after.epoll_ctl_calls, g_in_before.epoll_ctl_calls);
    cr_assert_eq(b.epoll_ctl_calls, a.epoll_ctl_calls,
                 "unchanged modify inside a callback issued %llu epoll_ctl calls",
                 (unsigned long long)(b.epoll_ctl_calls - a.epoll_ctl_calls));
    RUN_UNTIL(loop, &g, w.calls == 3);
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

/* On its second call: change the mask and change it back; at most one ctl call. */
static void modify_twice_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    if (w->calls == 2) {
        cr_assert_eq(hk_io_modify(io, HK_READABLE | HK_WRITABLE), 0);
        cr_assert_eq(hk_io_modify(io, HK_READABLE), 0);
    }
}

Test(io, modify_changes_are_coalesced_in_callback)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE, modify_twice_cb);
    RUN_UNTIL(loop, &g, w.calls == 1);
    hk_loop_stats_t a = get_stats(loop);
    RUN_UNTIL(loop, &g, w.calls == 2);
    RUN_UNTIL(loop, &g, w.calls == 3);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_leq(b.epoll_ctl_calls - a.epoll_ctl_calls, 1,
                  "changes inside callbacks are applied once before sleeping");
    cr_assert_not(w.all & HK_WRITABLE, "a pipe's read end is never writable");
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

static int g_restart_r1 = 1, g_restart_r2 = 1;

static void stop_start_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    if (w->calls == 2) {
        g_restart_r1 = hk_io_stop(io);
        g_restart_r2 = hk_io_start(io, HK_READABLE, stop_start_cb);
    }
}

Test(io, stop_start_in_callback_costs_nothing)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE, stop_start_cb);
    RUN_UNTIL(loop, &g, w.calls == 1);
    hk_loop_stats_t a = get_stats(loop);
    RUN_UNTIL(loop, &g, w.calls == 2);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_eq(g_restart_r1, 0);
    cr_assert_eq(g_restart_r2, 0);
    cr_assert(hk_is_active(&w.io.base));
    cr_assert_eq(b.epoll_ctl_calls, a.epoll_ctl_calls,
                 "stop+start with the same mask in a callback issued %llu epoll_ctl calls",
                 (unsigned long long)(b.epoll_ctl_calls - a.epoll_ctl_calls));
    RUN_UNTIL(loop, &g, w.calls == 3);
    hk_close(&w.io.base, NULL);
    guard_close(&g);
    close_pair(p);
    finish_loop(loop);
}

Test(io, regular_file_is_always_ready)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    char path[] = "/tmp/hark-test-io-XXXXXX";
    int fd = mkostemp(path, O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(write(fd, "hello", 5), 5);

    watch_t w = {0};
    cr_assert_eq(hk_io_init(loop, &w.io, fd), 0);
    int r = hk_io_start(&w.io, HK_READABLE, count_cb);
    cr_assert_eq(r, 0, "a regular file must be accepted, got %s", hk_err_name(r));
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert(w.last & HK_READABLE);
    cr_assert_not(w.last & HK_ERROR, "a regular file is ready, not an error");
    int before = w.calls;
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0); /* must not sleep: always ready */
    cr_assert_eq(w.calls, before + 2, "ready on every iteration");
    cr_assert_not(g.fired);

    cr_assert_eq(hk_io_modify(&w.io, HK_READABLE | HK_WRITABLE), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.last & (HK_READABLE | HK_WRITABLE), HK_READABLE | HK_WRITABLE);

    cr_assert_eq(hk_io_stop(&w.io), 0);
    before = w.calls;
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.calls, before, "stopped regular-file watcher must not run");

    /* Restart, then close it from outside while it is on the always-ready list. */
    cr_assert_eq(hk_io_start(&w.io, HK_READABLE, count_cb), 0);
    hk_close(&w.io.base, watch_closed);
    guard_close(&g);
    before = w.calls;
    finish_loop(loop);
    cr_assert_eq(w.calls, before);
    cr_assert_eq(w.closed, 1);
    close(fd);
}

/* Whichever of a pair runs first stops (mode 0) or closes (mode 1) the other. */
static watch_t *g_first;
static int g_other_mode;

static void stopper_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    if (g_first == NULL) {
        g_first = w;
        if (g_other_mode == 0) {
            cr_assert_eq(hk_io_stop(&w->other->io), 0);
        } else {
            hk_close(&w->other->io.base, watch_closed);
            cr_assert(hk_is_closing(&w->other->io.base));
        }
    }
}

/* Starts a on fd_a and b on fd_b with the same callback, each the other's other. */
static void start_linked_pair(hk_loop_t *loop, watch_t *a, int fd_a, watch_t *b, int fd_b,
                              unsigned events, hk_io_cb cb)
{
    a->other = b;
    b->other = a;
    g_first = NULL;
    watch_start(loop, a, fd_a, events, cb);
    watch_start(loop, b, fd_b, events, cb);
}

static void stop_or_close_other(int mode)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p1[2], p2[2];
    make_pipe(p1);
    make_pipe(p2);
    write_byte(p1[1]);
    write_byte(p2[1]);
    watch_t a = {0}, b = {0};
    g_other_mode = mode;
    start_linked_pair(loop, &a, p1[0], &b, p2[0], HK_READABLE, stopper_cb);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert_not_null(g_first);
    cr_assert_eq(a.calls + b.calls, 1, "the stopped/closed watcher's pending event ran");
    watch_t *second = g_first->other;
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(second->calls, 0);
    cr_assert_eq(g_first->calls, 4, "the survivor stays level-triggered");
    if (mode == 1)
        cr_assert_eq(second->closed, 1, "close callback of the closed watcher");
    hk_close(&g_first->io.base, NULL);
    if (mode == 0)
        hk_close(&second->io.base, NULL);
    guard_close(&g);
    close_pair(p1);
    close_pair(p2);
    finish_loop(loop);
}

Test(io, callback_stops_other_with_pending_event)
{
    stop_or_close_other(0);
}

Test(io, callback_closes_other_with_pending_event)
{
    stop_or_close_other(1);
}

/*
 * Whichever of two writable watchers runs first drops the other's write
 * interest: the other's EPOLLOUT, already in the batch, must not reach it
 * (the dispatcher's fast path hands events over unchanged only while they
 * are all within the interest).
 */
static void dropper_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    if (g_first == NULL) {
        g_first = w;
        cr_assert_eq(hk_io_modify(&w->other->io, HK_READABLE), 0);
    }
}

Test(io, callback_drops_other_interest_with_pending_event)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int s1[2], s2[2];
    make_socketpair(s1);
    make_socketpair(s2);
    watch_t a = {0}, b = {0};
    start_linked_pair(loop, &a, s1[0], &b, s2[0], HK_WRITABLE, dropper_cb);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert_not_null(g_first);
    watch_t *second = g_first->other;
    cr_assert_eq(second->calls, 0, "the dropped interest's pending event ran");
    hk_loop_stats_t st;
    cr_assert_eq(hk_loop_stats(loop, &st), 0);
    cr_assert_eq(st.callbacks, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(second->calls, 0, "read interest only, and nothing to read");
    cr_assert_eq(g_first->calls, 4, "the other stays level-triggered writable");
    cr_assert_eq(g_first->all, HK_WRITABLE);
    /* Write interest back: the kernel mask is updated again and the events flow. */
    cr_assert_eq(hk_io_modify(&second->io, HK_READABLE | HK_WRITABLE), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(second->calls, 1);
    cr_assert_eq(second->last, HK_WRITABLE);
    hk_close(&a.io.base, NULL);
    hk_close(&b.io.base, NULL);
    guard_close(&g);
    close_pair(s1);
    close_pair(s2);
    finish_loop(loop);
}

static void close_self_cb(hk_io_t *io, unsigned revents)
{
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    hk_close(&io->base, watch_closed);
    cr_assert(hk_is_closing(&io->base));
    cr_assert_eq(w->closed, 0, "close callback runs after the callback phase");
}

static void stop_self_cb(hk_io_t *io, unsigned revents)
{
    count_cb(io, revents);
    cr_assert_eq(hk_io_stop(io), 0);
    cr_assert_not(hk_is_active(&io->base));
}

Test(io, callback_closes_or_stops_itself)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p1[2], p2[2];
    make_pipe(p1);
    make_pipe(p2);
    write_byte(p1[1]);
    write_byte(p2[1]);
    watch_t a = {0}, b = {0};
    watch_start(loop, &a, p1[0], HK_READABLE, close_self_cb);
    watch_start(loop, &b, p2[0], HK_READABLE, stop_self_cb);
    RUN_UNTIL(loop, &g, a.calls > 0 && b.calls > 0);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.closed, 1);
    cr_assert_eq(b.calls, 1);
    hk_close(&b.io.base, NULL);
    guard_close(&g);
    close_pair(p1);
    close_pair(p2);
    finish_loop(loop);
}

static watch_t *g_to_start;

static void starter_cb(hk_io_t *io, unsigned revents)
{
    count_cb(io, revents);
    if (g_to_start != NULL) {
        cr_assert_eq(hk_io_start(&g_to_start->io, HK_READABLE, count_cb), 0);
        g_to_start = NULL;
    }
}

Test(io, callback_starts_other)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int p1[2], p2[2];
    make_pipe(p1);
    make_pipe(p2);
    write_byte(p1[1]);
    write_byte(p2[1]);
    watch_t a = {.drain = 1}, c = {0};
    watch_start(loop, &a, p1[0], HK_READABLE, starter_cb);
    cr_assert_eq(hk_io_init(loop, &c.io, p2[0]), 0);
    g_to_start = &c;
    RUN_UNTIL(loop, &g, c.calls > 0);
    cr_assert_eq(a.calls, 1);
    cr_assert(c.last & HK_READABLE);
    hk_close(&a.io.base, NULL);
    hk_close(&c.io.base, NULL);
    guard_close(&g);
    close_pair(p1);
    close_pair(p2);
    finish_loop(loop);
}

/*
 * fd number reuse within one batch: both socketpairs are readable, so one
 * epoll_wait returns both. The first callback stops the other watcher and
 * closes its fd (mode 0: stop then close; mode 1: close then stop; mode 2:
 * close then hk_close), then puts
 * a fresh, empty pipe at the same fd number and watches it. The old fd's
 * event, still in the batch, must be dropped, not handed to the new watcher.
 */
typedef struct reuse {
    watch_t a, b, fresh;
    int fresh_pipe[2];
    int old_fd;
    watch_t *victim;
    int mode;
    int done;
} reuse_t;

static reuse_t *g_reuse;

static void reuse_cb(hk_io_t *io, unsigned revents)
{
    reuse_t *ru = g_reuse;
    watch_t *w = (watch_t *)io;
    count_cb(io, revents);
    if (ru->done)
        return;
    ru->done = 1;
    watch_t *victim = w->other;
    ru->victim = victim;
    ru->old_fd = victim->io.fd;
    if (ru->mode == 0) {
        cr_assert_eq(hk_io_stop(&victim->io), 0);
        cr_assert_eq(close(ru->old_fd), 0);
    } else if (ru->mode == 1) {
        cr_assert_eq(close(ru->old_fd), 0);
        cr_assert_eq(hk_io_stop(&victim->io), 0);
    } else {
        cr_assert_eq(close(ru->old_fd), 0);
        hk_close(&victim->io.base, NULL);
    }
    int p[2];
    make_pipe(p);
    if (p[0] != ru->old_fd) {
        /* Force the number: the lowest free fd may be a hole elsewhere. */
        cr_assert_eq(dup3(p[0], ru->old_fd, O_CLOEXEC), ru->old_fd);
        close(p[0]);
        p[0] = ru->old_fd;
    }
    ru->fresh_pipe[0] = p[0];
    ru->fresh_pipe[1] = p[1];
    cr_assert_eq(hk_io_init(io->base.loop, &ru->fresh.io, p[0]), 0);
    int r = hk_io_start(&ru->fresh.io, HK_READABLE, count_cb);
    cr_assert_eq(r, 0, "start on the reused fd number: %s", hk_err_name(r));
}

static void fd_reuse(int mode)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int s1[2], s2[2];
    make_socketpair(s1);
    make_socketpair(s2);
    write_byte(s1[1]);
    write_byte(s2[1]);
    reuse_t ru = {.mode = mode};
    g_reuse = &ru;
    ru.a.other = &ru.b;
    ru.b.other = &ru.a;
    watch_start(loop, &ru.a, s1[0], HK_READABLE, reuse_cb);
    watch_start(loop, &ru.b, s2[0], HK_READABLE, reuse_cb);
    hk_loop_stats_t st0 = get_stats(loop);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert(ru.done);
    hk_loop_stats_t st1 = get_stats(loop);
    cr_assert_eq(ru.a.calls + ru.b.calls, 1, "the stopped watcher's callback ran");
    cr_assert_eq(ru.fresh.calls, 0, "stale event of fd %d delivered to the new watcher", ru.old_fd);
    cr_assert_geq(st1.stale_events - st0.stale_events, 1, "stale_events not counted");

    /* Nothing more for the fresh pipe until it really becomes readable. */
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(ru.fresh.calls, 0);
    write_byte(ru.fresh_pipe[1]);
    RUN_UNTIL(loop, &g, ru.fresh.calls > 0);
    cr_assert(ru.fresh.last & HK_READABLE);
    /* No copy keeps the old file: its stale event in the batch is no reason to rebuild. */
    cr_assert_eq(get_stats(loop).epoll_rebuilds, 0);

    watch_t *victim = ru.victim;
    cr_assert_eq(victim->calls, 0);
    if (mode != 2 || victim != &ru.a)
        hk_close(&ru.a.io.base, NULL);
    if (mode != 2 || victim != &ru.b)
        hk_close(&ru.b.io.base, NULL);
    hk_close(&ru.fresh.io.base, NULL);
    guard_close(&g);
    /* The victim's fd was closed by the callback; its number now belongs to the pipe. */
    if (victim == &ru.b) {
        close(s1[0]);
    } else {
        close(s2[0]);
    }
    close(s1[1]);
    close(s2[1]);
    close_pair(ru.fresh_pipe);
    finish_loop(loop);
}

Test(io, fd_reuse_in_same_batch_stop_then_close)
{
    fd_reuse(0);
}

Test(io, fd_reuse_in_same_batch_close_then_stop)
{
    fd_reuse(1);
}

Test(io, fd_reuse_in_same_batch_close_then_hk_close)
{
    fd_reuse(2);
}

/* 5,000 socketpairs = 10,000 watched fds, one active at a time. */
#define MANY_PAIRS 5000

Test(io, ten_thousand_watchers_one_active, .timeout = 50)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2 * MANY_PAIRS + 64)
        cr_skip_test("RLIMIT_NOFILE %llu too low", (unsigned long long)rl.rlim_cur);

    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 30000);
    int(*fds)[2] = calloc(MANY_PAIRS, sizeof *fds);
    watch_t *w = calloc(2 * MANY_PAIRS, sizeof *w);
    cr_assert(fds && w);
    for (int i = 0; i < MANY_PAIRS; i++) {
        make_socketpair(fds[i]);
        for (int k = 0; k < 2; k++) {
            w[2 * i + k].drain = 1;
            watch_start(loop, &w[2 * i + k], fds[i][k], HK_READABLE, count_cb);
        }
    }
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    hk_loop_stats_t prev = get_stats(loop);
    cr_assert_eq(prev.events, 0);

    for (int round = 0; round < 50; round++) {
        int idx = (int)(((unsigned)round * 7919u + 13u) % (2u * MANY_PAIRS));
        int peer = fds[idx / 2][1 - idx % 2];
        write_byte(peer);
        int before = w[idx].calls;
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
        hk_loop_stats_t now = get_stats(loop);
        cr_assert_eq(w[idx].calls, before + 1, "round %d: watcher %d", round, idx);
        cr_assert_eq(now.events - prev.events, 1, "round %d: %llu events dispatched", round,
                     (unsigned long long)(now.events - prev.events));
        cr_assert_eq(now.callbacks - prev.callbacks, 1, "round %d", round);
        cr_assert_eq(now.iterations - prev.iterations, 1);
        prev = now;
    }
    cr_assert_not(g.fired);
    for (int i = 0; i < 2 * MANY_PAIRS; i++)
        hk_close(&w[i].io.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    for (int i = 0; i < MANY_PAIRS; i++)
        close_pair(fds[i]);
    free(w);
    free(fds);
}

Test(io, close_callback_and_loop_free_busy)
{
    hk_loop_t *loop = new_loop(0);
    int p[2];
    make_pipe(p);
    watch_t w = {0};
    watch_start(loop, &w, p[0], HK_READABLE, count_cb);
    cr_assert_eq(hk_loop_free(loop), -EBUSY, "active handle");

    hk_timer_t idle_timer; /* initialised, never started: still an open handle */
    cr_assert_eq(hk_timer_init(loop, &idle_timer), 0);

    hk_close(&w.io.base, watch_closed);
    cr_assert(hk_is_closing(&w.io.base));
    cr_assert_not(hk_is_active(&w.io.base));
    cr_assert_eq(w.closed, 0, "close callbacks run from the loop");
    cr_assert_eq(hk_loop_free(loop), -EBUSY, "close pending");
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.closed, 1);
    cr_assert_eq(hk_loop_free(loop), -EBUSY, "an initialised timer is still open");

    hk_close(&idle_timer.base, NULL);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.closed, 1, "close callback runs exactly once");
    cr_assert_eq(hk_loop_free(loop), 0);
    close_pair(p);
}

/*
 * A ONESHOT watcher stopped by another callback earlier in the batch whose
 * own event is in that batch: the kernel disarmed the registration when it
 * reported the event, which the dispatcher then dropped. Restarted with the
 * same mask before the next sleep, it must be re-armed (it once stayed
 * active and silent: the loop believed the old arm was still there).
 */
static watch_t *g_oneshot;
static int g_oneshot_state; /* 1: stopped in the batch, 2: restarted in the check hook */

static void stop_oneshot_cb(hk_io_t *io, unsigned revents)
{
    count_cb(io, revents);
    if (g_oneshot_state == 0 && hk_io_stop(&g_oneshot->io) == 0)
        g_oneshot_state = 1;
}

static void restart_oneshot_hook(hk_hook_t *h)
{
    (void)h;
    if (g_oneshot_state != 1)
        return;
    g_oneshot_state = 2;
    cr_assert_eq(hk_io_start(&g_oneshot->io, HK_READABLE | HK_ONESHOT, count_cb), 0);
}

Test(io, oneshot_stopped_in_batch_then_restarted_fires)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 2000);
    int s1[2], s2[2];
    make_socketpair(s1);
    make_socketpair(s2);
    watch_t y = {.drain = 1}, x = {.drain = 1};
    g_oneshot = &x;
    g_oneshot_state = 0;
    watch_start(loop, &y, s1[0], HK_READABLE, stop_oneshot_cb);
    watch_start(loop, &x, s2[0], HK_READABLE | HK_ONESHOT, count_cb);
    hk_hook_t h;
    cr_assert_eq(hk_hook_init(loop, &h, HK_HOOK_CHECK), 0);
    cr_assert_eq(hk_hook_start(&h, restart_oneshot_hook), 0);
    hk_unref(&h.base);

    write_byte(s1[1]); /* y's event comes first in the batch, then x's */
    write_byte(s2[1]);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert_eq(g_oneshot_state, 2);
    cr_assert_eq(x.calls, 0, "x was stopped before its event was dispatched");
    cr_assert(hk_is_active(&x.io.base));
    RUN_UNTIL(loop, &g, x.calls > 0); /* its byte is still unread: it must fire */
    cr_assert_eq(x.calls, 1);

    hk_close(&h.base, NULL);
    hk_close(&x.io.base, NULL);
    hk_close(&y.io.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    close_pair(s1);
    close_pair(s2);
}

/*
 * docs/loop.md, pitfall 2: an fd with a dup'ed copy. hk_close on the watcher,
 * then close(fd): the registration must be gone at once (a DEL left for the
 * next iteration would find the number closed, EBADF, and the registration,
 * kept alive by the copy, would wake the loop for ever).
 */
static void close_then_close_fd_cb(hk_io_t *io, unsigned revents)
{
    count_cb(io, revents);
    hk_close(&io->base, NULL);
    cr_assert_eq(close(io->fd), 0);
}

static void nop_timer(hk_timer_t *t, uint64_t e)
{
    (void)t;
    (void)e;
}

Test(io, close_watcher_then_fd_with_a_copy)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 2000);
    int s[2];
    make_socketpair(s);
    int copy = dup(s[0]);
    cr_assert_geq(copy, 0);
    write_byte(s[1]);
    watch_t w = {0};
    watch_start(loop, &w, s[0], HK_READABLE, close_then_close_fd_cb);
    RUN_UNTIL(loop, &g, w.calls > 0);

    /* 50 ms of a loop with nothing to do: it must sleep, not spin on stale events. */
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, nop_timer, MS(50), 0), 0);
    hk_loop_stats_t a = get_stats(loop);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_lt(b.stale_events - a.stale_events, 3, "%llu stale events in 50 ms",
                 (unsigned long long)(b.stale_events - a.stale_events));
    cr_assert_lt(b.iterations - a.iterations, 5, "%llu iterations in 50 ms",
                 (unsigned long long)(b.iterations - a.iterations));

    hk_close(&t.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    close(copy);
    close(s[1]);
}

/*
 * The same pitfall with only hk_io_stop before close(fd) (its DEL waits for
 * the next iteration), and with close(fd) before hk_close: either way the DEL
 * finds the number closed while a dup'ed copy keeps the registration alive.
 * The loop recognises the orphan's events and rebuilds its epoll set once;
 * the other watchers keep working and the backend fd keeps its number.
 */
static void stop_then_close_fd_cb(hk_io_t *io, unsigned revents)
{
    count_cb(io, revents);
    cr_assert_eq(hk_io_stop(io), 0);
    cr_assert_eq(close(io->fd), 0);
}

static void close_fd_then_watcher_cb(hk_io_t *io, unsigned revents)
{
    count_cb(io, revents);
    cr_assert_eq(close(io->fd), 0);
    hk_close(&io->base, NULL);
}

static void stop_loop_timer(hk_timer_t *t, uint64_t e)
{
    (void)e;
    hk_loop_stop(t->base.loop);
}

/*
 * Runs the loop for 50 ms (t: a timer that stops it, closed by the caller):
 * an orphaned registration must have been rebuilt away once, leaving at most
 * a stale event or two, not one per iteration.
 */
static void run_50ms_expect_one_rebuild(hk_loop_t *loop, hk_timer_t *t)
{
    cr_assert_eq(hk_timer_init(loop, t), 0);
    cr_assert_eq(hk_timer_start_in(t, stop_loop_timer, MS(50), 0), 0);
    hk_loop_stats_t a = get_stats(loop);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    hk_loop_stats_t b = get_stats(loop);
    cr_assert_lt(b.stale_events - a.stale_events, 3, "%llu stale events in 50 ms",
                 (unsigned long long)(b.stale_events - a.stale_events));
    cr_assert_eq(b.epoll_rebuilds, 1);
}

static void orphan_case(hk_io_cb cb)
{
    hk_loop_t *loop = new_loop(0);
    int backend = hk_loop_backend_fd(loop);
    guard_t g;
    guard_start(loop, &g, 2000);
    int s[2], other[2];
    make_socketpair(s);
    make_socketpair(other);
    int copy = dup(s[0]);
    cr_assert_geq(copy, 0);
    watch_t bystander = {.drain = 1};
    watch_start(loop, &bystander, other[0], HK_READABLE, count_cb);
    write_byte(s[1]);
    watch_t w = {0};
    watch_start(loop, &w, s[0], HK_READABLE, cb);
    RUN_UNTIL(loop, &g, w.calls > 0);

    hk_timer_t t;
    run_50ms_expect_one_rebuild(loop, &t);
    cr_assert_eq(hk_loop_backend_fd(loop), backend);
    cr_assert_eq(w.calls, 1);

    write_byte(other[1]); /* still registered in the new set */
    RUN_UNTIL(loop, &g, bystander.calls > 0);

    hk_close(&t.base, NULL);
    hk_close(&bystander.io.base, NULL);
    if (!hk_is_closing(&w.io.base))
        hk_close(&w.io.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    close(copy);
    close(s[1]);
    close_pair(other);
}

Test(io, stop_then_close_fd_with_a_copy)
{
    orphan_case(stop_then_close_fd_cb);
}

Test(io, close_fd_then_watcher_with_a_copy)
{
    orphan_case(close_fd_then_watcher_cb);
}

/*
 * The same pitfall when the number is reused before the DEL: the callback
 * stops its watcher, closes the fd (a dup'ed copy keeps the file and its
 * registration alive) and a new file gets the same number and a new watcher
 * at once. The new watcher's registration is an ADD for the new file, so the
 * queued DEL never runs, and the old registration, with the old generation,
 * can no longer be reached by number: the loop must rebuild its epoll set
 * instead of dropping its events as stale on every iteration for ever.
 */
typedef struct orphan_reuse {
    watch_t w;
    watch_t fresh;
    int fresh_pair[2];
} orphan_reuse_t;

static void stop_close_reuse_cb(hk_io_t *io, unsigned revents)
{
    orphan_reuse_t *o = (orphan_reuse_t *)io;
    count_cb(io, revents);
    int fd = io->fd;
    cr_assert_eq(hk_io_stop(io), 0);
    cr_assert_eq(close(fd), 0);
    make_socketpair(o->fresh_pair);
    if (o->fresh_pair[0] != fd) {
        cr_assert_eq(dup3(o->fresh_pair[0], fd, O_CLOEXEC), fd);
        close(o->fresh_pair[0]);
        o->fresh_pair[0] = fd;
    }
    watch_start(io->base.loop, &o->fresh, fd, HK_READABLE, count_cb);
}

Test(io, stop_close_and_reuse_number_with_a_copy)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 2000);
    int s[2];
    make_socketpair(s);
    int copy = dup(s[0]);
    cr_assert_geq(copy, 0);
    write_byte(s[1]); /* never read: the orphaned registration stays ready */
    orphan_reuse_t o = {0};
    o.fresh.drain = 1;
    watch_start(loop, &o.w, s[0], HK_READABLE, stop_close_reuse_cb);
    RUN_UNTIL(loop, &g, o.w.calls > 0);

    hk_timer_t t;
    run_50ms_expect_one_rebuild(loop, &t);
    cr_assert_eq(o.w.calls, 1);
    cr_assert_eq(o.fresh.calls, 0, "the old file's event reached the new watcher");

    write_byte(o.fresh_pair[1]); /* the new watcher survived the rebuild */
    RUN_UNTIL(loop, &g, o.fresh.calls > 0);

    hk_close(&t.base, NULL);
    hk_close(&o.w.io.base, NULL);
    hk_close(&o.fresh.io.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    close(copy);
    close(s[1]);
    close_pair(o.fresh_pair);
}
