/*
 * The reverse proxy: the seam conn.h defines, the choice of a server and a
 * connection, the request head, timeouts, errors and the end of an
 * exchange. The request body is proxy_body.c, the response proxy_resp.c,
 * the rewriting of heads proxy_head.c.
 *
 * Why an exchange can outlive its client connection: its write requests and
 * the bytes they point at belong to it, and a closed stream completes them
 * later (with -ECANCELED). So a proxy struct is freed only when its
 * connection is gone or handed back, its upstream connection released, and
 * every one of its writes completed; httpd_proxy_maybe_free is called at
 * the end of each callback that may be the last, never in the middle.
 *
 * Failures before any response byte reached the client are answered with
 * 502 (no server could be reached, a bad or missing response) or 504 (a
 * timeout); after that, the client connection is closed, which is the only
 * way left to say that the response is incomplete.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"
#include "proxy.h"

#define PROXY_UP_HIGH ((size_t)256 << 10) /* upstream stream watermarks */
#define PROXY_UP_LOW ((size_t)64 << 10)
#define PROXY_TRIES 3 /* servers tried for one request when connecting fails */

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static int px_start(httpd_proxy_t *p, unsigned flags);

static uint64_t px_now(const httpd_proxy_t *p)
{
    return hk_loop_now(p->w->loop);
}

/*
 * The connection's own timer must not end a request that is making progress,
 * nor one waiting for its upstream: that one is the proxy's to answer (502,
 * 504) when its own timeouts run out. Its deadline, still the header timeout
 * from the accept, once closed a request whose server was being connected or
 * its name resolved (a lookup, then a connect: each up to connect_timeout).
 */
void httpd_proxy_touch(httpd_proxy_t *p)
{
    httpd_conn_t *c = p->c;
    if (!c)
        return;
    const httpd_upstream_t *cfg = p->ups->cfg;
    uint64_t wait = p->state == HTTPD_PX_CONNECT ? 2 * cfg->connect_timeout : cfg->read_timeout;
    uint64_t d = px_now(p) + c->gen->cfg->send_timeout + wait;
    if (d > c->deadline)
        c->deadline = d;
}

/* ---- Lifetime ---------------------------------------------------------------------------- */

static void px_free(httpd_proxy_t *p)
{
    while (p->q_head) {
        httpd_pbuf_t *b = p->q_head;
        p->q_head = b->next;
        free(b);
    }
    for (int i = 0; i < HTTPD_PROXY_NBUF; i++)
        free(p->bufs[i]);
    free(p->req_head);
    free(p->resp_head);
    free(p->log_buf);
    free(p->res_big);
    httpd_ups_leave(p->ups);
    free(p);
}

void httpd_proxy_maybe_free(httpd_proxy_t *p)
{
    if (p->c || p->u || p->client_pending || p->up_pending || p->free_deferred)
        return;
    px_free(p);
}

static void on_free_defer(hk_defer_t *d)
{
    httpd_proxy_t *p = d->data;
    p->free_deferred = false;
    httpd_proxy_maybe_free(p);
}

void httpd_proxy_drop_upstream(httpd_proxy_t *p)
{
    httpd_uconn_t *u = p->u;
    if (!u)
        return;
    p->u = NULL;
    p->up_reading = false;
    httpd_uconn_release(u, false);
}

void httpd_proxy_abort(httpd_conn_t *c)
{
    httpd_proxy_t *p = c->proxy;
    if (!p)
        return;
    /* 499 (as nginx logs it): the client went away before a response head reached it. */
    httpd_proxy_log(p, p->responded ? p->res.status : 499, p->log_bytes);
    p->c = NULL;
    if (p->state != HTTPD_PX_DONE)
        p->state = HTTPD_PX_FAILED;
    httpd_proxy_drop_upstream(p);
    /* Called from inside our own code too (httpd_conn_close): free later. */
    p->free_deferred = true;
    p->free_defer.data = p;
    if (hk_defer(p->w->loop, &p->free_defer, on_free_defer) < 0)
        p->free_deferred = false;
}

