/*
 * bench-http-client: the helper of scripts/bench-http for what wrk cannot do.
 *
 *   bench-http-client port [K]
 *       Prints K (default 1) distinct free TCP ports of 127.0.0.1, one a line. Each comes
 *       from binding port 0, so the kernel picks it; all K sockets are held until every
 *       port is printed, so the K ports differ. There is a window between our close and
 *       the server's bind in which another program could take the port; on a build
 *       machine with loopback-only tests that choose their ports the same way, that is
 *       rare, and the script checks that the server it started answers.
 *
 *   bench-http-client idle HOST PORT PATH N
 *       Opens N keep-alive connections, one after another. Each sends one
 *       "GET PATH HTTP/1.1" and reads the whole response (status 200, Content-Length
 *       body), then stays open and silent. When all N are answered it prints
 *       "ready conns=N" (or, if a connection failed, the number that made it and the
 *       error) and waits. SIGUSR1 makes it count the connections the server has closed
 *       since (a peer that times idle connections out would otherwise make the memory
 *       per connection look smaller than it is) and print "alive=A closed=C" before it
 *       exits; SIGTERM or SIGINT exits at once. Every connection is closed with a reset
 *       (SO_LINGER 0), so tens of thousands of them across runs leave no TIME_WAIT
 *       sockets behind on either side.
 *
 * Why a separate process: the server under test must hold the 10,000 connections alone,
 * so that its resident memory grows by exactly its own cost per connection; the build
 * machines allow 20,000 open files per process, so client and server cannot share one.
 * Why one at a time: this measures memory, not speed; sequential connections never
 * overflow the server's accept backlog, so every connection is accepted on the first
 * SYN and the whole set is up in a second or two.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { IO_TIMEOUT_S = 10, BUF_SIZE = 16384 };

static int usage(void)
{
    fprintf(stderr, "usage: bench-http-client port [K]\n"
                    "       bench-http-client idle HOST PORT PATH N\n");
    return 2;
}

static int free_ports(int k)
{
    if (k < 1 || k > 64)
        return usage();
    int fds[64];
    unsigned ports[64];
    for (int i = 0; i < k; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sin;
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sin, sizeof sin) < 0 ||
            getsockname(fds[i], (struct sockaddr *)&sin, &len) < 0) {
            fprintf(stderr, "bench-http-client: free port: %s\n", strerror(errno));
            return 1;
        }
        ports[i] = ntohs(sin.sin_port);
    }
    for (int i = 0; i < k; i++) {
        printf("%u\n", ports[i]);
        close(fds[i]);
    }
    return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Finds a header's value in the header block [h, end); returns NULL if absent. */
static const char *header_value(const char *h, const char *end, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = h; line < end;) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            return v;
        }
        line = eol + 2;
    }
    return NULL;
}

/*
 * Reads one response to the end of its body. Returns 0, or -1 with *why set. Only what
 * static file servers send is understood: a status line, headers, a Content-Length body.
 */
static int read_response(int fd, char *buf, const char **why)
{
    size_t have = 0;
    long long body_left = -1;
    for (;;) {
        ssize_t n = recv(fd, buf + have, BUF_SIZE - 1 - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *why = errno == EAGAIN || errno == EWOULDBLOCK ? "response timed out" : strerror(errno);
            return -1;
        }
        if (n == 0) {
            *why = "server closed before the response ended";
            return -1;
        }
        if (body_left >= 0) {
            body_left -= n;
            have = 0;
        } else {
            have += (size_t)n;
            buf[have] = '\0';
            const char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (!end) {
                if (have == BUF_SIZE - 1) {
                    *why = "response headers too long";
                    return -1;
                }
                continue;
            }
            if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && strncmp(buf, "HTTP/1.0 200", 12) != 0) {
                *why = "status is not 200";
                return -1;
            }
            const char *cl = header_value(buf, end + 2, "Content-Length");
            if (!cl) {
                *why = "no Content-Length";
                return -1;
            }
            body_left = strtoll(cl, NULL, 10) - (long long)(have - (size_t)(end + 4 - buf));
            have = 0;
        }
        if (body_left == 0)
            return 0;
        if (body_left < 0) {
            *why = "more bytes than Content-Length";
            return -1;
        }
    }
}

static void close_reset(int fd)
{
    struct linger lg = {1, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static int idle(const char *host, const char *port, const char *path, long n)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1 || n < 1) {
        fprintf(stderr, "bench-http-client: bad address %s or count %ld\n", host, n);
        return 2;
    }
    /* The soft limit may be below the hard one; N connections need N descriptors. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Signals are taken with sigwait, never by a handler, so blocking reads stay simple. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);

    struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
    char *buf = malloc(BUF_SIZE);
    char req[1024];
    int reqlen = snprintf(req, sizeof req,
                          "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: bench-http\r\n\r\n", path,
                          host, port);
    if (!pfd || !buf || reqlen <= 0 || (size_t)reqlen >= sizeof req) {
        fprintf(stderr, "bench-http-client: out of memory or path too long\n");
        return 1;
    }
    long ok = 0;
    const char *why = NULL;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    for (; ok < n; ok++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            why = strerror(errno);
            break;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
            why = strerror(errno);
            close(fd);
            break;
        }
        if (send_all(fd, req, (size_t)reqlen) < 0) {
            why = strerror(errno);
            close_reset(fd);
            break;
        }
        if (read_response(fd, buf, &why) < 0) {
            close_reset(fd);
            break;
        }
        pfd[ok].fd = fd;
        pfd[ok].events = POLLIN | POLLRDHUP;
    }
    if (ok == n)
        printf("ready conns=%ld\n", ok);
    else
        printf("ready conns=%ld error=\"connection %ld: %s\"\n", ok, ok + 1, why);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    if (sig == SIGUSR1) {
        /* A closed connection is readable: a read would return 0 (or fail with a reset). */
        long closed = 0;
        if (ok > 0 && poll(pfd, (nfds_t)ok, 0) > 0) {
            for (long i = 0; i < ok; i++) {
                if (pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                    closed++;
                } else if (pfd[i].revents & POLLIN) {
                    char c;
                    if (recv(pfd[i].fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
                        closed++;
                }
            }
        }
        printf("alive=%ld closed=%ld\n", ok - closed, closed);
        fflush(stdout);
    }
    for (long i = 0; i < ok; i++)
        close_reset(pfd[i].fd);
    free(pfd);
    free(buf);
    return ok == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "port") == 0 && argc <= 3)
        return free_ports(argc == 3 ? atoi(argv[2]) : 1);
    if (argc == 6 && strcmp(argv[1], "idle") == 0)
        return idle(argv[2], argv[3], argv[4], atol(argv[5]));
    return usage();
}
