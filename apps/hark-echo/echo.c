/*
 * A small echo server on the hark loop. Each connection has a fixed buffer:
 * what is read is written back; when the peer does not read (the socket
 * buffer is full), the connection stops reading until the buffer drains, so a
 * slow client cannot make the server buffer without bound (backpressure).
 * EMFILE on accept is survived: the listener pauses for 100 ms and retries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo.h"

#define ECHO_BUF 16384
#define ECHO_ACCEPT_BATCH 64

struct echo_conn {
    hk_io_t io;
    struct echo_server *server;
    struct echo_conn *prev, *next;
    size_t start, end;
    char buf[ECHO_BUF];
};

struct echo_server {
    hk_loop_t *loop;
    hk_io_t listener;
    hk_timer_t backoff;
    int port;
    unsigned connections;
    unsigned long long bytes;
    struct echo_conn *conns;
};

static void echo_conn_closed(hk_handle_t *h)
{
    free(h->data);
}

static void echo_conn_close(struct echo_conn *c)
{
    struct echo_server *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->connections--;
    close(c->io.fd);
    c->io.base.data = c;
    hk_close(&c->io.base, echo_conn_closed);
}

static void echo_conn_on_io(hk_io_t *io, unsigned revents)
{
    struct echo_conn *c = (struct echo_conn *)io;
    if ((revents & HK_WRITABLE) && c->end > c->start) {
        ssize_t n = send(io->fd, c->buf + c->start, c->end - c->start, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            echo_conn_close(c);
            return;
        }
        if (n > 0) {
            c->start += (size_t)n;
            c->server->bytes += (unsigned long long)n;
        }
    }
    if ((revents & (HK_READABLE | HK_HANGUP | HK_ERROR)) && c->end < ECHO_BUF) {
        ssize_t n = read(io->fd, c->buf + c->end, ECHO_BUF - c->end);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            echo_conn_close(c);
            return;
        }
        if (n > 0) {
            c->end += (size_t)n;
            ssize_t w = send(io->fd, c->buf + c->start, c->end - c->start, MSG_NOSIGNAL);
            if (w > 0) {
                c->start += (size_t)w;
                c->server->bytes += (unsigned long long)w;
            }
        }
    }
    if (c->start == c->end)
        c->start = c->end = 0;
    /* Read while there is room; wait for writability while output is queued. */
    unsigned want = 0;
    if (c->end < ECHO_BUF)
        want |= HK_READABLE;
    if (c->end > c->start)
        want |= HK_WRITABLE;
    hk_io_modify(io, want);
}

static void echo_on_backoff(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    struct echo_server *s = t->base.data;
    hk_io_start(&s->listener, HK_READABLE, s->listener._cb);
}

static void echo_on_accept(hk_io_t *io, unsigned revents)
{
    (void)revents;
    struct echo_server *s = io->base.data;
    for (int i = 0; i < ECHO_ACCEPT_BATCH; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                fprintf(stderr, "hark-echo: accept: %s; pausing accepts for 100 ms\n",
                        strerror(errno));
                hk_io_stop(io);
                hk_timer_start_in(&s->backoff, echo_on_backoff, 100000000, 0);
            }
            return; /* EAGAIN: drained; ECONNABORTED etc.: try on the next wake-up */
        }
        struct echo_conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->server = s;
        c->start = c->end = 0;
        hk_io_init(s->loop, &c->io, fd);
        if (hk_io_start(&c->io, HK_READABLE, echo_conn_on_io) < 0) {
            close(fd);
            c->io.base.data = c;
            hk_close(&c->io.base, echo_conn_closed);
            continue;
        }
        c->prev = NULL;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->connections++;
    }
}

int echo_server_start(hk_loop_t *loop, const char *host, int port, echo_server_t **out)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t len = sizeof addr;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 511) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct echo_server *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    s->loop = loop;
    s->port = ntohs(addr.sin_port);
    hk_io_init(loop, &s->listener, fd);
    s->listener.base.data = s;
    hk_timer_init(loop, &s->backoff);
    s->backoff.base.data = s;
    int r = hk_io_start(&s->listener, HK_READABLE, echo_on_accept);
    if (r < 0) {
        close(fd);
        free(s);
        return r;
    }
    *out = s;
    return 0;
}

int echo_server_port(const echo_server_t *s)
{
    return s->port;
}

unsigned echo_server_connections(const echo_server_t *s)
{
    return s->connections;
}

unsigned long long echo_server_bytes(const echo_server_t *s)
{
    return s->bytes;
}

static void echo_server_freed(hk_handle_t *h)
{
    free(h->data);
}

void echo_server_stop(echo_server_t *s)
{
    while (s->conns)
        echo_conn_close(s->conns);
    close(s->listener.fd);
    hk_close(&s->listener.base, NULL);
    hk_close(&s->backoff.base, echo_server_freed); /* closed last: frees the server */
}