/*
 * Whether the client connection goes on after this exchange: the client
 * wants it, its body was all read, and the connection is not to close after
 * the response anyway (a drain, a client that half-closed): such a response
 * must say Connection: close.
 */
bool httpd_proxy_keep_alive(const httpd_proxy_t *p)
{
    return p->ka && p->body_done && !p->client_eof && p->c &&
           !(p->c->flags & (HTTPD_C_CLOSE_AFTER | HTTPD_C_CLOSING));
}

/* Hands the connection back once the whole response is out and written. */
void httpd_proxy_finish(httpd_proxy_t *p)
{
    httpd_conn_t *c = p->c;
    if (!c || p->state != HTTPD_PX_DONE || p->client_pending)
        return;
    bool ka = httpd_proxy_keep_alive(p);
    if (ka)
        httpd_proxy_pause_client(p, false);
    if (!p->body_done)
        c->flags |= HTTPD_C_LINGER; /* an early answer: the client may still be sending */
    httpd_proxy_log(p, p->res.status, p->log_bytes);
    p->c = NULL;
    httpd_conn_proxy_done(c, ka);
}

/* Answers status when nothing of a response has gone to the client yet. */
void httpd_proxy_error(httpd_proxy_t *p, int status)
{
    httpd_conn_t *c = p->c;
    p->state = HTTPD_PX_FAILED;
    httpd_proxy_drop_upstream(p);
    if (!c)
        return;
    bool ka = httpd_proxy_keep_alive(p);
    if (ka)
        httpd_proxy_pause_client(p, false);
    if (!p->body_done)
        c->flags |= HTTPD_C_LINGER;
    httpd_resp_error(c, status, ka, p->head_req);
    httpd_proxy_log(p, c->last_status, c->last_bytes);
    httpd_batch_flush(c);
    if (!p->c)
        return; /* the write failed and the connection closed */
    p->c = NULL;
    httpd_conn_proxy_done(c, ka);
}

void httpd_proxy_up_failed(httpd_proxy_t *p, int err)
{
    if (p->state == HTTPD_PX_DONE || p->state == HTTPD_PX_FAILED)
        return;
    bool timeout = err == -ETIMEDOUT;
    if (p->responded) {
        p->state = HTTPD_PX_FAILED;
        httpd_userver_report(p->server, false, 0);
        httpd_proxy_drop_upstream(p);
        if (p->c)
            httpd_conn_close(p->c);
        return;
    }
    /* Nothing came back for a request that may be repeated: it may go elsewhere. */
    bool again = !p->got_bytes && !timeout && p->idempotent && !p->has_body;
    if (again && p->u && p->u->requests > 0 && !p->retried) {
        /* The server closed a pooled connection as we used it: once more, on a new one. */
        p->retried = true;
        httpd_proxy_drop_upstream(p);
        if (px_start(p, HTTPD_UCONN_FRESH) == 0)
            return;
    } else {
        httpd_userver_report(p->server, false, 0);
        httpd_proxy_drop_upstream(p);
        if (again && px_start(p, 0) == 0)
            return;
    }
    httpd_proxy_error(p, timeout ? 504 : 502);
}

/* ---- Timeouts ---------------------------------------------------------------------------- */

/* Read timeout while waiting for the server (not while the client is slow), send timeout. */
static uint64_t px_deadline(const httpd_proxy_t *p)
{
    uint64_t d = UINT64_MAX;
    if (!p->u || p->state < HTTPD_PX_HEAD || p->state > HTTPD_PX_BODY)
        return d;
    if (p->up_reading && p->body_done)
        d = p->read_deadline;
    if (hk_stream_queued(&p->u->stream) > 0 && p->send_deadline < d)
        d = p->send_deadline;
    return d;
}

/*
 * send_timeout measures time without progress while a write is pending: it
 * starts when a write goes into an empty queue (the time before, with
 * nothing to send, is no one's fault) and moves on whenever bytes go out.
 * It was only moved when a write completed, so a write queued after a quiet
 * spell (a client sending its body slowly) met a deadline long past: a 504
 * at once.
 */
void httpd_proxy_send_mark(httpd_proxy_t *p)
{
    p->send_deadline = px_now(p) + p->ups->cfg->send_timeout;
    p->up_sent_mark = p->u ? p->u->stream.bytes_written : 0;
}

