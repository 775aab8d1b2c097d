/*
 * A minimal, strict HTTP/1.1 responder for Prometheus: GET /metrics only.
 *
 * Why our own: hark has no HTTP module yet, and a scrape endpoint needs very
 * little. Why strict: it listens on a socket of a security tool; anything
 * unexpected gets a 4xx and a close, not a best-effort guess. Rules: the
 * request head must fit in 2 KiB and arrive within 5 s; lines end in CRLF;
 * the request line is METHOD SP /path SP HTTP/1.0|1.1; HTTP/1.1 needs Host;
 * no body (Content-Length other than 0, or Transfer-Encoding, is a 400).
 * GET and HEAD of /metrics give 200; another method 405; another path 404;
 * anything malformed 400. Every response closes the connection, so there is
 * no keep-alive or pipelining state to get wrong. Sockets are non-blocking
 * and driven by hk_io watchers; a slow reader costs one buffer until the
 * timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"

#define REQ_MAX 2048
#define CONN_MAX 64
#define CONN_TIMEOUT_NS (UINT64_C(5) * 1000 * 1000 * 1000)
/* How long the listener rests after accept ran out of fds or memory. */
#define ACCEPT_PAUSE_NS (UINT64_C(100) * 1000 * 1000)

typedef struct conn {
    hk_io_t io;
    hk_timer_t timer;
    metrics_server_t *srv;
    struct conn *prev, *next;
    char req[REQ_MAX];
    size_t rlen;
    char *out;
    size_t olen, sent;
    int pending_closes;
} conn_t;

struct metrics_server {
    hk_loop_t *loop;
    hk_io_t listener;
    hk_timer_t pause; /* restarts the listener after a pause (on_accept) */
    int port;
    metrics_render_fn render;
    void *arg;
    conn_t *conns;
    unsigned nconns;
    int stopping, pending_closes;
};

static void server_maybe_free(metrics_server_t *m)
{
    if (m->stopping && m->pending_closes == 0 && !m->conns)
        free(m);
}

static void conn_closed(hk_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->pending_closes)
        return;
    metrics_server_t *m = c->srv;
    free(c->out);
    free(c);
    m->pending_closes--;
    server_maybe_free(m);
}

static void conn_close(conn_t *c)
{
    metrics_server_t *m = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->nconns--;
    m->pending_closes++;
    close(c->io.fd);
    c->pending_closes = 2;
    hk_close(&c->io.base, conn_closed);
    hk_close(&c->timer.base, conn_closed);
}

static void conn_flush(conn_t *c)
{
    while (c->sent < c->olen) {
        ssize_t n = send(c->io.fd, c->out + c->sent, c->olen - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            hk_io_modify(&c->io, HK_WRITABLE);
            return;
        }
        if (n <= 0)
            break;
        c->sent += (size_t)n;
    }
    conn_close(c);
}

static void respond(conn_t *c, int status, const char *reason, const char *extra, int head)
{
    char *body = NULL;
    size_t blen = 0;
    if (status == 200 && c->srv->render(c->srv->arg, &body, &blen) < 0) {
        status = 500;
        reason = "Internal Server Error";
    }
    const char *ctype = status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain";
    char msg[64];
    if (status != 200) {
        blen = (size_t)snprintf(msg, sizeof msg, "%d %s\n", status, reason);
        body = NULL;
    }
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                      "Connection: close\r\n\r\n",
                      status, reason, ctype, blen, extra ? extra : "");
    size_t total = (size_t)hl + (head ? 0 : blen);
    c->out = malloc(total);
    if (c->out) {
        memcpy(c->out, hdr, (size_t)hl);
        if (!head)
            memcpy(c->out + hl, body ? body : msg, blen);
        c->olen = total;
    }
    free(body);
    hk_io_modify(&c->io, HK_WRITABLE);
    conn_flush(c);
}

/* Finds "name:" at the start of a header line, case-insensitively; returns the value. */
static const char *header(const char *line, size_t len, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return NULL;
    const char *v = line + n + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *vlen = (size_t)(end - v);
    return v;
}

