/*
 * Signals through signalfd: one watcher, several watchers for one signal, and
 * the multi-loop rule of loop.h (every loop watching a signal sees each
 * delivery; a loop not watching it never does), with real kill() calls.
 *
 * Criterion runs each test in a forked worker whose only other thread blocks
 * every signal, so process-directed signals reach our threads only.
 */
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

typedef struct sigw {
    hk_signal_t s;
    int calls;
    int last;
} sigw_t;

static void sig_cb(hk_signal_t *sig, int signum)
{
    sigw_t *w = (sigw_t *)sig;
    w->calls++;
    w->last = signum;
}

static void block_signals(const int *sigs, int n)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
}

/* hk_signal_start itself blocks the signal in the calling thread (loop.h). */
Test(signal, sigusr1_without_prior_blocking)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    sigw_t w = {0};
    cr_assert_eq(hk_signal_init(loop, &w.s), 0);
    cr_assert_eq(hk_signal_start(&w.s, sig_cb, SIGUSR1), 0);
    cr_assert_eq(w.s.signum, SIGUSR1);
    cr_assert(hk_is_active(&w.s.base));
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    RUN_UNTIL(loop, &g, w.calls > 0);
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.last, SIGUSR1);

    /* A second delivery gives a second call. */
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    RUN_UNTIL(loop, &g, w.calls > 1);
    cr_assert_eq(w.calls, 2);
    hk_close(&w.s.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

/*
 * A delivery still pending when the last watcher stops (it came while watched,
 * the loop has not read it yet) is taken, not let through to the default
 * action when the signal is unblocked: for SIGUSR2 that would end the process.
 */
Test(signal, stop_with_a_delivery_pending)
{
    hk_loop_t *loop = new_loop(0);
    sigw_t w = {0};
    cr_assert_eq(hk_signal_init(loop, &w.s), 0);
    cr_assert_eq(hk_signal_start(&w.s, sig_cb, SIGUSR2), 0);
    cr_assert_eq(raise(SIGUSR2), 0); /* to this thread, which blocks it: pending */
    sigset_t set;
    cr_assert_eq(sigpending(&set), 0);
    cr_assert(sigismember(&set, SIGUSR2));
    cr_assert_eq(hk_signal_stop(&w.s), 0);
    cr_assert_eq(sigpending(&set), 0);
    cr_assert_not(sigismember(&set, SIGUSR2));
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, NULL, &set), 0);
    cr_assert_not(sigismember(&set, SIGUSR2), "the default action is back");
    cr_assert_eq(w.calls, 0);
    hk_close(&w.s.base, NULL);
    finish_loop(loop);
}

static void count_io_cb(hk_io_t *io, unsigned revents)
{
    (void)revents;
    char c;
    cr_assert_eq(read(io->fd, &c, 1), 1);
    (*(int *)io->base.data)++;
}

/*
 * The loop's own fds register with generation 0 and the slot offset as the
 * tag, so a signalfd that gets fd number 0 carries tag 0: the tag of a slot
 * with no watcher must never equal it, or the event would reach a NULL
 * watcher. A readable io watcher shares the batch with the signal.
 */
Test(signal, signalfd_as_fd_zero)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    int sp[2];
    make_socketpair(sp);
    int io_calls = 0;
    hk_io_t io;
    cr_assert_eq(hk_io_init(loop, &io, sp[0]), 0);
    io.base.data = &io_calls;
    cr_assert_eq(hk_io_start(&io, HK_READABLE, count_io_cb), 0);

    int saved = dup(0);
    cr_assert_geq(saved, 0);
    cr_assert_eq(close(0), 0);
    sigw_t w = {0};
    cr_assert_eq(hk_signal_init(loop, &w.s), 0);
    cr_assert_eq(hk_signal_start(&w.s, sig_cb, SIGUSR1), 0);
    char target[64] = {0};
    cr_assert_gt(readlink("/proc/self/fd/0", target, sizeof target - 1), 0);
    cr_assert(strstr(target, "signalfd") != NULL, "fd 0 is %s, not the loop's signalfd", target);

    write_byte(sp[1]);
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    RUN_UNTIL(loop, &g, w.calls > 0 && io_calls > 0);
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(io_calls, 1);

    hk_close(&w.s.base, NULL);
    hk_close(&io.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    cr_assert_eq(dup2(saved, 0), 0);
    cr_assert_eq(close(saved), 0);
    close_pair(sp);
}