static void on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    httpd_uconn_t *u = t->base.data;
    httpd_proxy_t *p = u->owner;
    if (!p)
        return;
    uint64_t d = px_deadline(p);
    if (d == UINT64_MAX)
        return;
    if (px_now(p) >= d && d == p->send_deadline && u->stream.bytes_written != p->up_sent_mark) {
        httpd_proxy_send_mark(p); /* bytes went out since: progress, checked lazily here */
        d = px_deadline(p);
    }
    if (px_now(p) < d) {
        hk_timer_start(t, on_timer, d, 0);
        return;
    }
    httpd_proxy_up_failed(p, -ETIMEDOUT);
    httpd_proxy_maybe_free(p);
}

/* Arms the connection's timer for the earliest deadline (lazily: a later one waits). */
void httpd_proxy_arm(httpd_proxy_t *p)
{
    uint64_t d = px_deadline(p);
    if (!p->u || p->state < HTTPD_PX_HEAD)
        return;
    hk_timer_t *t = &p->u->timer;
    if (d == UINT64_MAX) {
        (void)hk_timer_stop(t);
        return;
    }
    if (hk_is_active(&t->base) && hk_timer_deadline(t) <= d)
        return;
    (void)hk_timer_stop(t);
    hk_timer_start(t, on_timer, d, 0);
}

/* ---- Writing to the upstream ------------------------------------------------------------- */

void httpd_proxy_up_written(httpd_proxy_t *p, const hk_stream_t *stream, int status)
{
    p->up_pending--;
    if (!p->u || stream != &p->u->stream)
        return; /* an earlier connection's write, cancelled by its close */
    if (status < 0) {
        httpd_proxy_up_failed(p, status);
        return;
    }
    httpd_proxy_send_mark(p);
    p->read_deadline = px_now(p) + p->ups->cfg->read_timeout;
    httpd_proxy_touch(p);
    httpd_proxy_arm(p);
}

static void on_up_head_written(hk_write_req_t *req, int status)
{
    httpd_proxy_t *p = req->data;
    httpd_proxy_up_written(p, req->stream, status);
    httpd_proxy_maybe_free(p);
}

/* Connected (or taken from the pool): the head, the body so far, then read the response. */
static void px_send(httpd_proxy_t *p)
{
    httpd_uconn_t *u = p->u;
    u->stream.data = p;
    (void)hk_stream_set_watermarks(&u->stream, PROXY_UP_HIGH, PROXY_UP_LOW,
                                   httpd_proxy_on_up_drain);
    p->state = HTTPD_PX_HEAD;
    p->read_deadline = px_now(p) + p->ups->cfg->read_timeout;
    httpd_proxy_send_mark(p);
    hk_write_req_t *wr = &p->head_wr[p->head_writes++ & 1];
    wr->data = p;
    p->head_iov.iov_base = p->req_head;
    p->head_iov.iov_len = p->req_head_len;
    if (hk_stream_write(&u->stream, wr, &p->head_iov, 1, on_up_head_written) >= 0)
        p->up_pending++;
    while (p->q_head) {
        httpd_pbuf_t *b = p->q_head;
        p->q_head = b->next;
        p->q_bytes -= b->len;
        httpd_proxy_up_write(p, b);
    }
    p->q_tail = NULL;
    if (hk_stream_queued(&u->stream) < PROXY_UP_HIGH && !p->body_done)
        httpd_proxy_pause_client(p, false);
    httpd_proxy_resp_start(p);
}

static void on_connected(httpd_uconn_t *u, int status)
{
    httpd_proxy_t *p = u->owner;
    if (status < 0) {
        p->u = NULL; /* freed when we return */
        httpd_userver_report(p->server, false, 0);
        if (px_start(p, 0) < 0)
            httpd_proxy_error(p, status == -ETIMEDOUT ? 504 : 502);
    } else {
        px_send(p);
    }
    httpd_proxy_maybe_free(p);
}