/* Parses the complete head in c->req[0..len) (it ends with CRLF CRLF) and answers. */
static void handle(conn_t *c, size_t len)
{
    const char *p = c->req, *end = c->req + len;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol + 1 >= end || eol[1] != '\n')
        return respond(c, 400, "Bad Request", NULL, 0);
    /* Request line: METHOD SP TARGET SP VERSION */
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1 || memchr(sp2 + 1, ' ', (size_t)(eol - sp2 - 1)))
        return respond(c, 400, "Bad Request", NULL, 0);
    for (const char *q = p; q < sp1; q++)
        if (*q < 'A' || *q > 'Z')
            return respond(c, 400, "Bad Request", NULL, 0);
    size_t vlen = (size_t)(eol - sp2 - 1);
    int v11 = vlen == 8 && !memcmp(sp2 + 1, "HTTP/1.1", 8);
    int v10 = vlen == 8 && !memcmp(sp2 + 1, "HTTP/1.0", 8);
    if (!v11 && !v10)
        return respond(c, 400, "Bad Request", NULL, 0);
    if (sp1[1] != '/')
        return respond(c, 400, "Bad Request", NULL, 0);
    for (const char *q = sp1 + 1; q < sp2; q++)
        if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
            return respond(c, 400, "Bad Request", NULL, 0);
    /* Headers: "name: value" CRLF each, then an empty line. */
    int host = 0;
    for (p = eol + 2; p < end;) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol + 1 >= end || eol[1] != '\n' || memchr(p, '\n', (size_t)(eol - p)))
            return respond(c, 400, "Bad Request", NULL, 0);
        size_t ll = (size_t)(eol - p);
        if (ll == 0)
            break;
        const char *colon = memchr(p, ':', ll);
        if (!colon || colon == p || *p == ' ' || *p == '\t')
            return respond(c, 400, "Bad Request", NULL, 0); /* no obsolete line folding */
        size_t hv;
        const char *v;
        if (header(p, ll, "Host", &hv)) {
            if (host++)
                return respond(c, 400, "Bad Request", NULL, 0);
        } else if ((v = header(p, ll, "Content-Length", &hv))) {
            if (hv != 1 || v[0] != '0')
                return respond(c, 400, "Bad Request", NULL, 0);
        } else if (header(p, ll, "Transfer-Encoding", &hv)) {
            return respond(c, 400, "Bad Request", NULL, 0);
        }
        p = eol + 2;
    }
    if (v11 && host != 1)
        return respond(c, 400, "Bad Request", NULL, 0);
    size_t mlen = (size_t)(sp1 - c->req);
    int get = mlen == 3 && !memcmp(c->req, "GET", 3);
    int head = mlen == 4 && !memcmp(c->req, "HEAD", 4);
    if (!get && !head)
        return respond(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", 0);
    if ((size_t)(sp2 - sp1 - 1) != 8 || memcmp(sp1 + 1, "/metrics", 8) != 0)
        return respond(c, 404, "Not Found", NULL, head);
    respond(c, 200, "OK", NULL, head);
}

static void on_conn(hk_io_t *io, unsigned revents)
{
    conn_t *c = io->base.data;
    if (c->out) {
        if (revents & (HK_WRITABLE | HK_ERROR | HK_HANGUP))
            conn_flush(c);
        return;
    }
    for (;;) {
        ssize_t n = recv(io->fd, c->req + c->rlen, REQ_MAX - c->rlen, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_close(c); /* the peer went away before a full request */
            return;
        }
        size_t from = c->rlen > 3 ? c->rlen - 3 : 0;
        /* A bare LF (a line end without CR) can never become a valid head: say so now. */
        for (size_t i = c->rlen; i < c->rlen + (size_t)n; i++)
            if (c->req[i] == '\n' && (i == 0 || c->req[i - 1] != '\r'))
                return respond(c, 400, "Bad Request", NULL, 0);
        c->rlen += (size_t)n;
        for (size_t i = from; i + 3 < c->rlen; i++) {
            if (!memcmp(c->req + i, "\r\n\r\n", 4)) {
                if (i + 4 != c->rlen) /* bytes after the head: a body or a pipelined request */
                    return respond(c, 400, "Bad Request", NULL, 0);
                return handle(c, i + 4);
            }
        }
        if (c->rlen == REQ_MAX)
            return respond(c, 400, "Bad Request", NULL, 0);
    }
}

