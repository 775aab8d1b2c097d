/*
 * A small echo server on the hark loop. Each connection has a fixed buffer:
 * what is read is written back; when the peer does not read (the socket
 * buffer is full), the connection stops reading until the buffer drains, so a
 * slow client cannot make the server buffer without bound (backpressure).
 * Accepting (batches, TCP_NODELAY, EMFILE back-off) is hark/net.h's listener.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo.h"

#define ECHO_BUF 16384

struct echo_conn {
    hk_io_t io;
    struct echo_server *server;
    struct echo_conn *prev, *next;
    size_t start, end;
    int eof; /* the client shut down its side: close once the echo is out */
    char buf[ECHO_BUF];
};

struct echo_server {
    hk_loop_t *loop;
    hk_listener_t listener;
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
    int fd = c->io.fd;
    c->io.base.data = c;
    hk_close(&c->io.base, echo_conn_closed); /* before close(): its DEL goes by number */
    close(fd);
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
    if ((revents & (HK_READABLE | HK_HANGUP | HK_ERROR)) && !c->eof && c->end < ECHO_BUF) {
        ssize_t n = read(io->fd, c->buf + c->end, ECHO_BUF - c->end);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            echo_conn_close(c);
            return;
        }
        if (n == 0)
            c->eof = 1; /* a half-close: the echo still queued goes out first */
        if (n > 0) {
            c->end += (size_t)n;
            ssize_t w = send(io->fd, c->buf + c->start, c->end - c->start, MSG_NOSIGNAL);
            if (w > 0) {
                c->start += (size_t)w;
                c->server->bytes += (unsigned long long)w;
            }
        }
    }
    if (c->start == c->end) {
        c->start = c->end = 0;
        if (c->eof) {
            echo_conn_close(c);
            return;
        }
    }
    /* Read while there is room; wait for writability while output is queued. */
    unsigned want = 0;
    if (c->end < ECHO_BUF && !c->eof)
        want |= HK_READABLE;
    if (c->end > c->start)
        want |= HK_WRITABLE;
    hk_io_modify(io, want);
}

/* A connection from the listener (hark/net.h accepts in batches and backs off on EMFILE). */
static void echo_on_accept(hk_listener_t *listener, int fd)
{
    struct echo_server *s = listener->data;
    struct echo_conn *c = malloc(sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->server = s;
    c->start = c->end = c->eof = 0;
    hk_io_init(s->loop, &c->io, fd);
    if (hk_io_start(&c->io, HK_READABLE, echo_conn_on_io) < 0) {
        c->io.base.data = c;
        hk_close(&c->io.base, echo_conn_closed);
        close(fd);
        return;
    }
    c->prev = NULL;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->connections++;
}

int echo_server_start(hk_loop_t *loop, const char *host, int port, echo_server_t **out)
{
    char addr[96];
    if (snprintf(addr, sizeof addr, "%s:%d", host, port) >= (int)sizeof addr)
        return -EINVAL;
    struct echo_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->listener.data = s;
    int r = hk_tcp_listen(loop, &s->listener, addr, 511, HK_LISTEN_NODELAY, echo_on_accept);
    if (r < 0) {
        free(s);
        return r;
    }
    s->port = hk_listener_port(&s->listener);
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

static void echo_server_freed(hk_listener_t *listener)
{
    free(listener->data);
}

void echo_server_stop(echo_server_t *s)
{
    while (s->conns)
        echo_conn_close(s->conns);
    hk_listener_close(&s->listener, echo_server_freed); /* closed last: frees the server */
}
