/*
 * The /proc scanner in process, against children whose fds we control: the
 * kinds of interest entries, listening sockets, processes that are gone,
 * sockets whose fd was dup'd and closed, the fd-table memo (reused while a
 * process sleeps, never after it ran), and churn (200 short-lived processes
 * starting and exiting while we scan).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/*
 * Forks; returns the pid in the parent. In the child, which dies with us,
 * ready_fd becomes fd 3 and cmd_fd (if >= 0) fd 4, and every other fd above
 * 2 is closed: only the child's own fds count, not Criterion's (it has epoll
 * sets too).
 */
static pid_t fork_child(int ready_fd, int cmd_fd)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(ready_fd, 3);
    if (cmd_fd >= 0)
        dup2(cmd_fd, 4);
    close_range(cmd_fd >= 0 ? 5 : 4, ~0u, 0);
    return 0;
}

/* In a child: allows it n fds (RLIMIT_NOFILE), or exits 4, for wait_ready to skip the test. */
static void child_allow_fds(rlim_t n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_max < n)
        _exit(4);
    rl.rlim_cur = n;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        _exit(4);
}

/*
 * Waits for child pid's ready byte on rp[0], our rp[1] closed first: a child
 * that fails before it is ready is then an end of file here, not a read that
 * waits for the test's timeout. A child that exited 4 could not have the fds
 * it needs (child_allow_fds): the test is skipped. Any other failure fails it.
 */
static void wait_ready(int rp[2], pid_t pid)
{
    char c;
    close(rp[1]);
    rp[1] = -1;
    if (read(rp[0], &c, 1) == 1)
        return;
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 4, "the child failed before it was ready: %#x",
              st);
    cr_skip_test("RLIMIT_NOFILE does not allow the fds this test needs");
}