static void on_timeout(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    conn_close(t->base.data);
}

static void on_accept(hk_io_t *io, unsigned revents);

static void on_pause_over(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    metrics_server_t *m = t->base.data;
    if (!m->stopping)
        (void)hk_io_start(&m->listener, HK_READABLE, on_accept);
}

static void on_accept(hk_io_t *io, unsigned revents)
{
    (void)revents;
    metrics_server_t *m = io->base.data;
    for (;;) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /*
             * Out of fds or memory, the connection stays queued and the
             * level-triggered listener readable: retried at once, it would
             * spin a core until an fd frees. Rest instead (EAGAIN and the
             * rest: retried on the next event).
             */
            if ((errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) &&
                hk_timer_start_in(&m->pause, on_pause_over, (int64_t)ACCEPT_PAUSE_NS, 0) == 0)
                (void)hk_io_stop(io);
            return;
        }
        conn_t *c = m->nconns < CONN_MAX ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = m;
        hk_io_init(m->loop, &c->io, fd);
        hk_timer_init(m->loop, &c->timer);
        c->io.base.data = c->timer.base.data = c;
        if (hk_io_start(&c->io, HK_READABLE, on_conn) < 0) {
            close(fd);
            free(c);
            continue;
        }
        hk_timer_start_in(&c->timer, on_timeout, (int64_t)CONN_TIMEOUT_NS, 0);
        hk_unref(&c->timer.base);
        c->next = m->conns;
        if (m->conns)
            m->conns->prev = c;
        m->conns = c;
        m->nconns++;
    }
}

/* The listener's or its pause timer's close: one fewer to wait for. */
static void server_handle_closed(hk_handle_t *h)
{
    metrics_server_t *m = h->data;
    m->pending_closes--;
    server_maybe_free(m);
}

int metrics_start(hk_loop_t *loop, const char *addr, metrics_render_fn render, void *arg,
                  metrics_server_t **out)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return -EINVAL;
    char *e;
    long port = strtol(colon + 1, &e, 10);
    if (*e || e == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    metrics_server_t *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return -ENOMEM;
    }
    m->loop = loop;
    m->render = render;
    m->arg = arg;
    m->port = ntohs(sa.sin_port);
    hk_io_init(loop, &m->listener, fd);
    m->listener.base.data = m;
    hk_timer_init(loop, &m->pause);
    m->pause.base.data = m;
    hk_unref(&m->pause.base); /* the listener keeps the loop alive, not its pause */
    int r = hk_io_start(&m->listener, HK_READABLE, on_accept);
    if (r < 0) {
        /*
         * Both handles are counted by the loop from their init on: freeing m
         * here would leave the loop unfreeable (-EBUSY) with two dangling
         * handles. Close them; m goes with the second close callback, which
         * runs on the loop's next iteration.
         */
        close(fd);
        m->stopping = 1;
        m->pending_closes = 2;
        hk_close(&m->listener.base, server_handle_closed);
        hk_close(&m->pause.base, server_handle_closed);
        return r;
    }
    *out = m;
    return 0;
}

int metrics_port(const metrics_server_t *m)
{
    return m->port;
}

void metrics_stop(metrics_server_t *m)
{
    m->stopping = 1;
    while (m->conns)
        conn_close(m->conns);
    close(m->listener.fd);
    m->pending_closes += 2;
    hk_close(&m->listener.base, server_handle_closed);
    hk_close(&m->pause.base, server_handle_closed);
}
