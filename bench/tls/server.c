/*
 * bench-tls-server: the hark side of bench/tls. One loop on one thread,
 * pinned to one CPU, serving TLS 1.3 on 127.0.0.1 the way the nginx peer is
 * configured in scripts/bench-tls: no session tickets, no session cache, so
 * every connection is a full handshake.
 *
 * Why an HTTP/1.1 shape: the same load client drives nginx, so both servers
 * must answer the same request. The client sends one small request per
 * connection ("Connection: close"); "GET /bulk" gets the bulk file (with
 * hk_tls_sendfile, which without kTLS is pread + SSL_write, as nginx does
 * without kTLS), any other path a two-byte body. Then the server sends
 * close_notify and closes, as nginx does. Nothing is parsed beyond the
 * request line: this is a TLS benchmark, not an HTTP one.
 *
 * Usage: bench-tls-server -c CERT -k KEY -f BULK_FILE [-p PORT] [-C CPU]
 * Prints `port=N` on stdout once listening; runs until SIGTERM or SIGINT,
 * then prints its counters on stderr.
 */
#include <hark.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct conn {
    hk_stream_t s; /* first member: stream callbacks cast back */
    char req[2048];
    size_t len;
    char head[256];
    struct iovec iov;
    hk_write_req_t wr;
    hk_tls_sendfile_t sf;
} conn_t;

static hk_loop_t *loop;
static hk_tls_ctx_t *tls;
static int bulk_fd = -1;
static size_t bulk_size;
static unsigned long long accepted, handshakes, hs_failures, served;

static const char small_response[] = "HTTP/1.1 200 OK\r\n"
                                     "Server: hark\r\n"
                                     "Content-Type: text/plain\r\n"
                                     "Content-Length: 2\r\n"
                                     "Connection: close\r\n"
                                     "\r\n"
                                     "ok";

static void on_close(hk_stream_t *s)
{
    free(s);
}

static void on_shutdown(hk_stream_t *s, int status)
{
    if (status == 0)
        served++;
    hk_stream_close(s, on_close);
}

static void respond(conn_t *c)
{
    int r;
    if (strncmp(c->req, "GET /bulk ", 10) == 0) {
        int n = snprintf(c->head, sizeof c->head,
                         "HTTP/1.1 200 OK\r\nServer: hark\r\n"
                         "Content-Type: application/octet-stream\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         bulk_size);
        c->iov = (struct iovec){c->head, (size_t)n};
        r = hk_stream_write(&c->s, &c->wr, &c->iov, 1, NULL);
        if (r >= 0)
            r = hk_tls_sendfile(&c->s, &c->sf, bulk_fd, 0, bulk_size, NULL);
    } else {
        c->iov = (struct iovec){(void *)small_response, sizeof small_response - 1};
        r = hk_stream_write(&c->s, &c->wr, &c->iov, 1, NULL);
    }
    /* The shutdown waits for the queue (the file included), then sends close_notify. */
    if (r < 0 || hk_stream_shutdown(&c->s, on_shutdown) < 0)
        hk_stream_close(&c->s, on_close);
}

static void on_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    conn_t *c = (conn_t *)s;
    if (n == -EAGAIN)
        return;
    if (n <= 0 || c->len + (size_t)n >= sizeof c->req) {
        hk_stream_close(s, on_close);
        return;
    }
    memcpy(c->req + c->len, buf->base, (size_t)n);
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    if (strstr(c->req, "\r\n\r\n")) {
        hk_stream_read_stop(s);
        respond(c);
    }
}

static void on_handshake(hk_stream_t *s, int status, const char *error)
{
    (void)error;
    if (status < 0 || hk_stream_read_start(s, NULL, on_read) < 0) {
        hs_failures++;
        hk_stream_close(s, on_close);
        return;
    }
    handshakes++;
}

static void on_accept(hk_listener_t *l, int fd)
{
    conn_t *c = malloc(sizeof *c);
    (void)l;
    if (!c || hk_stream_init(loop, &c->s, fd) < 0) {
        free(c);
        close(fd);
        return;
    }
    c->len = 0;
    accepted++;
    if (hk_tls_stream_start(&c->s, tls, HK_TLS_SERVER, NULL, on_handshake) < 0) {
        hs_failures++;
        hk_stream_close(&c->s, on_close);
    }
}

static void on_signal(hk_signal_t *sig, int signum)
{
    (void)signum;
    (void)sig;
    hk_loop_stop(loop);
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *file = NULL;
    int port = 0, cpu = 0, opt;
    while ((opt = getopt(argc, argv, "c:k:f:p:C:")) != -1) {
        switch (opt) {
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'f':
            file = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'C':
            cpu = atoi(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (!cert || !key || !file) {
    usage:
        fprintf(stderr, "usage: bench-tls-server -c CERT -k KEY -f BULK_FILE [-p PORT] [-C CPU]\n");
        return 2;
    }

    /*
     * OpenSSL writes to the socket itself (a socket BIO: write(2), not
     * send(MSG_NOSIGNAL)), so a client that resets a connection mid-response
     * raises SIGPIPE; ignore it, as nginx does, and see -EPIPE instead.
     */
    signal(SIGPIPE, SIG_IGN);

    /* Pinned before the loop exists, so any thread the library starts inherits it. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
        perror("bench-tls-server: sched_setaffinity");
        return 1;
    }

    struct stat st;
    bulk_fd = open(file, O_RDONLY | O_CLOEXEC);
    if (bulk_fd < 0 || fstat(bulk_fd, &st) < 0 || st.st_size <= 0) {
        fprintf(stderr, "bench-tls-server: %s: %s\n", file, strerror(errno));
        return 1;
    }
    bulk_size = (size_t)st.st_size;

    hk_tls_ctx_options_t o = {.cert_file = cert,
                              .key_file = key,
                              .min_version = HK_TLS_1_3,
                              .max_version = HK_TLS_1_3,
                              .flags = HK_TLS_NO_TICKETS};
    int r = hk_tls_ctx_new(&o, &tls);
    if (r < 0) {
        fprintf(stderr, "bench-tls-server: %s: %s\n", hk_err_name(r), hk_tls_last_error());
        return 1;
    }

    hk_listener_t listener;
    hk_signal_t sigterm, sigint;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    if ((r = hk_loop_new(&loop, 0)) < 0 ||
        (r = hk_tcp_listen(loop, &listener, addr, 4096, HK_LISTEN_NODELAY, on_accept)) < 0 ||
        (r = hk_signal_init(loop, &sigterm)) < 0 ||
        (r = hk_signal_start(&sigterm, on_signal, SIGTERM)) < 0 ||
        (r = hk_signal_init(loop, &sigint)) < 0 ||
        (r = hk_signal_start(&sigint, on_signal, SIGINT)) < 0) {
        fprintf(stderr, "bench-tls-server: %s\n", hk_strerror(r));
        return 1;
    }
    printf("port=%d\n", hk_listener_port(&listener));
    fflush(stdout);
    r = hk_loop_run(loop, HK_RUN_DEFAULT);
    fprintf(stderr,
            "bench-tls-server: accepted=%llu handshakes=%llu handshake_failures=%llu "
            "responses=%llu\n",
            accepted, handshakes, hs_failures, served);
    return r < 0 ? 1 : 0;
}