Test(signal, several_watchers_same_signal)
{
    const int sigs[] = {SIGUSR1, SIGUSR2};
    block_signals(sigs, 2);
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    sigw_t w[4];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(hk_signal_init(loop, &w[i].s), 0);
        cr_assert_eq(hk_signal_start(&w[i].s, sig_cb, SIGUSR1), 0);
    }
    cr_assert_eq(hk_signal_init(loop, &w[3].s), 0);
    cr_assert_eq(hk_signal_start(&w[3].s, sig_cb, SIGUSR2), 0);

    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    RUN_UNTIL(loop, &g, w[0].calls > 0 && w[1].calls > 0 && w[2].calls > 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].calls, 1, "watcher %d", i);
        cr_assert_eq(w[i].last, SIGUSR1);
    }
    cr_assert_eq(w[3].calls, 0, "SIGUSR2 watcher got SIGUSR1");

    /* A stopped watcher no longer sees the signal; the others still do. */
    cr_assert_eq(hk_signal_stop(&w[1].s), 0);
    cr_assert_eq(hk_signal_stop(&w[1].s), -EALREADY);
    cr_assert_eq(kill(getpid(), SIGUSR1), 0);
    RUN_UNTIL(loop, &g, w[0].calls > 1 && w[2].calls > 1);
    cr_assert_eq(w[1].calls, 1);

    cr_assert_eq(kill(getpid(), SIGUSR2), 0);
    RUN_UNTIL(loop, &g, w[3].calls > 0);
    cr_assert_eq(w[3].last, SIGUSR2);
    cr_assert_eq(w[0].calls, 2);
    for (int i = 0; i < 4; i++)
        hk_close(&w[i].s.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

/* Two loops in two threads. */
typedef struct sigloop {
    pthread_t thread;
    int own;
    hk_loop_t *loop;
    hk_signal_t own_w, hup_w;
    hk_async_t quit;
    atomic_int got_own, got_hup, got_other, ready, err;
} sigloop_t;

static void sl_cb(hk_signal_t *sig, int signum)
{
    sigloop_t *sl = sig->base.data;
    if (signum != sig->signum)
        atomic_fetch_add(&sl->got_other, 1);
    else if (signum == SIGHUP)
        atomic_fetch_add(&sl->got_hup, 1);
    else if (signum == sl->own)
        atomic_fetch_add(&sl->got_own, 1);
    else
        atomic_fetch_add(&sl->got_other, 1);
}

static void sl_quit(hk_async_t *a)
{
    hk_loop_stop(a->base.loop);
}

static void *sl_thread(void *arg)
{
    sigloop_t *sl = arg;
    int r = hk_loop_new(&sl->loop, 0);
    if (r != 0) {
        atomic_store(&sl->err, 1);
        atomic_store(&sl->ready, 1);
        return NULL;
    }
    if (hk_signal_init(sl->loop, &sl->own_w) != 0 ||
        hk_signal_start(&sl->own_w, sl_cb, sl->own) != 0 ||
        hk_signal_init(sl->loop, &sl->hup_w) != 0 ||
        hk_signal_start(&sl->hup_w, sl_cb, SIGHUP) != 0 ||
        hk_async_init(sl->loop, &sl->quit, sl_quit) != 0)
        atomic_store(&sl->err, 2);
    sl->own_w.base.data = sl;
    sl->hup_w.base.data = sl;
    atomic_store(&sl->ready, 1);
    if (atomic_load(&sl->err) == 0) {
        r = hk_loop_run(sl->loop, HK_RUN_DEFAULT);
        if (r < 0)
            atomic_store(&sl->err, 3);
    }
    hk_close(&sl->own_w.base, NULL);
    hk_close(&sl->hup_w.base, NULL);
    hk_close(&sl->quit.base, NULL);
    hk_loop_run(sl->loop, HK_RUN_NOWAIT);
    if (hk_loop_free(sl->loop) != 0)
        atomic_store(&sl->err, 4);
    return NULL;
}

static int wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(v) >= want)
            return 1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

