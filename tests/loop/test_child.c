/*
 * Child processes through pidfd: normal exit, death by signal, a child that
 * someone else reaped, several children at once, and the argument errors.
 * Children leave with _exit() so that no atexit handler (Criterion's, ASan's
 * leak check) runs twice.
 */
#include "util.h"

#include <signal.h>
#include <sys/wait.h>

typedef struct kid {
    hk_child_t c;
    int calls;
    int status;
    int sig;
    int active_in_cb;
} kid_t;

static void kid_cb(hk_child_t *child, int exit_status, int term_signal)
{
    kid_t *k = (kid_t *)child;
    k->calls++;
    k->status = exit_status;
    k->sig = term_signal;
    k->active_in_cb = hk_is_active(&child->base);
}

/* Forks a child that waits until gate (a pipe read end) closes, then exits with code. */
static pid_t spawn(int gate_rd, int gate_wr, int code)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        if (gate_wr >= 0)
            close(gate_wr);
        if (gate_rd >= 0) {
            int fl = fcntl(gate_rd, F_GETFL);
            fcntl(gate_rd, F_SETFL, fl & ~O_NONBLOCK);
            char c;
            while (read(gate_rd, &c, 1) > 0) {
            }
        }
        if (code < 0)
            for (;;)
                pause();
        _exit(code);
    }
    return pid;
}

Test(child, exit_code_after_start)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 20000);
    int gate[2];
    make_pipe(gate);
    pid_t pid = spawn(gate[0], gate[1], 7);
    kid_t k = {0};
    cr_assert_eq(hk_child_init(loop, &k.c), 0);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), 0);
    cr_assert_eq(k.c.pid, pid);
    cr_assert(hk_is_active(&k.c.base));
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), -EBUSY);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(k.calls, 0, "child is still running");
    close_pair(gate); /* lets the child exit */
    RUN_UNTIL(loop, &g, k.calls > 0);
    cr_assert_eq(k.calls, 1);
    cr_assert_eq(k.status, 7);
    cr_assert_eq(k.sig, 0);
    cr_assert_eq(k.active_in_cb, 0, "the watcher is inactive when the callback runs");
    cr_assert_eq(waitpid(pid, NULL, WNOHANG), -1, "the child was reaped");
    cr_assert_eq(errno, ECHILD);
    cr_assert_eq(hk_child_stop(&k.c), -EALREADY);
    hk_close(&k.c.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

Test(child, already_exited_zombie)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 20000);
    pid_t pid = spawn(-1, -1, 7);
    /* Wait until it is a zombie, without reaping it. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    kid_t k = {0};
    cr_assert_eq(hk_child_init(loop, &k.c), 0);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), 0);
    RUN_UNTIL(loop, &g, k.calls > 0);
    cr_assert_eq(k.status, 7);
    cr_assert_eq(k.sig, 0);
    hk_close(&k.c.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

Test(child, killed_by_sigterm)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 20000);
    pid_t pid = spawn(-1, -1, -1); /* pauses forever */
    kid_t k = {0};
    cr_assert_eq(hk_child_init(loop, &k.c), 0);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), 0);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    RUN_UNTIL(loop, &g, k.calls > 0);
    cr_assert_eq(k.calls, 1);
    cr_assert_eq(k.status, -1);
    cr_assert_eq(k.sig, SIGTERM);
    hk_close(&k.c.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

Test(child, reaped_by_someone_else)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 20000);
    pid_t pid = spawn(-1, -1, 3);
    kid_t k = {0};
    cr_assert_eq(hk_child_init(loop, &k.c), 0);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), 0);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    RUN_UNTIL(loop, &g, k.calls > 0);
    cr_assert_eq(k.calls, 1);
    cr_assert_eq(k.status, -ECHILD);
    cr_assert_eq(k.sig, 0);
    hk_close(&k.c.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

Test(child, several_children)
{
    enum { N = 6 };
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 20000);
    kid_t k[N];
    memset(k, 0, sizeof k);
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = spawn(-1, -1, 10 + i);
        cr_assert_eq(hk_child_init(loop, &k[i].c), 0);
        cr_assert_eq(hk_child_start(&k[i].c, kid_cb, pids[i]), 0);
    }
    int r = hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_not(g.fired);
    cr_assert_eq(r, 0, "all child watchers are inactive after their callbacks");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(k[i].calls, 1);
        cr_assert_eq(k[i].status, 10 + i, "child %d", i);
        hk_close(&k[i].c.base, NULL);
    }
    guard_close(&g);
    finish_loop(loop);
}

Test(child, stop_does_not_reap)
{
    hk_loop_t *loop = new_loop(0);
    pid_t pid = spawn(-1, -1, 5);
    kid_t k = {0};
    cr_assert_eq(hk_child_init(loop, &k.c), 0);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), 0);
    cr_assert_eq(hk_child_stop(&k.c), 0);
    cr_assert_eq(hk_child_stop(&k.c), -EALREADY);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid, "the stopped watcher must not have reaped it");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 5);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(k.calls, 0);
    hk_close(&k.c.base, NULL);
    finish_loop(loop);
}

Test(child, bad_pids)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 20000);
    kid_t k = {0};
    cr_assert_eq(hk_child_init(loop, &k.c), 0);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, 0), -EINVAL);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, -1), -EINVAL);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, -getpid()), -EINVAL);
    cr_assert_not(hk_is_active(&k.c.base));

    /* A pid that no longer exists: a child we already reaped. */
    pid_t gone = spawn(-1, -1, 0);
    cr_assert_eq(waitpid(gone, NULL, 0), gone);
    int r = hk_child_start(&k.c, kid_cb, gone);
    cr_assert_eq(r, -ESRCH, "nonexistent pid: got %s", hk_err_name(r));
    cr_assert_not(hk_is_active(&k.c.base));

    /* The watcher and the loop are still usable. */
    pid_t pid = spawn(-1, -1, 9);
    cr_assert_eq(hk_child_start(&k.c, kid_cb, pid), 0);
    RUN_UNTIL(loop, &g, k.calls > 0);
    cr_assert_eq(k.status, 9);
    hk_close(&k.c.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}