/* Picks a server and asks for a connection: 0 (ready or on its way) or -errno. */
static int px_start(httpd_proxy_t *p, unsigned flags)
{
    while (p->tries < PROXY_TRIES + (p->retried ? 1u : 0u)) {
        httpd_userver_t *s =
            (flags & HTTPD_UCONN_FRESH) ? p->server : httpd_ups_pick(p->ups, p->tried);
        if (!s)
            break;
        p->server = s;
        p->started = px_now(p);
        p->tries++;
        if (s->index < 64)
            p->tried |= UINT64_C(1) << s->index;
        p->state = HTTPD_PX_CONNECT;
        httpd_proxy_touch(p);
        int r = httpd_uconn_get(s, flags, p, on_connected, &p->u);
        if (r == 0)
            px_send(p);
        if (r >= 0)
            return 0;
        p->u = NULL;
        httpd_userver_report(s, false, 0);
        flags = 0;
    }
    return -EHOSTUNREACH;
}

void httpd_proxy_on_client_written(hk_write_req_t *req, int status)
{
    httpd_proxy_t *p = req->data;
    p->client_pending--;
    httpd_proxy_client_written(p, status);
    httpd_proxy_maybe_free(p);
}

void httpd_proxy_client_written(httpd_proxy_t *p, int status)
{
    if (status < 0) {
        if (p->c)
            httpd_conn_close(p->c);
        return;
    }
    if (!p->c)
        return;
    if (p->client_full && hk_stream_queued(&p->c->stream) <= HTTPD_PROXY_CLIENT_LOW)
        p->client_full = false;
    httpd_proxy_touch(p);
    httpd_proxy_flow(p);
    httpd_proxy_finish(p);
}

static void peer_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    const void *a = NULL;
    if (ss->ss_family == AF_INET)
        a = &((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!a || !inet_ntop(ss->ss_family, a, buf, (socklen_t)size))
        snprintf(buf, size, "unknown");
}

static int px_build_head(httpd_proxy_t *p, const hk_http_request_t *req, size_t head_len)
{
    char addr[INET6_ADDRSTRLEN];
    peer_text(&p->c->peer, addr, sizeof(addr));
    httpd_proxy_reqinfo_t info = {.client_addr = addr,
                                  .https = (p->c->flags & HTTPD_C_TLS) != 0,
                                  .host = p->ups->cfg->name,
                                  .chunked = p->body_chunked,
                                  .close = p->ups->cfg->keepalive == 0};
    size_t cap = httpd_proxy_request_head_max(req, head_len, &info);
    p->req_head = malloc(cap);
    if (!p->req_head)
        return -ENOMEM;
    ssize_t n = httpd_proxy_request_head(p->req_head, cap, req, &info);
    if (n < 0)
        return (int)n;
    p->req_head_len = (size_t)n;
    return 0;
}

/* ---- Access log ------------------------------------------------------------------------- */

/* Copies what the access log needs of req: its head lives in the connection's input. */
static void px_log_capture(httpd_proxy_t *p, const hk_http_request_t *req)
{
    const hk_http_header_t *hs[2] = {
        hk_http_find_header(req->headers, req->num_headers, "Referer"),
        hk_http_find_header(req->headers, req->num_headers, "User-Agent"),
    };
    static const char *const names[2] = {"Referer", "User-Agent"};
    size_t n = req->method_len + req->target_len;
    for (int i = 0; i < 2; i++)
        n += hs[i] ? hs[i]->value_len : 0;
    char *at = malloc(n + 1);
    if (!at)
        return; /* this request goes unlogged; it is served all the same */
    p->log_buf = at;
    hk_http_request_t *lr = &p->log_req;
    lr->method = at;
    lr->method_len = req->method_len;
    at = (char *)memcpy(at, req->method, req->method_len) + req->method_len;
    lr->target = at;
    lr->target_len = req->target_len;
    at = (char *)memcpy(at, req->target, req->target_len) + req->target_len;
    lr->minor_version = req->minor_version;
    lr->headers = p->log_hdrs;
    for (int i = 0; i < 2; i++) {
        if (!hs[i])
            continue;
        hk_http_header_t *h = &p->log_hdrs[lr->num_headers++];
        h->name = names[i];
        h->name_len = strlen(names[i]);
        h->value = at;
        h->value_len = hs[i]->value_len;
        at = (char *)memcpy(at, hs[i]->value, hs[i]->value_len) + hs[i]->value_len;
    }
}

