/*
 * Connections to upstream servers: connect, pool, reuse, close; and the
 * active health checks, which are connections of their own.
 *
 * Why idle pooled connections are not read: a stream that reads keeps its
 * fd in the epoll set and keeps the worker's loop alive, and an idle pool
 * should cost nothing. Instead, a connection taken from the pool is probed
 * with one recv(MSG_PEEK | MSG_DONTWAIT): end of file or unexpected bytes
 * mean the server closed it (or misbehaves), and it is dropped. A close
 * that races with our request is left to the proxy, which retries an
 * idempotent request once on a fresh connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upstream.h"

enum { UC_WAIT = 1, UC_CONNECTING, UC_OPEN, UC_IDLE, UC_CLOSING };

/* An active health check: a connection that sends one GET and reads the status line. */
typedef struct ucheck {
    httpd_uconn_t u; /* first member */
    hk_write_req_t wr;
    struct iovec iov;
    uint64_t deadline;
    size_t got;
    char line[16];
    char req[];
} ucheck_t;

static hk_loop_t *uc_loop(const httpd_uconn_t *u)
{
    return u->server->ups->set->root->loop;
}

static void uc_free(httpd_uconn_t *u)
{
    httpd_uset_t *set = u->server->ups->set;
    set->handles--;
    free(u);
    httpd_uset_maybe_free(set);
}

static void uc_on_closed_handle(hk_handle_t *h)
{
    httpd_uconn_t *u = h->data;
    if (--u->closes == 0)
        uc_free(u);
}

static void uc_on_closed_stream(hk_stream_t *stream)
{
    uc_on_closed_handle(&((httpd_uconn_t *)stream)->timer.base);
}

static void list_push(httpd_uconn_t **head, httpd_uconn_t *u)
{
    u->prev = NULL;
    u->next = *head;
    if (*head)
        (*head)->prev = u;
    *head = u;
}

static void list_unlink(httpd_uconn_t **head, httpd_uconn_t *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        *head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
}

static void uc_close(httpd_uconn_t *u)
{
    if (u->state == UC_IDLE) {
        list_unlink(&u->server->idle, u);
        u->server->nidle--;
        httpd_count(&u->server->stat->idle, (uint64_t)-1);
    }
    u->state = UC_CLOSING;
    u->closes = 2;
    hk_close(&u->timer.base, uc_on_closed_handle);
    hk_stream_close(&u->stream, uc_on_closed_stream);
}

/* The connection could not be made: tell the owner, then free it. */
static void uc_fail(httpd_uconn_t *u, int err)
{
    if (!u->check) {
        u->server->active--;
        httpd_count(&u->server->stat->active, (uint64_t)-1);
    }
    u->state = 0;
    u->cb(u, err);
    uc_free(u);
}

static void uc_on_connect(hk_connect_t *req, int fd)
{
    httpd_uconn_t *u = req->data;
    if (!u->owner) { /* released while connecting */
        if (fd >= 0)
            close(fd);
        uc_free(u);
        return;
    }
    if (fd < 0) {
        uc_fail(u, fd);
        return;
    }
    int r = hk_stream_init_socket(uc_loop(u), &u->stream, fd); /* hk_connect's: non-blocking */
    if (r < 0) {
        close(fd);
        uc_fail(u, r);
        return;
    }
    hk_timer_init(uc_loop(u), &u->timer);
    u->timer.base.data = u;
    u->state = UC_OPEN;
    u->cb(u, 0);
}

/* Starts connecting to the server's next address (its addresses in turn). */
static int uc_connect(httpd_uconn_t *u)
{
    httpd_userver_t *s = u->server;
    hk_dns_addr_t *a = &s->addrs[s->next_addr++ % s->naddrs];
    char addr[96];
    int r = hk_addr_format(&a->sa, hk_dns_addr_len(a), addr, sizeof(addr));
    if (r < 0)
        return r;
    u->connect.data = u;
    uint64_t deadline = hk_loop_now(uc_loop(u)) + s->ups->cfg->connect_timeout;
    r = hk_tcp_connect(uc_loop(u), &u->connect, addr, deadline, HK_CONNECT_NODELAY, uc_on_connect);
    if (r < 0)
        return r;
    u->state = UC_CONNECTING;
    if (!u->check)
        httpd_count(&s->stat->connects, 1);
    return 0;
}