/* Child: epoll set of 5 pipes, 2 unix sockets, 1 eventfd, plus a TCP listener (not watched). */
static pid_t spawn_child(int ready_fd)
{
    pid_t pid = fork_child(ready_fd, -1);
    if (pid)
        return pid;
    ready_fd = 3;
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

/* Starts a child with spawn (it writes one byte to rp[1] when set up) and scans just it. */
static pid_t scan_child(pid_t (*spawn)(int), int rp[2], scanner_t *s, scan_t *sc)
{
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn(rp[1]);
    char c;
    cr_assert_eq(read(rp[0], &c, 1), 1);
    scanner_init(s, NULL);
    cr_assert_eq(scanner_run(s, &pid, 1, sc), 0);
    cr_assert_eq(sc->nprocs, 1);
    return pid;
}

Test(scan, entries_by_kind_and_listening)
{
    int rp[2];
    scanner_t s;
    scan_t sc = {0};
    pid_t pid = scan_child(spawn_child, rp, &s, &sc);
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

/* Child: one epoll set; a socket, a pipe and an eventfd in it, each dup'd to 200+ and closed. */
static pid_t spawn_hider(int ready_fd)
{
    pid_t pid = fork_child(ready_fd, -1);
    if (pid)
        return pid;
    int ep = epoll_create1(0), sv[2], p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(p) < 0)
        _exit(3);
    int hidden[] = {sv[0], p[0], eventfd(0, 0)};
    for (int i = 0; i < 3; i++) {
        add(ep, hidden[i]);
        if (dup2(hidden[i], 200 + i) < 0 || close(hidden[i]) < 0)
            _exit(3);
    }
    if (write(3, "r", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

Test(scan, entries_of_closed_numbers_keep_their_kind_by_sdev)
{
    int rp[2];
    scanner_t s;
    scan_t sc = {0};
    pid_t pid = scan_child(spawn_hider, rp, &s, &sc);
    const proc_rec_t *p = &sc.procs[0];
    cr_assert_eq(p->entries, 3);
    cr_assert_eq(p->kinds[WK_SOCKET], 1, "a socket moved to another number is still a socket");
    cr_assert_eq(p->kinds[WK_PIPE], 1);
    cr_assert_eq(p->kinds[WK_GONE], 1, "an eventfd's kind needs its number");
    cr_assert_eq(p->sock_n, 1);
    cr_assert_neq(sc.inodes[p->sock_off], 0);
    scan_free(&sc);
    scanner_free(&s);
    reap(pid);
    close(rp[0]);
    close(rp[1]);
}

static void *leaderless_thread(void *arg)
{
    (void)arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the leader's setting does not cover this thread */
    for (;;)
        pause();
    return NULL;
}

/*
 * Child: an epoll set of 20 sockets, a second thread, then the leader exits
 * alone (SYS_exit, not exit_group). The process lives on in that thread, but
 * /proc/<pid>/exe and /proc/<pid>/fd are the dead leader's: no link, no fds.
 */
static pid_t spawn_leaderless(int ready_fd)
{
    pid_t pid = fork_child(ready_fd, -1);
    if (pid)
        return pid;
    int ep = epoll_create1(0);
    for (int i = 0; i < 10; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            _exit(3);
        add(ep, sv[0]);
        add(ep, sv[1]);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, leaderless_thread, NULL) != 0 || write(3, "r", 1) != 1)
        _exit(3);
    syscall(SYS_exit, 0);
    return 0;
}

Test(scan, a_process_whose_leader_thread_exited_is_still_scanned)
{
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn_leaderless(rp[1]);
    char c, link[16], path[64];
    cr_assert_eq(read(rp[0], &c, 1), 1);
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    for (int i = 0; i < 5000 && readlink(path, link, sizeof link) >= 0; i++)
        usleep(1000); /* until the leader is gone */
    cr_assert_lt(readlink(path, link, sizeof link), 0, "the leader exited");
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, NULL);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1, "not skipped as a kernel thread (kthreads %llu)",
                 (unsigned long long)sc.kthreads);
    const proc_rec_t *p = &sc.procs[0];
    cr_assert_eq(p->pid, pid);
    cr_assert_eq(p->epolls, 1);
    cr_assert_eq(p->kinds[WK_SOCKET], 20);
    cr_assert(strlen(scan_exe(&sc, p)) > 1);
    /* A full scan finds it too. */
    cr_assert_eq(scanner_run(&s, NULL, 0, &sc), 0);
    const proc_rec_t *q = NULL;
    for (size_t i = 0; i < sc.nprocs; i++)
        if (sc.procs[i].pid == pid)
            q = &sc.procs[i];
    cr_assert_not_null(q);
    cr_assert_eq(q->kinds[WK_SOCKET], 20);
    scan_free(&sc);
    scanner_free(&s);
    reap(pid);
    close(rp[0]);
    close(rp[1]);
}

/* Child: an epoll set of one pipe, and 3 spare pipe ends; on 's' it swaps 3 of its fds. */
static pid_t spawn_sleeper(int ready_fd, int cmd_fd)
{
    pid_t pid = fork_child(ready_fd, cmd_fd);
    if (pid)
        return pid;
    int ep = epoll_create1(0), p[2], spare[2];
    if (pipe(p) < 0 || pipe(spare) < 0)
        _exit(3);
    add(ep, p[0]);
    int third = dup(p[1]);
    for (;;) {
        if (write(3, "r", 1) != 1)
            _exit(3);
        char c;
        if (read(4, &c, 1) != 1) /* asleep here: the CPU clock stands still */
            _exit(0);
        /* The same number of fds: close three, open an epoll set and a socket pair. */
        close(spare[0]);
        close(spare[1]);
        close(third);
        int ep2 = epoll_create1(0), sv[2];
        if (ep2 < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            _exit(3);
        add(ep2, sv[0]);
        add(ep2, sv[1]);
    }
}

static const proc_rec_t *find(const scan_t *sc, pid_t pid)
{
    for (size_t i = 0; i < sc->nprocs; i++)
        if (sc->procs[i].pid == pid)
            return &sc->procs[i];
    return NULL;
}

/* A full scan in which pid is not due for its periodic full pass. */
static void full_scan_not_due(scanner_t *s, scan_t *sc, pid_t pid)
{
    if (((uint32_t)pid + s->memo.scans + 1) % MEMO_REVALIDATE == 0)
        cr_assert_eq(scanner_run(s, NULL, 0, sc), 0);
    cr_assert_eq(scanner_run(s, NULL, 0, sc), 0);
}

Test(scan, memo_reuses_tables_of_sleeping_processes_only)
{
    int rp[2], cp[2];
    cr_assert_eq(pipe(rp), 0);
    cr_assert_eq(pipe(cp), 0);
    pid_t pid = spawn_sleeper(rp[1], cp[0]);
    char c;
    cr_assert_eq(read(rp[0], &c, 1), 1);
    scanner_t s, cold;
    scan_t sc = {0}, sc_cold = {0};
    scanner_init(&s, NULL);
    scanner_init(&cold, NULL);
    scanner_memo(&cold, 0);
    cr_assert_eq(scanner_run(&s, NULL, 0, &sc), 0);
    cr_assert_eq(sc.reused, 0, "the first scan reads every table");
    const proc_rec_t *p = find(&sc, pid);
    cr_assert_not_null(p);
    proc_rec_t first = *p;
    cr_assert_eq(first.epolls, 1);
    full_scan_not_due(&s, &sc, pid);
    cr_assert_gt(sc.reused, 0, "the child slept: its table is reused");
    p = find(&sc, pid);
    cr_assert_not_null(p);
    cr_assert_eq(p->fds, first.fds);
    cr_assert_eq(p->epolls, first.epolls);
    cr_assert_eq(p->entries, first.entries);
    cr_assert_eq(memcmp(p->kinds, first.kinds, sizeof first.kinds), 0);
    cr_assert_eq(scanner_run(&cold, NULL, 0, &sc_cold), 0);
    cr_assert_eq(sc_cold.reused, 0);

    /* Swap three fds for an epoll set of two sockets: same count, same directory. */
    cr_assert_eq(write(cp[1], "s", 1), 1);
    cr_assert_eq(read(rp[0], &c, 1), 1);
    full_scan_not_due(&s, &sc, pid);
    p = find(&sc, pid);
    cr_assert_not_null(p);
    cr_assert_eq(p->fds, first.fds);
    cr_assert_eq(p->epolls, 2, "the child ran: its table is read again");
    cr_assert_eq(p->kinds[WK_SOCKET], 2);
    cr_assert_eq(p->entries, 3);
    scan_free(&sc);
    scan_free(&sc_cold);
    scanner_free(&s);
    scanner_free(&cold);
    reap(pid);
    close(rp[0]);
    close(rp[1]);
    close(cp[0]);
    close(cp[1]);
}

Test(scan, memo_lookup_and_periodic_full_pass)
{
    memo_t m = {0};
    /* Open fds 0, 1 and 3 (2 is closed), by number. */
    const watch_fd_t fds[3] = {{.fd = 0, .kind = WK_FILE},
                               {.fd = 1, .kind = WK_SOCKET, .ino = 42},
                               {.fd = 3, .kind = WK_EPOLL}};
    const uint8_t kind[3] = {WK_FILE, WK_SOCKET, WK_EPOLL};
    const uint32_t nums[3] = {0, 1, 3};
    memo_begin(&m);
    const pid_t pids[] = {500, 100, 300}; /* out of order: sorted when looked up */
    for (int i = 0; i < 3; i++) {
        fd_memo_t r = {.pid = pids[i], .nkind = 3, .dir_ino = 7, .count = 3, .cpu_ns = 9};
        cr_assert_eq(memo_put(&m, &r, fds), 0);
    }
    memo_begin(&m);
    for (int i = 0; i < 3; i++) {
        pid_t pid = pids[i];
        const fd_memo_t *r = memo_find(&m, pid);
        if (((uint32_t)pid + m.scans) % MEMO_REVALIDATE == 0) {
            cr_assert_null(r, "pid %d is due for its full pass", (int)pid);
            continue;
        }
        cr_assert_not_null(r);
        cr_assert_eq(r->pid, pid);
        cr_assert_eq(memcmp(memo_kinds(&m, r), kind, 3), 0);
        cr_assert_eq(memcmp(memo_fds(&m, r), nums, sizeof nums), 0);
        cr_assert_eq(memo_inos(&m, r)[0], 42, "only the sockets' inodes are kept");
    }
    cr_assert_null(memo_find(&m, 200));
    /* Over MEMO_REVALIDATE scans, each carrying the record forward, every pid is due once. */
    fd_memo_t r100 = {.pid = 100, .nkind = 3, .dir_ino = 7, .count = 3, .cpu_ns = 9};
    cr_assert_eq(memo_put(&m, &r100, fds), 0);
    int due = 0;
    for (int k = 0; k < MEMO_REVALIDATE; k++) {
        memo_begin(&m);
        due += memo_find(&m, 100) == NULL;
        cr_assert_eq(memo_put(&m, &r100, fds), 0);
    }
    cr_assert_eq(due, 1);
    memo_free(&m);
    /* The CPU clock of a live process, and an error for a reaped one. */
    cr_assert_gt(memo_cpu_ns(getpid()), 0);
    pid_t dead = fork();
    cr_assert_geq(dead, 0);
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    cr_assert_lt(memo_cpu_ns(dead), 0);
}

/* Child: epoll set fd 4 watches 3 sockets, epoll set fd 5 watches 2. */
static pid_t spawn_two_sets(int ready_fd)
{
    pid_t pid = fork_child(ready_fd, -1);
    if (pid)
        return pid;
    int ep1 = epoll_create1(0), ep2 = epoll_create1(0);
    if (ep1 != 4 || ep2 != 5)
        _exit(3);
    for (int i = 0; i < 5; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            _exit(3);
        add(i < 3 ? ep1 : ep2, sv[0]);
    }
    if (write(3, "r", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

static void symlink_to(const char *target, const char *root, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    cr_assert_eq(symlink(target, path), 0, "%s", path);
}

/*
 * An epoll set whose fdinfo opens but cannot be read (the process exits, the
 * fd closes, or as here, in a /proc that is the child's own but for that one
 * file, which is a directory: EISDIR). Before, the read error was ignored and
 * the process recorded with the other set only: a smaller sample. Now the
 * sample is discarded and the process counted as skipped. (A real race cannot
 * be made to fall between our open and our read, hence the tree.)
 */
Test(scan, a_failed_fdinfo_read_discards_the_sample)
{
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn_two_sets(rp[1]);
    char c;
    cr_assert_eq(read(rp[0], &c, 1), 1);
    char root[] = "/tmp/hkw-proc-XXXXXX", rel[64], target[64];
    cr_assert_not_null(mkdtemp(root));
    snprintf(rel, sizeof rel, "%s/%d", root, (int)pid);
    cr_assert_eq(mkdir(rel, 0700), 0);
    snprintf(rel, sizeof rel, "%d/exe", (int)pid);
    symlink_to("/usr/bin/two-sets", root, rel);
    snprintf(rel, sizeof rel, "%d/fd", (int)pid);
    snprintf(target, sizeof target, "/proc/%d/fd", (int)pid);
    symlink_to(target, root, rel);
    snprintf(rel, sizeof rel, "%s/%d/fdinfo", root, (int)pid);
    cr_assert_eq(mkdir(rel, 0700), 0);
    snprintf(rel, sizeof rel, "%d/fdinfo/4", (int)pid);
    snprintf(target, sizeof target, "/proc/%d/fdinfo/4", (int)pid);
    symlink_to(target, root, rel);
    char set5[256];
    snprintf(set5, sizeof set5, "%s/%d/fdinfo/5", root, (int)pid);
    snprintf(target, sizeof target, "/proc/%d/fdinfo/5", (int)pid);
    cr_assert_eq(symlink(target, set5), 0);

    /* Both sets readable through the tree: the full sample. */
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, root);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1);
    cr_assert_eq(sc.procs[0].epolls, 2);
    cr_assert_eq(sc.procs[0].kinds[WK_SOCKET], 5);

    /* Set 5 opens but does not read: no sample, and the process is counted as skipped. */
    cr_assert_eq(unlink(set5), 0);
    cr_assert_eq(mkdir(set5, 0700), 0);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 0, "recorded with %u epoll sets and %u sockets",
                 sc.nprocs ? sc.procs[0].epolls : 0, sc.nprocs ? sc.procs[0].kinds[WK_SOCKET] : 0);
    cr_assert_eq(sc.gone + sc.denied, 1);
    cr_assert_eq(sc.ninodes, 0, "no socket inodes of the dropped sample are left");

    scan_free(&sc);
    scanner_free(&s);
    reap(pid);
    close(rp[0]);
    close(rp[1]);
    rmdir(set5);
    snprintf(rel, sizeof rel, "%s/%d/fdinfo/4", root, (int)pid);
    unlink(rel);
    snprintf(rel, sizeof rel, "%s/%d/fdinfo", root, (int)pid);
    rmdir(rel);
    snprintf(rel, sizeof rel, "%s/%d/fd", root, (int)pid);
    unlink(rel);
    snprintf(rel, sizeof rel, "%s/%d/exe", root, (int)pid);
    unlink(rel);
    snprintf(rel, sizeof rel, "%s/%d", root, (int)pid);
    rmdir(rel);
    rmdir(root);
}

#define HIGH_FD 19000 /* below the build machines' 20,000 fds per process */

/* Child: an epoll set watching a socket, the set itself moved to HIGH_FD. */
static pid_t spawn_high_fd(int ready_fd)
{
    pid_t pid = fork_child(ready_fd, -1);
    if (pid)
        return pid;
    child_allow_fds(HIGH_FD + 1);
    int ep = epoll_create1(0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        _exit(3);
    add(ep, sv[0]);
    if (dup2(ep, HIGH_FD) != HIGH_FD)
        _exit(3);
    close(ep);
    if (write(3, "r", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

/*
 * The scanner's per-process fd table, and the memo of it kept for the next
 * full scan, cost memory by open fd, not by the highest fd number: one fd at
 * 19,000 is one entry. (Before, both were arrays indexed by fd number: 19,001
 * slots of scratch and 19,001 bytes of memo for this one process.)
 */
Test(scan, a_high_fd_number_costs_one_entry)
{
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn_high_fd(rp[1]);
    wait_ready(rp, pid);
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, NULL);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1);
    cr_assert_eq(sc.procs[0].epolls, 1, "the set at fd %d is read", HIGH_FD);
    cr_assert_eq(sc.procs[0].kinds[WK_SOCKET], 1);
    cr_assert_lt(s.fdcap, 1024, "scratch for %zu fd slots", s.fdcap);
    /* A full scan records the child's table in the memo: by its open fds too. */
    cr_assert_eq(scanner_run(&s, NULL, 0, &sc), 0);
    const memo_gen_t *g = &s.memo.gen[s.memo.cur];
    const fd_memo_t *r = NULL;
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].pid == pid)
            r = &g->v[i];
    cr_assert_not_null(r, "the child is in the memo");
    cr_assert_lt(r->nkind, 64, "memo of %u fd slots", r->nkind);
    /* And the next full scan, restoring it from the memo, still sees the set. */
    cr_assert_eq(scanner_run(&s, NULL, 0, &sc), 0);
    const proc_rec_t *p = NULL;
    for (size_t i = 0; i < sc.nprocs; i++)
        if (sc.procs[i].pid == pid)
            p = &sc.procs[i];
    cr_assert_not_null(p);
    cr_assert_eq(p->epolls, 1);
    cr_assert_eq(p->kinds[WK_SOCKET], 1);
    scan_free(&sc);
    scanner_free(&s);
    reap(pid);
    close(rp[0]);
}

static char tree[] = "/tmp/hkw-proc-XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the tree of a test that failed part way too. */
static void rm_tree(void)
{
    if (strcmp(tree, "/tmp/hkw-proc-XXXXXX") != 0)
        nftw(tree, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A /proc tree in tree with one process: its fd and fdinfo directories and links[i][0] -> [1]. */
static void make_tree(pid_t pid, const char *const (*links)[2], size_t n)
{
    char rel[64];
    cr_assert_not_null(mkdtemp(tree));
    static const char *const dirs[] = {"", "/fd", "/fdinfo"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(rel, sizeof rel, "%s/%d%s", tree, (int)pid, dirs[i]);
        cr_assert_eq(mkdir(rel, 0700), 0, "%s", rel);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(rel, sizeof rel, "%d/%s", (int)pid, links[i][0]);
        symlink_to(links[i][1], tree, rel);
    }
}

static void write_text(const char *root, const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/*
 * fd numbers go up to INT_MAX (fs.nr_open can be raised that far). The fd
 * table's name parser gave up on any name of ten digits above about
 * 1,000,000,000, so an epoll set at 1,500,000,000 was not read and a socket
 * at INT_MAX was not in the table: a process could hide its interest list by
 * moving it there. A real process cannot be given such numbers here (the
 * kernel's fd array would take gigabytes), so a /proc tree of real files
 * names them. Names past INT_MAX are not fds: not counted, and not wrapped
 * onto small numbers.
 */
Test(scan, fd_numbers_up_to_int_max_are_counted, .fini = rm_tree)
{
    char rel[64];
    pid_t pid = 4242;
    static const char *const links[][2] = {
        {"exe", "/usr/bin/high-fds"},
        {"fd/3", "pipe:[77]"},
        {"fd/1500000000", "anon_inode:[eventpoll]"},
        {"fd/2147483647", "socket:[12345]"},
        {"fd/2147483648", "anon_inode:[eventpoll]"}, /* INT_MAX + 1: not an fd */
        {"fd/4294967299", "socket:[999]"},           /* 2^32 + 3: not fd 3 */
    };
    make_tree(pid, links, sizeof links / sizeof links[0]);
    /* No sdev: the entries' kinds come from the table, by number. */
    snprintf(rel, sizeof rel, "%d/fdinfo/1500000000", (int)pid);
    write_text(tree, rel,
               "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n"
               "tfd: 2147483647 events:       19 data:                0  pos:0 ino:3039\n"
               "tfd:        3 events:       19 data:                0  pos:0 ino:4d\n");

    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, tree);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1);
    const proc_rec_t *p = &sc.procs[0];
    cr_assert_eq(p->fds, 3, "fds %u: 3, 1500000000 and 2147483647, nothing past INT_MAX", p->fds);
    cr_assert_eq(p->epolls, 1, "the set at fd 1500000000 is read");
    cr_assert_eq(p->entries, 2);
    cr_assert_eq(p->kinds[WK_SOCKET], 1, "the entry at fd INT_MAX is the socket there");
    cr_assert_eq(p->kinds[WK_PIPE], 1);
    cr_assert_eq(p->kinds[WK_GONE], 0);
    scan_free(&sc);
    scanner_free(&s);
}

/*
 * fdinfo is read up to FDINFO_MAX_BYTES (32 MiB, about 350,000 entries) from
 * one epoll set. A set that goes on past it was cut there, and its counts
 * kept as if they were the whole set: a sample smaller than the process,
 * learnt and judged. Now a process with such a set is dropped, like one whose
 * set could not be read, and counted (truncated). The endless set here is
 * /dev/zero behind the fdinfo name; the other set watches a socket.
 */
Test(scan, an_fdinfo_cut_at_the_cap_discards_the_sample, .fini = rm_tree)
{
    char rel[64];
    pid_t pid = 4243;
    static const char *const links[][2] = {
        {"exe", "/usr/bin/endless"},        {"fd/4", "anon_inode:[eventpoll]"},
        {"fd/5", "anon_inode:[eventpoll]"}, {"fd/6", "socket:[12345]"},
        {"fdinfo/5", "/dev/zero"},
    };
    make_tree(pid, links, sizeof links / sizeof links[0]);
    snprintf(rel, sizeof rel, "%d/fdinfo/4", (int)pid);
    write_text(tree, rel, "pos:\t0\nflags:\t02\ntfd: 6 events: 19 data: 0 pos:0 ino:3039\n");

    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, tree);
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 0, "recorded with %u epoll sets and %u sockets",
                 sc.nprocs ? sc.procs[0].epolls : 0, sc.nprocs ? sc.procs[0].kinds[WK_SOCKET] : 0);
    cr_assert_eq(sc.truncated, 1);
    cr_assert_eq(sc.gone + sc.denied, 0);
    cr_assert_eq(sc.ninodes, 0, "no socket inodes of the dropped sample are left");

    /* Without the endless set, the same process is a sample. */
    snprintf(rel, sizeof rel, "%s/%d/fdinfo/5", tree, (int)pid);
    cr_assert_eq(unlink(rel), 0);
    write_text(tree, rel + strlen(tree) + 1, "pos:\t0\nflags:\t02\n");
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1);
    cr_assert_eq(sc.truncated, 0);
    cr_assert_eq(sc.procs[0].epolls, 2);
    cr_assert_eq(sc.procs[0].kinds[WK_SOCKET], 1);
    scan_free(&sc);
    scanner_free(&s);
}

