/*
 * bench-tls-client: the load client of bench/tls, one process for both
 * servers (hark and nginx), pinned to the CPU the server does not use.
 *
 * Why one thread with non-blocking sockets and epoll: on a two-core machine
 * the client gets exactly one core, and N connections in flight on one
 * thread keep the server busy without threads competing for it. Every
 * connection is a full TLS 1.3 handshake: the client never offers a session
 * (no resumption), offers TLS 1.3 only, one cipher suite and one group, so
 * both servers do the same cryptography. It skips the certificate chain
 * check (the CertificateVerify signature is still checked, TLS 1.3 requires
 * it): what is measured is the server.
 *
 * Each connection sends one small HTTP/1.1 request ("Connection: close"),
 * reads the response to the server's close_notify or EOF, checks the status
 * line and the Content-Length, and is closed with SO_LINGER 0 (a reset: no
 * TIME_WAIT on either side, so the ephemeral ports never run out); then a
 * new one starts in its place.
 *   -m hs    GET /hs: a two-byte body; counts completed connections.
 *   -m bulk  GET /bulk: the server's large file; counts body bytes.
 * Only what completes (hs) or arrives (bulk) inside the measured window,
 * after a warm-up, counts. The server's CPU time over the window is read
 * from /proc/PID/stat (-P, all its threads), the client's own from
 * getrusage, so a reader can tell which side was saturated.
 *
 * Tickets: the client counts the NewSessionTicket messages it receives
 * (tickets=, per connection), to show that neither server issues any.
 *
 * Usage: bench-tls-client -F     (prints `port=N`, a loopback port free a moment ago)
 *        bench-tls-client -p PORT -m hs|bulk [-a 127.0.0.1] [-c CONNS] [-w WARMUP_S]
 *        [-t SECONDS] [-P SERVER_PID] [-C CPU] [-x CIPHERSUITE] [-g GROUP] [-n SNI]
 * Prints one line: `mode= conns= seconds= done= handshakes_per_s= mb_per_s=
 * server_cpu= client_cpu= tickets_per_conn= resumed= errors= cipher=` (MB = 10^6 bytes;
 * cpu = core-seconds per second of the window).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum { CONNECTING, HANDSHAKE, WRITING, READING };

typedef struct cl {
    int fd;
    int state;
    SSL *ssl;
    size_t sent;
    char head[1024];
    size_t hlen;
    int head_done;
    long long clen; /* Content-Length, -1 if none */
    long long body;
} cl_t;

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static int ep;
static int bulk;
static const char *sni = "localhost";
static char request[256];
static size_t request_len;
static int measuring;
static unsigned long long done, errors, tickets, resumed, bytes, finished;
static char cipher[64] = "none";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of every thread of pid, in seconds; -1 if unreadable. */
static double proc_cpu(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut, st;
    /* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14)
     * stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* For the nginx configuration: bind 127.0.0.1:0, print the port, close. */
static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        perror("bench-tls-client: free port");
        return 1;
    }
    printf("port=%d\n", ntohs(sin.sin_port));
    close(fd);
    return 0;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    tickets++;
    return 0; /* not kept: every connection is a full handshake */
}

static void cl_open(cl_t *c);

static void cl_end(cl_t *c, int ok)
{
    if (ok) {
        finished++;
        if (measuring)
            done++;
    } else if (measuring) {
        errors++;
    }
    struct linger lg = {1, 0};
    (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    cl_open(c);
}

static void cl_open(cl_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("bench-tls-client: socket");
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ssl = SSL_new(ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, sni)) {
        fprintf(stderr, "bench-tls-client: SSL_new failed\n");
        exit(1);
    }
    SSL_set_connect_state(c->ssl);
    c->state = CONNECTING;
    c->sent = 0;
    c->hlen = 0;
    c->head_done = 0;
    c->clen = -1;
    c->body = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        perror("bench-tls-client: epoll_ctl");
        exit(1);
    }
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) == 0)
        c->state = HANDSHAKE;
    else if (errno != EINPROGRESS) {
        perror("bench-tls-client: connect");
        exit(1);
    }
}

