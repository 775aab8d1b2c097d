/*
 * hk_loop_fork: a loop with an io watcher, a timer and an async handle is
 * forked; the child rebuilds the kernel state and uses the loop; the parent's
 * loop must be unaffected (the child shares the parent's epoll instance
 * until it rebuilds, so an EPOLL_CTL_DEL issued on the inherited epoll fd
 * would silently break the parent). The child reports through its exit code.
 */
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>

typedef struct world {
    hk_loop_t *loop;
    hk_io_t io;
    hk_timer_t timer;
    hk_async_t async;
    int io_calls, timer_calls, async_calls;
    int p[2];
    guard_t *parent_guard; /* started before the fork: the child closes its copy */
} world_t;

static world_t *g_w;

static void w_io_cb(hk_io_t *io, unsigned revents)
{
    (void)revents;
    g_w->io_calls++;
    drain_fd(io->fd);
}

static void w_timer_cb(hk_timer_t *t, uint64_t exp)
{
    (void)t;
    (void)exp;
    g_w->timer_calls++;
}

static void w_async_cb(hk_async_t *a)
{
    (void)a;
    g_w->async_calls++;
}

static int g_child_guard;

static void child_guard_cb(hk_timer_t *t, uint64_t exp)
{
    (void)exp;
    g_child_guard = 1;
    hk_loop_stop(t->base.loop);
}

/* Runs in the child; returns the exit code (0 = success). */
static int child_main(world_t *w)
{
    int r = hk_loop_fork(w->loop);
    if (r != 0) {
        fprintf(stderr, "child: hk_loop_fork: %s\n", hk_err_name(r));
        return 10;
    }
    hk_timer_t guard;
    if (hk_timer_init(w->loop, &guard) != 0 ||
        hk_timer_start_in(&guard, child_guard_cb, MS(10000), 0) != 0)
        return 11;
    hk_unref(&guard.base);
    char c = 'c';
    if (write(w->p[1], &c, 1) != 1)
        return 12;
    if (hk_async_send(&w->async) != 0)
        return 13;
    /* A watcher started in the child works too. */
    int q[2];
    if (pipe2(q, O_NONBLOCK | O_CLOEXEC) != 0)
        return 14;
    hk_io_t fresh;
    int fresh_calls = 0;
    fresh.base.data = NULL;
    if (hk_io_init(w->loop, &fresh, q[0]) != 0)
        return 15;
    if (hk_io_start(&fresh, HK_READABLE, w_io_cb) != 0)
        return 16;
    if (write(q[1], &c, 1) != 1)
        return 17;
    int base_io = w->io_calls;
    while (!g_child_guard &&
           (w->io_calls < base_io + 2 || w->timer_calls < 1 || w->async_calls < 1)) {
        if (hk_loop_run(w->loop, HK_RUN_ONCE) < 0)
            return 18;
    }
    fresh_calls = w->io_calls - base_io;
    if (g_child_guard) {
        fprintf(stderr, "child: timeout: io %d timer %d async %d\n", fresh_calls, w->timer_calls,
                w->async_calls);
        return 19;
    }
    hk_close(&fresh.base, NULL);
    hk_close(&guard.base, NULL);
    hk_close(&w->io.base, NULL);
    hk_close(&w->timer.base, NULL);
    hk_close(&w->async.base, NULL);
    guard_close(w->parent_guard);
    hk_loop_run(w->loop, HK_RUN_NOWAIT);
    r = hk_loop_free(w->loop);
    if (r != 0) {
        fprintf(stderr, "child: hk_loop_free after closing everything: %s\n", hk_err_name(r));
        return 20;
    }
    close(q[0]);
    close(q[1]);
    return 0;
}

static void fork_test(unsigned flags)
{
    world_t w;
    memset(&w, 0, sizeof w);
    g_w = &w;
    w.loop = new_loop(flags);
    guard_t g;
    guard_start(w.loop, &g, 20000);
    w.parent_guard = &g;
    make_pipe(w.p);
    cr_assert_eq(hk_io_init(w.loop, &w.io, w.p[0]), 0);
    cr_assert_eq(hk_io_start(&w.io, HK_READABLE, w_io_cb), 0);
    cr_assert_eq(hk_timer_init(w.loop, &w.timer), 0);
    cr_assert_eq(hk_timer_start_in(&w.timer, w_timer_cb, MS(30), 0), 0);
    cr_assert_eq(hk_async_init(w.loop, &w.async, w_async_cb), 0);
    /* Make sure the kernel state exists before the fork. */
    cr_assert_geq(hk_loop_run(w.loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(w.io_calls + w.timer_calls + w.async_calls, 0);

    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_main(&w));

    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 30000 && got == 0; i++) {
        got = waitpid(pid, &st, WNOHANG);
        if (got == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        cr_assert_fail("child did not finish");
    }
    cr_assert(WIFEXITED(st), "child died with signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    cr_assert_eq(WEXITSTATUS(st), 0, "child failed with code %d", WEXITSTATUS(st));

    /* The parent: nothing ran here, and everything still works. */
    cr_assert_eq(w.io_calls + w.timer_calls + w.async_calls, 0);
    write_byte(w.p[1]);
    cr_assert_eq(hk_async_send(&w.async), 0);
    RUN_UNTIL(w.loop, &g, w.io_calls > 0 && w.timer_calls > 0 && w.async_calls > 0);
    cr_assert_eq(w.io_calls, 1);
    cr_assert_eq(w.timer_calls, 1);
    hk_close(&w.io.base, NULL);
    hk_close(&w.timer.base, NULL);
    hk_close(&w.async.base, NULL);
    guard_close(&g);
    close_pair(w.p);
    finish_loop(w.loop);
}

Test(fork, child_and_parent_loops_work, .timeout = 50)
{
    fork_test(0);
}

Test(fork, child_and_parent_loops_work_timerfd, .timeout = 50)
{
    fork_test(HK_LOOP_TIMERFD);
}

/*
 * A watcher closed and its fd closed just before fork, its DEL still queued:
 * in the child the new epoll fd takes that number, and hk_loop_fork must not
 * try to re-register the old watcher there (it failed with EINVAL).
 */
static void nop_io_cb(hk_io_t *io, unsigned revents)
{
    (void)io;
    (void)revents;
}

Test(fork, fork_right_after_a_close)
{
    hk_loop_t *loop = new_loop(0);
    int sp[2];
    make_socketpair(sp);
    hk_io_t io;
    cr_assert_eq(hk_io_init(loop, &io, sp[0]), 0);
    cr_assert_eq(hk_io_start(&io, HK_READABLE, nop_io_cb), 0);
    cr_assert_eq(hk_io_stop(&io), 0);
    cr_assert_eq(close(sp[0]), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int r = hk_loop_fork(loop);
        _exit(r < 0 ? -r : 0);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st));
    cr_assert_eq(WEXITSTATUS(st), 0, "hk_loop_fork in the child: %s",
                 hk_err_name(-WEXITSTATUS(st)));
    hk_close(&io.base, NULL);
    finish_loop(loop);
    close(sp[1]);
}