#define DYING_FDS 1000

/*
 * Child: nfds eventfds, then an epoll set (the highest fd, so the last link
 * read) watching a socket; it exits on its own delay_us after ready, or with
 * delay_us -1 waits to be killed.
 */
static pid_t spawn_eventfds(int ready_fd, int nfds, long delay_us)
{
    pid_t pid = fork_child(ready_fd, -1);
    if (pid)
        return pid;
    child_allow_fds((rlim_t)nfds + 16);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        _exit(3);
    for (int i = 0; i < nfds; i++)
        if (eventfd(0, 0) < 0)
            _exit(3);
    add(epoll_create1(0), sv[0]);
    if (write(3, "r", 1) != 1)
        _exit(3);
    while (delay_us < 0)
        pause();
    usleep((useconds_t)delay_us);
    _exit(0);
}

/*
 * A process that exits while its fd links are read: the links after that
 * point fail, and its epoll set (the last of them) was not seen at all, so
 * no fdinfo open failed to say the process was going. Before, that dying
 * process was recorded with part of its fds and no epoll set: a sample of 0
 * sockets learnt for it. Now a link that fails sends the scanner to check
 * whether the process is still there (its exe link goes before its fds), and
 * a gone one is dropped. The exits fall at delays spread over the reading of
 * the links: every record made must be the whole process.
 */