Test(signal, two_loops_two_threads, .timeout = 50)
{
    const int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP};
    block_signals(sigs, 3); /* before creating threads: inherited by them */
    sigloop_t a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.own = SIGUSR1;
    b.own = SIGUSR2;
    cr_assert_eq(pthread_create(&a.thread, NULL, sl_thread, &a), 0);
    cr_assert_eq(pthread_create(&b.thread, NULL, sl_thread, &b), 0);
    int ok = wait_for(&a.ready, 1) && wait_for(&b.ready, 1);
    int ok_usr1 = 0, ok_usr2 = 0, ok_hup = 0;
    if (ok && !a.err && !b.err) {
        kill(getpid(), SIGUSR1);
        ok_usr1 = wait_for(&a.got_own, 1);
        kill(getpid(), SIGUSR2);
        ok_usr2 = wait_for(&b.got_own, 1);
        kill(getpid(), SIGHUP);
        ok_hup = wait_for(&a.got_hup, 1) && wait_for(&b.got_hup, 1);
        struct timespec ts = {0, 50000000}; /* room for a wrong extra delivery */
        nanosleep(&ts, NULL);
    }
    if (a.loop != NULL && !a.err)
        hk_async_send(&a.quit);
    if (b.loop != NULL && !b.err)
        hk_async_send(&b.quit);
    pthread_join(a.thread, NULL);
    pthread_join(b.thread, NULL);
    cr_assert(ok, "threads never became ready");
    cr_assert_eq(atomic_load(&a.err), 0, "loop A setup/teardown error %d", atomic_load(&a.err));
    cr_assert_eq(atomic_load(&b.err), 0, "loop B setup/teardown error %d", atomic_load(&b.err));
    cr_assert(ok_usr1, "loop A never saw SIGUSR1");
    cr_assert(ok_usr2, "loop B never saw SIGUSR2");
    cr_assert(ok_hup, "SIGHUP not seen by both loops (A %d, B %d)", atomic_load(&a.got_hup),
              atomic_load(&b.got_hup));
    cr_assert_eq(atomic_load(&a.got_own), 1);
    cr_assert_eq(atomic_load(&b.got_own), 1);
    cr_assert_eq(atomic_load(&a.got_hup), 1);
    cr_assert_eq(atomic_load(&b.got_hup), 1);
    cr_assert_eq(atomic_load(&a.got_other), 0, "loop A saw a signal it does not watch");
    cr_assert_eq(atomic_load(&b.got_other), 0, "loop B saw a signal it does not watch");
}

/*
 * A callback stops its watcher and closes the fd (the DEL waits in the change
 * list), then starts a signal watcher: the new signalfd takes the closed
 * number. The queued DEL must not remove the signalfd's registration.
 */
static sigw_t g_reuse_sig;

static void stop_close_then_signal_cb(hk_io_t *io, unsigned revents)
{
    (void)revents;
    cr_assert_eq(hk_io_stop(io), 0);
    int fd = io->fd;
    cr_assert_eq(close(fd), 0);
    cr_assert_eq(hk_signal_init(io->base.loop, &g_reuse_sig.s), 0);
    cr_assert_eq(hk_signal_start(&g_reuse_sig.s, sig_cb, SIGUSR2), 0);
    char target[64] = {0};
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    cr_assert_gt(readlink(link, target, sizeof target - 1), 0);
    cr_assert(strstr(target, "signalfd") != NULL, "fd %d is %s, not the new signalfd", fd, target);
}

Test(signal, signalfd_reuses_number_with_del_pending)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 5000);
    int sp[2];
    make_socketpair(sp);
    hk_io_t io;
    cr_assert_eq(hk_io_init(loop, &io, sp[0]), 0);
    cr_assert_eq(hk_io_start(&io, HK_READABLE, stop_close_then_signal_cb), 0);
    write_byte(sp[1]);
    RUN_UNTIL(loop, &g, hk_is_active(&g_reuse_sig.s.base));
    cr_assert_eq(kill(getpid(), SIGUSR2), 0);
    RUN_UNTIL(loop, &g, g_reuse_sig.calls > 0);

    hk_close(&g_reuse_sig.s.base, NULL);
    hk_close(&io.base, NULL);
    guard_close(&g);
    finish_loop(loop);
    close(sp[1]);
}