void httpd_proxy_log(httpd_proxy_t *p, int status, uint64_t bytes)
{
    if (!p->log_buf || !p->c)
        return;
    httpd_access_log(p->c, &p->log_req, status, bytes);
    free(p->log_buf);
    p->log_buf = NULL;
}

static bool idempotent(hk_http_method_t m)
{
    return m == HK_HTTP_GET || m == HK_HTTP_HEAD || m == HK_HTTP_PUT || m == HK_HTTP_DELETE ||
           m == HK_HTTP_OPTIONS || m == HK_HTTP_TRACE;
}

int httpd_proxy_handle(httpd_conn_t *c, const hk_http_request_t *req, const char *head,
                       size_t head_len, const char *body, size_t body_avail,
                       const httpd_location_t *loc, bool keep_alive)
{
    (void)head;
    bool head_only = req->method_id == HK_HTTP_HEAD;
    bool chunked = (req->flags & HK_HTTP_CHUNKED) != 0;
    /* On failure the connection skips a body that is all here; any other closes. */
    bool whole =
        !chunked && (req->content_length <= 0 || (uint64_t)req->content_length <= body_avail);
    int status = 500, err = -ENOMEM;
    ssize_t took = 0;
    if (httpd_proxy_max_forwards(req) == 0) {
        /*
         * No hop left: the proxy is the final recipient (RFC 9110 section 7.6.2).
         * OPTIONS is answered with nothing to say; TRACE is refused, as the
         * static locations refuse it (reflecting a request echoes its cookies).
         */
        bool ka = keep_alive && whole;
        if (req->method_id == HK_HTTP_OPTIONS) {
            httpd_resp_t r = {.status = 200,
                              .keep_alive = ka,
                              .length = 0,
                              .extra = HTTPD_PROXY_ALLOW_LINE,
                              .extra_len = sizeof(HTTPD_PROXY_ALLOW_LINE) - 1};
            (void)httpd_resp_head(c, &r);
        } else {
            httpd_resp_error_allow(c, 405, ka, false, HTTPD_PROXY_ALLOW_LINE);
        }
        return -ECANCELED;
    }
    httpd_proxy_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->ups = httpd_ups_enter(c->w, c->gen, loc->proxy))) {
        free(p);
        goto fail;
    }
    p->c = c;
    p->w = c->w;
    if (c->gen->cfg->access_log)
        px_log_capture(p, req);
    p->ka = keep_alive;
    p->head_req = head_only;
    p->client_10 = req->minor_version == 0;
    p->idempotent = idempotent(req->method_id);
    p->body_chunked = chunked;
    p->body_left = chunked || req->content_length < 0 ? 0 : req->content_length;
    p->has_body = chunked || req->content_length > 0;
    p->body_done = !p->has_body;
    if ((err = px_build_head(p, req, head_len)) < 0 ||
        (took = httpd_proxy_body_take(p, body, body_avail)) < 0) {
        err = took < 0 ? (int)took : err;
        status = err == -EFBIG ? 413 : err == -EBADMSG ? 400 : 500;
        goto fail_p;
    }
    if ((req->flags & HK_HTTP_EXPECT_CONTINUE) && !p->client_10 && !p->body_done) {
        static const struct iovec cont = {(char *)continue_100, sizeof(continue_100) - 1};
        p->cont_wr.data = p;
        if (hk_stream_write(&c->stream, &p->cont_wr, &cont, 1, httpd_proxy_on_client_written) >= 0)
            p->client_pending++;
    }
    if ((err = px_start(p, 0)) < 0) {
        status = 502;
        goto fail_p;
    }
    c->proxy = p;
    return (int)took;
fail_p:
    /* Nothing reached the upstream; a 100 Continue may still be on its way to the client. */
    httpd_proxy_drop_upstream(p);
    p->c = NULL;
    httpd_proxy_maybe_free(p);
fail:
    httpd_resp_error(c, status, keep_alive && whole, head_only);
    return err;
}