Test(scan, a_process_exiting_while_its_links_are_read_is_not_a_sample)
{
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, NULL);
    unsigned recorded = 0, dropped = 0;
    for (unsigned i = 0; i < 100; i++) {
        int rp[2];
        cr_assert_eq(pipe(rp), 0);
        pid_t pid = spawn_eventfds(rp[1], DYING_FDS, i * 60);
        wait_ready(rp, pid);
        cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
        if (sc.nprocs) {
            const proc_rec_t *p = &sc.procs[0];
            cr_assert(p->epolls == 1 && p->kinds[WK_SOCKET] == 1 && p->fds > DYING_FDS,
                      "delay %u us: recorded with %u fds, %u epoll sets, %u sockets", i * 60,
                      p->fds, p->epolls, p->kinds[WK_SOCKET]);
            recorded++;
        } else {
            dropped++;
        }
        cr_assert_eq(waitpid(pid, NULL, 0), pid);
        close(rp[0]);
    }
    cr_log_info("%u recorded whole, %u dropped", recorded, dropped);
    scan_free(&sc);
    scanner_free(&s);
}

/*
 * The scanner's getdents64 (fdtable.c), through the system call; the test
 * below makes one process exit just before a chosen call, which no timing
 * could hit reliably. Defined here, it takes the place of the C library's.
 */