/* Closed by the server while idle, or sent something unasked: not usable. */
static bool uc_alive(httpd_uconn_t *u)
{
    char b;
    ssize_t n = recv(u->stream.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

int httpd_uconn_get(httpd_userver_t *s, unsigned flags, void *owner, httpd_uconn_cb cb,
                    httpd_uconn_t **out)
{
    httpd_uset_t *set = s->ups->set;
    httpd_uconn_t *u;
    while (!(flags & HTTPD_UCONN_FRESH) && (u = s->idle) != NULL) {
        if (!uc_alive(u)) {
            uc_close(u);
            continue;
        }
        list_unlink(&s->idle, u);
        s->nidle--;
        u->state = UC_OPEN;
        u->owner = owner;
        u->cb = cb;
        s->active++;
        httpd_count(&s->stat->idle, (uint64_t)-1);
        httpd_count(&s->stat->active, 1);
        httpd_count(&s->stat->requests, 1);
        httpd_count(&s->stat->reused, 1);
        *out = u;
        return 0;
    }
    u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->server = s;
    u->owner = owner;
    u->cb = cb;
    int r = 0;
    if (s->naddrs == 0) {
        /*
         * A name that did not resolve is not looked up again before its retry
         * time (negative caching): a lookup per request would be a storm of
         * queries under load. Meanwhile its requests fail at once (502);
         * those that come while a lookup is in flight wait for that one.
         */
        bool backoff = !s->resolving && s->resolve_err < 0 &&
                       hk_loop_now(s->ups->set->root->loop) < s->resolve_at;
        if (backoff || httpd_userver_resolve(s) < 0)
            r = -EHOSTUNREACH;
        else {
            u->state = UC_WAIT;
            list_push(&s->waiting, u);
        }
    } else {
        r = uc_connect(u);
    }
    if (r < 0) {
        free(u);
        return r;
    }
    set->handles++;
    s->active++;
    httpd_count(&s->stat->active, 1);
    httpd_count(&s->stat->requests, 1);
    *out = u;
    return 1;
}

void httpd_userver_resolved(httpd_userver_t *s)
{
    /* A callback may start a new lookup: the connections then wait for that one. */
    while (s->waiting && !s->resolving) {
        httpd_uconn_t *u = s->waiting;
        list_unlink(&s->waiting, u);
        int r = s->naddrs ? uc_connect(u) : -EHOSTUNREACH;
        if (r < 0)
            uc_fail(u, r);
    }
}

void httpd_uconn_release(httpd_uconn_t *u, bool reuse)
{
    httpd_userver_t *s = u->server;
    if (!u->check) {
        s->active--;
        httpd_count(&s->stat->active, (uint64_t)-1);
    }
    u->owner = NULL;
    switch (u->state) {
    case UC_WAIT:
        list_unlink(&s->waiting, u);
        uc_free(u);
        return;
    case UC_CONNECTING:
        (void)hk_connect_cancel(&u->connect); /* its callback frees u */
        return;
    case UC_OPEN:
        break;
    default:
        return;
    }
    if (reuse && !s->ups->set->retired && s->nidle < s->ups->cfg->keepalive &&
        hk_stream_queued(&u->stream) == 0) {
        (void)hk_timer_stop(&u->timer);
        (void)hk_stream_read_stop(&u->stream);
        (void)hk_stream_set_watermarks(&u->stream, HK_STREAM_HIGH_DEFAULT, HK_STREAM_LOW_DEFAULT,
                                       NULL);
        u->stream.data = NULL;
        u->requests++;
        u->idle_since = hk_loop_now(uc_loop(u));
        u->state = UC_IDLE;
        list_push(&s->idle, u);
        s->nidle++;
        httpd_count(&s->stat->idle, 1);
        return;
    }
    uc_close(u);
}

void httpd_userver_close_idle(httpd_userver_t *s, uint64_t idle_before)
{
    httpd_uconn_t *u = s->idle;
    while (u) {
        httpd_uconn_t *next = u->next;
        if (u->idle_since < idle_before)
            uc_close(u);
        u = next;
    }
}

/* ---- Active health checks ---------------------------------------------------------------- */

static void check_result(httpd_userver_t *s, bool ok)
{
    if (ok) {
        s->check_down = false;
        s->down_until = 0;
        s->fails = 0;
    } else {
        s->check_down = true;
    }
    httpd_count(ok ? &s->stat->checks_ok : &s->stat->checks_failed, 1);
    httpd_userver_health(s);
}

/* Ends the check in flight (its result already recorded, or none). */
static void check_end(httpd_userver_t *s)
{
    httpd_uconn_t *u = s->checking;
    s->checking = NULL;
    if (!u)
        return;
    if (u->state == UC_CONNECTING) {
        u->owner = NULL;
        (void)hk_connect_cancel(&u->connect);
    } else if (u->state == UC_OPEN) {
        uc_close(u);
    }
}

static void check_on_written(hk_write_req_t *req, int status)
{
    (void)req;
    (void)status; /* a failed write shows as a read error too */
}

static void check_on_read(hk_stream_t *stream, ssize_t n, const hk_buf_t *buf)
{
    ucheck_t *k = (ucheck_t *)stream;
    httpd_userver_t *s = k->u.server;
    if (n > 0) {
        size_t take = sizeof(k->line) - 1 - k->got;
        if ((size_t)n < take)
            take = (size_t)n;
        memcpy(k->line + k->got, buf->base, take);
        k->got += take;
        if (k->got < 12)
            return;
    } else if (n == -EAGAIN) {
        return;
    }
    /* "HTTP/1.x NNN": 2xx and 3xx are healthy. */
    k->line[k->got] = '\0';
    int status = 0;
    bool ok = k->got >= 12 && memcmp(k->line, "HTTP/1.", 7) == 0 && k->line[8] == ' ' &&
              sscanf(k->line + 9, "%3d", &status) == 1 && status >= 200 && status < 400;
    check_result(s, ok);
    check_end(s);
}

static void check_on_connect(httpd_uconn_t *u, int status)
{
    ucheck_t *k = (ucheck_t *)u;
    httpd_userver_t *s = u->server;
    if (status < 0) {
        s->checking = NULL; /* uc_fail frees it */
        check_result(s, false);
        return;
    }
    k->iov.iov_base = k->req;
    k->iov.iov_len = strlen(k->req);
    k->wr.data = k;
    if (hk_stream_write(&u->stream, &k->wr, &k->iov, 1, check_on_written) < 0 ||
        hk_stream_read_start(&u->stream, NULL, check_on_read) < 0) {
        check_result(s, false);
        check_end(s);
    }
}

void httpd_ucheck_start(httpd_userver_t *s)
{
    const httpd_upstream_t *cfg = s->ups->cfg;
    if (s->checking || s->naddrs == 0)
        return;
    size_t len = strlen(cfg->health_path) + strlen(s->cfg->host) + 128;
    ucheck_t *k = calloc(1, sizeof(*k) + len);
    if (!k)
        return;
    snprintf(k->req, len,
             "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
             "User-Agent: hark-httpd health check\r\n\r\n",
             cfg->health_path, s->cfg->host, s->cfg->port);
    httpd_uconn_t *u = &k->u;
    u->server = s;
    u->owner = k;
    u->cb = check_on_connect;
    u->check = true;
    if (uc_connect(u) < 0) {
        free(k);
        check_result(s, false);
        return;
    }
    s->ups->set->handles++;
    k->deadline = hk_loop_now(uc_loop(u)) + cfg->connect_timeout + cfg->read_timeout;
    s->checking = u;
}

void httpd_ucheck_stop(httpd_userver_t *s, uint64_t now)
{
    if (s->checking && now >= ((ucheck_t *)s->checking)->deadline) {
        check_result(s, false);
        check_end(s);
    }
}

void httpd_ucheck_cancel(httpd_userver_t *s)
{
    check_end(s);
}
