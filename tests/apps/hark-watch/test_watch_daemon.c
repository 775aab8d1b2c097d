/*
 * The daemon (watch.c) in process, on a real loop and pool, with the netlink
 * connector off: exec events are fed through watch_on_exec as netlink.c
 * would, and the counters of watch_internal.h are checked.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "watch_internal.h"

/* Child: an epoll set of 4 sockets; writes one byte to ready_fd when set up. */
static pid_t spawn_sockets(int ready_fd)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int ep = epoll_create1(0);
    for (int i = 0; i < 2; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            _exit(3);
        for (int j = 0; j < 2; j++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = sv[j]};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, sv[j], &ev) < 0)
                _exit(3);
        }
    }
    if (write(ready_fd, "r", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

static void run_until(hk_loop_t *loop, const uint64_t *counter, uint64_t want, const watch_t *w)
{
    while (*counter < want || w->scanning)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
}

Test(watch_daemon, a_pid_that_execs_twice_is_judged_once)
{
    /* No warm-up, floor 1: a new executable's first process with a socket entry alerts. */
    watch_config_t cfg = {.alpha = 0.001,
                          .floor = 1,
                          .warmup = 0,
                          .interval_ns = UINT64_C(3600000000000),
                          .no_netlink = 1};
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    watch_t *w;
    cr_assert_eq(watch_start(loop, &cfg, &w), 0);
    run_until(loop, &w->scans, 1, w); /* the first full scan: the child is not there yet */
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn_sockets(rp[1]);
    char c;
    cr_assert_eq(read(rp[0], &c, 1), 1);
    uint64_t alerts = w->alerts;
    /* A wrapper that execs its program (sh -c 'exec ...', env) gives two exec events. */
    watch_on_exec(w, pid);
    watch_on_exec(w, pid);
    run_until(loop, &w->partial_scans, 1, w);
    cr_assert_eq(w->alerts - alerts, 1, "one alert per process, got %llu",
                 (unsigned long long)(w->alerts - alerts));
    size_t flagged = 0;
    for (size_t i = 0; i < w->nflagged; i++)
        flagged += w->flagged[i] == pid;
    cr_assert_eq(flagged, 1, "flagged once, not %zu times", flagged);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    watch_stop(w);
    while (hk_loop_run(loop, HK_RUN_ONCE) > 0)
        ;
    watch_free(w);
    hk_loop_free(loop);
    close(rp[0]);
    close(rp[1]);
}