static pid_t exit_before_pid;
static int exit_before_call = -1;

ssize_t getdents64(int fd, void *buf, size_t len)
{
    if (exit_before_call >= 0 && exit_before_call-- == 0) {
        siginfo_t si;
        cr_assert_eq(kill(exit_before_pid, SIGKILL), 0);
        /* Exited (its fds closed), not reaped: still listed in /proc, as a zombie. */
        cr_assert_eq(waitid(P_PID, (id_t)exit_before_pid, &si, WEXITED | WNOWAIT), 0);
    }
    return syscall(SYS_getdents64, fd, buf, len);
}

#define SPLIT_FDS 4000 /* names past one 64 KiB getdents64 batch (about 2,700 of them) */

/*
 * A table too long for one getdents64 batch is listed in several calls, and
 * an exit between two of them ends the listing there without an error (the
 * kernel lists a task without an fd table as empty). Every link of the first
 * batch was read while the process lived, and its epoll set, in the second
 * batch, was never seen: no link and no fdinfo failed to tell the scanner
 * that the process had gone. Before, it was recorded with the first batch's
 * 2,728 fds and no epoll set; it must not be a sample.
 */
Test(scan, a_process_exiting_between_two_listing_batches_is_not_a_sample)
{
    int rp[2];
    cr_assert_eq(pipe(rp), 0);
    pid_t pid = spawn_eventfds(rp[1], SPLIT_FDS, -1);
    wait_ready(rp, pid);
    scanner_t s;
    scan_t sc = {0};
    scanner_init(&s, NULL);
    /* Alive first: recorded whole, its table listed in more than one call. */
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(sc.nprocs, 1);
    cr_assert_gt(sc.procs[0].fds, SPLIT_FDS);
    cr_assert_eq(sc.procs[0].epolls, 1);
    /* Then it exits after the first batch was read, before the second call. */
    exit_before_pid = pid;
    exit_before_call = 1;
    cr_assert_eq(scanner_run(&s, &pid, 1, &sc), 0);
    cr_assert_eq(exit_before_call, -1, "the listing took one call");
    cr_assert_eq(sc.nprocs, 0, "recorded with %u fds, %u epoll sets, %u sockets",
                 sc.nprocs ? sc.procs[0].fds : 0, sc.nprocs ? sc.procs[0].epolls : 0,
                 sc.nprocs ? sc.procs[0].kinds[WK_SOCKET] : 0);
    cr_assert_eq(sc.gone, 1);
    cr_assert_eq(sc.ninodes, 0, "no socket inodes of the dropped sample are left");
    scan_free(&sc);
    scanner_free(&s);
    cr_assert_eq(waitpid(pid, NULL, 0), pid);
    close(rp[0]);
}
