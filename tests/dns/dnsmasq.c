/* dnsmasq as a test fixture: see dnsmasq.h. */
#include "dnsmasq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DNSMASQ "/usr/sbin/dnsmasq"

/*
 * A port the kernel considers free right now for both UDP and TCP (dnsmasq
 * binds it a moment later, for both). Why both: a UDP port picked alone was
 * often a TCP port in use, when a test running alongside held 10,000 loopback
 * connections, and dnsmasq then exited with "Address already in use" eight
 * times in a row (seen once in .ci/run).
 */
static int free_port(void)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int port = -1;
        if (t >= 0 && u >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(t, (struct sockaddr *)&a, &len) == 0 &&
            bind(u, (struct sockaddr *)&a, sizeof(a)) == 0)
            port = ntohs(a.sin_port);
        if (t >= 0)
            close(t);
        if (u >= 0)
            close(u);
        if (port > 0 || t < 0 || u < 0)
            return port;
    }
    return -1;
}

/* Sends an A query for probe.hark.test and waits up to wait_ms for any answer. */
static int probe(int port, int wait_ms)
{
    static const unsigned char q[] = {
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* header */
        5,    'p',  'r',  'o',  'b',  'e',  4,    'h',  'a',  'r',  'k',  4,
        't',  'e',  's',  't',  0,    0x00, 0x01, 0x00, 0x01, /* QTYPE A, QCLASS IN */
    };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = -1;
    if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)sizeof(q)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        unsigned char buf[512];
        if (poll(&p, 1, wait_ms) == 1 && recv(fd, buf, sizeof(buf), 0) >= 12 && buf[0] == 0x12 &&
            buf[1] == 0x34)
            ok = 0;
    }
    close(fd);
    return ok;
}

static pid_t spawn(struct dnsmasq *d, unsigned ttl_s)
{
    char port[32], hosts[300], pidf[300], logf[300], ttl[32], outf[300];
    snprintf(port, sizeof(port), "--port=%d", d->port);
    snprintf(hosts, sizeof(hosts), "--addn-hosts=%s/hosts", d->dir);
    snprintf(pidf, sizeof(pidf), "--pid-file=%s/pid", d->dir);
    snprintf(logf, sizeof(logf), "--log-facility=%s/log", d->dir);
    snprintf(ttl, sizeof(ttl), "--local-ttl=%u", ttl_s);
    snprintf(outf, sizeof(outf), "%s/out", d->dir);
    char *argv[] = {DNSMASQ,
                    "--no-daemon",
                    "--conf-file=/dev/null",
                    port,
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    hosts,
                    "--local=/hark.test/",
                    ttl,
                    pidf,
                    logf,
                    "--log-queries",
                    NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(outf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execv(DNSMASQ, argv);
    _exit(127);
}

int dnsmasq_start(struct dnsmasq *d, const char *hosts, unsigned ttl_s)
{
    memset(d, 0, sizeof(*d));
    d->pid = -1;
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "dnsmasq: %s not installed (scripts/deps installs dnsmasq-base)\n",
                DNSMASQ);
        return -1;
    }
    snprintf(d->dir, sizeof(d->dir), "/tmp/hk-dns-XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    chmod(d->dir, 0755); /* dnsmasq may drop to "nobody" before reading the hosts file */
    char path[300];
    snprintf(path, sizeof(path), "%s/hosts", d->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(hosts, f);
    fclose(f);
    for (int attempt = 0; attempt < 16; attempt++) {
        d->port = free_port();
        if (d->port < 0)
            return -1;
        d->pid = spawn(d, ttl_s);
        if (d->pid < 0)
            return -1;
        for (int i = 0; i < 100; i++) {
            int status;
            if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
                d->pid = -1; /* exited: most likely the port was taken meanwhile */
                break;
            }
            if (probe(d->port, 50) == 0) {
                snprintf(d->servers, sizeof(d->servers), "127.0.0.1:%d", d->port);
                return 0;
            }
        }
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = -1;
        }
    }
    fprintf(stderr, "dnsmasq: could not start it; see %s/out and %s/log\n", d->dir, d->dir);
    return -1;
}

void dnsmasq_stop(struct dnsmasq *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        struct timespec ts = {0, 10 * 1000 * 1000};
        int i = 0;
        while (waitpid(d->pid, NULL, WNOHANG) == 0) {
            if (++i == 100)
                kill(d->pid, SIGKILL);
            nanosleep(&ts, NULL);
        }
        d->pid = -1;
    }
    if (d->dir[0]) {
        const char *names[] = {"hosts", "pid", "log", "out"};
        char path[300];
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", d->dir, names[i]);
            unlink(path);
        }
        rmdir(d->dir);
        d->dir[0] = '\0';
    }
}

int blackhole_open(char *servers, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        close(fd);
        return -1;
    }
    snprintf(servers, len, "127.0.0.1:%d", ntohs(a.sin_port));
    return fd;
}