/* Takes the response bytes: the head (status line, Content-Length), then the body. */
static int cl_take(cl_t *c, const char *p, size_t n)
{
    if (!c->head_done) {
        size_t take = n < sizeof c->head - 1 - c->hlen ? n : sizeof c->head - 1 - c->hlen;
        memcpy(c->head + c->hlen, p, take);
        c->hlen += take;
        c->head[c->hlen] = '\0';
        char *end = strstr(c->head, "\r\n\r\n");
        if (!end)
            return c->hlen < sizeof c->head - 1 ? 0 : -1;
        if (strncmp(c->head, "HTTP/1.1 200 ", 13) != 0)
            return -1;
        for (char *l = strstr(c->head, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
            if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
                c->clen = atoll(l + 17);
        c->head_done = 1;
        size_t hsize = (size_t)(end + 4 - c->head);
        size_t already = c->hlen - take; /* head bytes from earlier calls */
        size_t body = already + n - hsize;
        c->body += (long long)body;
        if (measuring)
            bytes += body;
        return 0;
    }
    c->body += (long long)n;
    if (measuring)
        bytes += n;
    return 0;
}

/* Runs the connection as far as it goes without waiting. */
static void cl_step(cl_t *c, uint32_t events)
{
    static char buf[1 << 16];
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            cl_end(c, 0);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = HANDSHAKE;
    }
    if (c->state == HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                if (errors < 3 && measuring)
                    ERR_print_errors_fp(stderr);
                ERR_clear_error();
                cl_end(c, 0);
            }
            return;
        }
        if (SSL_session_reused(c->ssl))
            resumed++;
        if (strcmp(cipher, "none") == 0)
            snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(c->ssl));
        c->state = WRITING;
    }
    if (c->state == WRITING) {
        while (c->sent < request_len) {
            size_t n;
            if (!SSL_write_ex(c->ssl, request + c->sent, request_len - c->sent, &n)) {
                int e = SSL_get_error(c->ssl, 0);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                    ERR_clear_error();
                    cl_end(c, 0);
                }
                return;
            }
            c->sent += n;
        }
        c->state = READING;
    }
    for (;;) {
        size_t n;
        if (SSL_read_ex(c->ssl, buf, sizeof buf, &n)) {
            if (cl_take(c, buf, n) < 0) {
                cl_end(c, 0);
                return;
            }
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return;
        /* close_notify, or a plain EOF after the response: complete if the body is. */
        int ok = (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) &&
                 c->head_done && (c->clen < 0 || c->body == c->clen);
        ERR_clear_error();
        cl_end(c, ok);
        return;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *mode = NULL, *suite = "TLS_AES_128_GCM_SHA256";
    const char *group = "X25519";
    int port = 0, conns = 0, pid = 0, cpu = 1, opt;
    double warm = 1, secs = 5;
    while ((opt = getopt(argc, argv, "Fa:p:m:c:w:t:P:C:x:g:n:")) != -1) {
        switch (opt) {
        case 'F':
            return free_port();
        case 'a':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'm':
            mode = optarg;
            break;
        case 'c':
            conns = atoi(optarg);
            break;
        case 'w':
            warm = atof(optarg);
            break;
        case 't':
            secs = atof(optarg);
            break;
        case 'P':
            pid = atoi(optarg);
            break;
        case 'C':
            cpu = atoi(optarg);
            break;
        case 'x':
            suite = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'n':
            sni = optarg;
            break;
        default:
            goto usage;
        }
    }
    if (!port || !mode || (strcmp(mode, "hs") != 0 && strcmp(mode, "bulk") != 0) || secs <= 0) {
    usage:
        fprintf(stderr, "usage: bench-tls-client -p PORT -m hs|bulk [-a ADDR] [-c CONNS] "
                        "[-w WARMUP_S] [-t SECONDS] [-P SERVER_PID] [-C CPU] [-x SUITE] "
                        "[-g GROUP] [-n SNI]\n");
        return 2;
    }
    bulk = strcmp(mode, "bulk") == 0;
    if (conns <= 0)
        conns = bulk ? 1 : 64;
    addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "bench-tls-client: bad address %s\n", host);
        return 2;
    }

    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
        perror("bench-tls-client: sched_setaffinity");
        return 1;
    }

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, suite) || !SSL_CTX_set1_groups_list(ctx, group)) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* The cache only reports the tickets a server sends; nothing is stored or offered. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);

    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                                   bulk ? "bulk" : "hs", sni);

    ep = epoll_create1(EPOLL_CLOEXEC);
    cl_t *cls = calloc((size_t)conns, sizeof *cls);
    if (ep < 0 || !cls) {
        perror("bench-tls-client");
        return 1;
    }
    for (int i = 0; i < conns; i++)
        cl_open(&cls[i]);

    struct epoll_event evs[256];
    double t0 = now_s(), start = t0 + warm, stop = start + secs;
    double srv0 = 0, me0 = 0, tickets0 = 0;
    for (;;) {
        double t = now_s();
        if (!measuring && t >= start) {
            measuring = 1;
            start = t;
            stop = start + secs;
            srv0 = proc_cpu(pid);
            me0 = self_cpu();
            tickets0 = (double)tickets;
            resumed = 0;
        }
        if (measuring && t >= stop)
            break;
        if (!measuring && t - t0 > warm + 10 && finished == 0) {
            fprintf(stderr, "bench-tls-client: no connection completed in %.0f s\n", t - t0);
            return 1;
        }
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++)
            cl_step(evs[i].data.ptr, evs[i].events);
    }
    double elapsed = now_s() - start;
    double srv = proc_cpu(pid), me = self_cpu();
    double server_cpu = srv >= 0 && srv0 >= 0 ? (srv - srv0) / elapsed : -1;
    double conns_done = (double)done + (double)errors;
    printf("mode=%s conns=%d seconds=%.2f done=%llu handshakes_per_s=%.0f mb_per_s=%.1f "
           "server_cpu=%.2f client_cpu=%.2f tickets_per_conn=%.2f resumed=%llu errors=%llu "
           "cipher=%s\n",
           mode, conns, elapsed, done, (double)done / elapsed, (double)bytes / 1e6 / elapsed,
           server_cpu, (me - me0) / elapsed,
           conns_done > 0 ? ((double)tickets - tickets0) / conns_done : 0.0, resumed, errors,
           cipher);
    return done > 0 ? 0 : 1;
}
