/*
 * The /proc scanner in process, against children whose fds we control: the
 * kinds of interest entries, listening sockets, processes that are gone, and
 * churn (200 short-lived processes starting and exiting while we scan).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/close_range.h>
#include <unistd.h>

#include "scan.h"

static void add(int ep, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        _exit(3);
}

/* Child: epoll set of 5 pipes, 2 unix sockets, 1 eventfd, plus a TCP listener (not watched). */
static pid_t spawn_child(int ready_fd)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* Only our own fds: Criterion's (it has epoll sets too) must not count. */
    dup2(ready_fd, 3);
    ready_fd = 3;
    close_range(4, ~0u, 0);
    int ep = epoll_create1(0);
    for (int i = 0; i < 5; i++) {
        int p[2];
        if (pipe(p) < 0)
            _exit(3);
        add(ep, p[0]);
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        _exit(3);
    add(ep, sv[0]);
    add(ep, sv[1]);
    add(ep, eventfd(0, 0));
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 4) < 0)
        _exit(3);
    if (write(ready_fd, "r", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

Test(scan, entries_by_kind_and_listening)
{
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn_child(rp[1]);
    char c;
    cr_assert_eq(read(rp[0], &c, 1), 1);
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, NULL);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1);
    const proc_rec_t *p = &sc.procs[0];
    cr_assert_eq(p->pid, pid);
    cr_assert_eq(p->epolls, 1, "epolls %u fds %u entries %u", p->epolls, p->fds, p->entries);
    cr_assert_eq(p->entries, 8);
    cr_assert_eq(p->kinds[WK_PIPE], 5);
    cr_assert_eq(p->kinds[WK_SOCKET], 2);
    cr_assert_eq(p->kinds[WK_EVENTFD], 1);
    cr_assert_eq(p->listening, 1, "the TCP listener makes it a network service");
    cr_assert_eq(p->sock_n, 2);
    cr_assert_eq(p->uid, getuid());
    cr_assert_str_eq(scan_user(&sc, p), getuid() == 0 ? "root" : scan_user(&sc, p));
    cr_assert(strlen(scan_exe(&sc, p)) > 1);
    /* A full scan finds it too, and ourselves. */
    cr_assert_eq(scanner_run(&s, NULL, 0, &sc), 0);
    int found = 0;
    for (size_t i = 0; i < sc.nprocs; i++)
        found += sc.procs[i].pid == pid || sc.procs[i].pid == getpid();
    cr_assert_eq(found, 2);
    /* Two shards merged: the child is found once, with the same counts and strings. */
    scanner_t s0, s1;
    scan_t p0 = {0}, p1 = {0}, merged = {0};
    scanner_init(&s0, NULL);
    scanner_init(&s1, NULL);
    scanner_shard(&s0, 0, 2);
    scanner_shard(&s1, 1, 2);
    cr_assert_eq(scanner_run(&s0, NULL, 0, &p0), 0);
    cr_assert_eq(scanner_run(&s1, NULL, 0, &p1), 0);
    for (size_t i = 0; i < p0.nprocs; i++)
        cr_assert_eq(p0.procs[i].pid % 2, 0);
    scan_t *parts[] = {&p0, &p1};
    cr_assert_eq(scan_merge(&merged, parts, 2), 0);
    cr_assert_eq(merged.nprocs, p0.nprocs + p1.nprocs);
    int once = 0;
    for (size_t i = 0; i < merged.nprocs; i++) {
        const proc_rec_t *m = &merged.procs[i];
        if (m->pid != pid)
            continue;
        once++;
        cr_assert_eq(m->entries, 8);
        cr_assert_eq(m->sock_n, 2);
        char link[64], exe[4096];
        snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(link, exe, sizeof exe - 1);
        cr_assert_gt(n, 0);
        exe[n] = '\0';
        cr_assert_str_eq(scan_exe(&merged, m), exe, "string offsets fixed by the merge");
        cr_assert_eq(m->uid, getuid());
        for (uint32_t k = 0; k < m->sock_n; k++)
            cr_assert_neq(merged.inodes[m->sock_off + k], 0);
    }
    cr_assert_eq(once, 1);
    scan_free(&p0);
    scan_free(&p1);
    scan_free(&merged);
    scanner_free(&s0);
    scanner_free(&s1);
    /* Gone: the pid of a reaped child is counted, not recorded. */
    reap(pid);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 0);
    cr_assert_eq(sc.gone, 1);
    scan_free(&sc);
    scanner_free(&s);
    close(rp[0]);
    close(rp[1]);
}

Test(scan, churn_of_200_processes)
{
    /* A forker child keeps starting processes that build an epoll set and exit at once. */
    pid_t forker = fork();
    cr_assert_geq(forker, 0);
    if (forker == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int i = 0; i < 200; i++) {
            pid_t p = fork();
            if (p == 0) {
                int ep = epoll_create1(0);
                for (int j = 0; j < 1 + i % 16; j++) {
                    int pp[2];
                    if (pipe(pp) == 0)
                        add(ep, pp[0]);
                }
                usleep((useconds_t)(i % 5) * 1000);
                _exit(0);
            }
            if (i % 20 == 19)
                while (waitpid(-1, NULL, WNOHANG) > 0)
                    ;
        }
        while (wait(NULL) > 0)
            ;
        _exit(0);
    }
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, NULL);
    int scans = 0, status;
    while (waitpid(forker, &status, WNOHANG) == 0 && scans < 100000) {
        cr_assert_eq(scanner_run(&s, NULL, 0, &sc), 0);
        for (size_t i = 0; i < sc.nprocs; i++)
            cr_assert_leq(sc.procs[i].entries, 16 + 1000000u);
        scans++;
    }
    if (scans >= 100000)
        reap(forker);
    cr_assert_gt(scans, 0);
    scan_free(&sc);
    scanner_free(&s);
}
