/*
 * The socket tables (netinfo.c, sockdiag.c) against /proc/net/unix lines
 * forged by a real process: the kernel prints a unix socket's name raw
 * (only NUL becomes '@'), so an abstract name "x\n<a whole table line>"
 * adds a line of the binder's choosing, e.g. one saying that somebody
 * else's socket listens (which would make its owner a network service).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netinfo.h"

static uint64_t inode_of(int fd)
{
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    return st.st_ino;
}

/* Binds a new unix socket to the abstract name name[0 .. len) (the leading NUL is added). */
static int bind_abstract(const char *name, size_t len, int type)
{
    int fd = socket(AF_UNIX, type, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (fd < 0 || len + 1 > sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path + 1, name, len);
    if (bind(fd, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0)
        return -1;
    return fd;
}

/* The name of a socket whose /proc/net/unix line carries a second, forged line. */
static int forge(uint64_t ino, int listening)
{
    char name[108];
    int n = snprintf(name, sizeof name,
                     "f\n0000000000000000: 00000002 00000000 %08X 0001 01 %llu /forged",
                     listening ? 0x10000u : 0u, (unsigned long long)ino);
    return bind_abstract(name, (size_t)n, SOCK_STREAM);
}

typedef struct victims {
    uint64_t tcp;      /* a TCP socket of ours, not bound: in no table */
    uint64_t pair;     /* one end of a unix socketpair of ours: in the unix table */
    uint64_t listener; /* the forger's own listener, with a long name (in the table) */
    pid_t forger;
} victims_t;

/*
 * Starts the forger: it listens on a unix socket with an 80-byte abstract
 * name, and binds three more whose names forge lines: our TCP socket and our
 * socketpair end listen, its own listener does not.
 */
static void start_forger(victims_t *v, int keep[3])
{
    keep[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(keep[0], 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, keep + 1), 0);
    v->tcp = inode_of(keep[0]);
    v->pair = inode_of(keep[1]);
    int rp[2], ip[2];
    cr_assert_eq(pipe(rp), 0);
    cr_assert_eq(pipe(ip), 0);
    v->forger = fork();
    cr_assert_geq(v->forger, 0);
    if (v->forger == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char longname[81]; /* distinct per process: tests may run in parallel */
        memset(longname, 'L', 80);
        longname[snprintf(longname, 16, "L%d", (int)getpid())] = 'L';
        int l = bind_abstract(longname, 80, SOCK_STREAM);
        if (l < 0 || listen(l, 4) < 0)
            _exit(3);
        struct stat st;
        fstat(l, &st);
        uint64_t own = st.st_ino;
        if (forge(v->tcp, 1) < 0 || forge(v->pair, 1) < 0 || forge(own, 0) < 0)
            _exit(3);
        if (write(ip[1], &own, sizeof own) != sizeof own || write(rp[1], "r", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    close(rp[1]);
    close(ip[1]);
    char c;
    if (read(rp[0], &c, 1) != 1) {
        int st = 0;
        waitpid(v->forger, &st, 0);
        cr_assert_fail("the forger failed: status %d", st);
    }
    cr_assert_eq(read(ip[0], &v->listener, sizeof v->listener), (ssize_t)sizeof v->listener);
    close(rp[0]);
    close(ip[0]);
}

static void stop_forger(victims_t *v, int keep[3])
{
    kill(v->forger, SIGKILL);
    waitpid(v->forger, NULL, 0);
    for (int i = 0; i < 3; i++)
        close(keep[i]);
}

static int listens(const netinfo_t *ni, uint64_t ino)
{
    const net_sock_t *s = netinfo_find(ni, ino);
    return s && s->listening;
}

/* The full tables (the endpoints of an alert): unix sockets come from sock_diag, not the text. */
Test(netinfo, forged_unix_lines_do_not_fool_the_full_tables)
{
    victims_t v;
    int keep[3];
    start_forger(&v, keep);
    netinfo_t ni = {0};
    cr_assert_eq(netinfo_load(&ni, "/proc"), 0);
    cr_assert_not(listens(&ni, v.tcp), "our unbound TCP socket listens");
    cr_assert_not(listens(&ni, v.pair), "our socketpair end listens");
    cr_assert(listens(&ni, v.listener), "the real listener does not listen");
    char out[256];
    const uint64_t inos[] = {v.tcp, v.pair, v.listener};
    for (size_t i = 0; i < 3; i++) {
        netinfo_format(&ni, netinfo_find(&ni, inos[i]), out, sizeof out);
        cr_assert_null(strstr(out, "/forged"), "socket %zu shows as %s", i, out);
    }
    netinfo_format(&ni, netinfo_find(&ni, v.listener), out, sizeof out);
    cr_assert_eq(strncmp(out, "unix:@L", 7), 0, "the listener shows as %s", out);
    cr_assert_eq(strlen(out), 6 + 80, "the listener shows as %s", out);
    netinfo_free(&ni);
    stop_forger(&v, keep);
}

/* Makes socket(AF_NETLINK, ...) fail with EPERM in this process, as a sandbox's seccomp would. */
static void deny_netlink(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    cr_assert_lt(socket(AF_NETLINK, SOCK_DGRAM, 0), 0, "netlink is denied");
}

/*
 * Without sock_diag the listening check falls back to /proc/net/unix. A line
 * that may lie inside the previous line's name (the kernel prints at most
 * 108 bytes of name) is not believed about listening; an inode listed twice
 * keeps the line that cannot be forged.
 */
Test(netinfo, forged_unix_lines_do_not_fool_the_proc_fallback)
{
#if !defined(__x86_64__)
    cr_skip_test("the seccomp filter of this test is written for x86-64");
#endif
    victims_t v;
    int keep[3];
    start_forger(&v, keep);
    deny_netlink();
    netinfo_t ni = {0};
    cr_assert_eq(netinfo_load_listening(&ni, "/proc"), 0);
    cr_assert_not(listens(&ni, v.tcp), "our unbound TCP socket listens");
    cr_assert_not(listens(&ni, v.pair), "our socketpair end listens");
    cr_assert(listens(&ni, v.listener), "the real listener does not listen");
    netinfo_free(&ni);
    stop_forger(&v, keep);
}
