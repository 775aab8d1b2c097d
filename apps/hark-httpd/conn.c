/*
 * Connections: read, parse, answer in order, keep alive, time out.
 *
 * Why requests are re-parsed after waiting: a request whose file must be
 * opened off the loop leaves its bytes (and everything pipelined after it)
 * in the connection's own buffer; when the open completes, parsing starts
 * over from that buffer and the handler finds the opened file waiting for
 * it. Parsing a head again costs far less than copying every parsed field
 * into the connection, and keeps the connection small.
 *
 * Why one timer per connection re-armed lazily: each request moves the
 * deadline (keep-alive, header, send timeouts), but the timer is only
 * restarted when the new deadline is earlier than the armed one; when an
 * armed timer fires early, it re-arms for the real deadline. So a busy
 * keep-alive connection costs a store per request, not two heap operations.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"
#include "conn.h"

/*
 * A lingering close. Closing a socket whose receive queue holds unread bytes,
 * or that receives bytes after the close, makes the kernel send a reset, and
 * a reset discards what is still in our send queue and can destroy a
 * response the client has not read yet: the 413 or the early answer of an
 * upstream to a client still sending its body. So such a connection shuts
 * down its write side once the response is queued (the FIN follows the
 * response), then reads and discards what the client still sends, until it
 * closes, or for at most this long and this many bytes (nginx's
 * lingering_time is 30 s; a client that reads its answer stops sooner).
 */
#define HTTPD_LINGER_NS (5 * 1000000000ull)
#define HTTPD_LINGER_BYTES ((uint64_t)64 << 20)

static void conn_arm(httpd_conn_t *c, uint64_t deadline);
static void on_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf);

/* Frees the connection once its handles are closed and no open is in flight. */
static void conn_free_if_done(httpd_conn_t *c)
{
    if (c->closes > 0 || (c->flags & HTTPD_C_FS_BUSY))
        return;
    httpd_static_free(c);
    httpd_autoindex_free(c);
    httpd_gen_unref(c->gen);
    free(c->in);
    free(c);
}

void httpd_conn_fs_done(httpd_conn_t *c)
{
    conn_free_if_done(c);
}

static void on_closed_handle(hk_handle_t *h)
{
    httpd_conn_t *c = h->data;
    c->closes--;
    conn_free_if_done(c);
}

static void on_closed_stream(hk_stream_t *s)
{
    on_closed_handle(&((httpd_conn_t *)s)->timer.base);
}

void httpd_conn_close(httpd_conn_t *c)
{
    if (c->flags & HTTPD_C_CLOSING)
        return;
    c->flags |= HTTPD_C_CLOSING;
    httpd_worker_t *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    httpd_count(&w->counters.conns_open, (uint64_t)-1);
    if (c->batch) {
        httpd_batch_release(w, c->batch);
        c->batch = NULL;
    }
    httpd_static_cancel(c);
    httpd_autoindex_cancel(c);
    if (c->proxy)
        httpd_proxy_abort(c);
    c->proxy = NULL;
    c->closes = 2;
    c->timer.base.data = c;
    hk_close(&c->timer.base, on_closed_handle);
    hk_stream_close(&c->stream, on_closed_stream);
}

void httpd_conn_close_written(httpd_conn_t *c)
{
    if (c->flags & HTTPD_C_CLOSING)
        return;
    if (!(c->flags & HTTPD_C_LINGER) || (c->flags & (HTTPD_C_EOF | HTTPD_C_LINGERING)) ||
        c->w->draining || hk_stream_shutdown(&c->stream, NULL) < 0) {
        httpd_conn_close(c);
        return;
    }
    c->flags |= HTTPD_C_LINGERING;
    c->linger_left = HTTPD_LINGER_BYTES;
    if (c->flags & (HTTPD_C_PAUSED | HTTPD_C_HELD)) {
        c->flags &= ~(HTTPD_C_PAUSED | HTTPD_C_HELD);
        if (hk_stream_read_start(&c->stream, NULL, on_read) < 0) {
            httpd_conn_close(c);
            return;
        }
    }
    conn_arm(c, hk_loop_now(c->w->loop) + HTTPD_LINGER_NS);
}

/* Keeps the bytes from p[0 .. len) (not yet handled) in the connection's own buffer. */
static int conn_keep(httpd_conn_t *c, const char *p, size_t len)
{
    if (p == c->in) {
        c->in_len = len;
        return 0;
    }
    if (c->in && p > c->in && p < c->in + c->in_cap) {
        memmove(c->in, p, len);
        c->in_len = len;
        return 0;
    }
    if (len > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 1024;
        while (cap < len)
            cap *= 2;
        char *n = realloc(c->in, cap);
        if (!n)
            return -ENOMEM;
        c->in = n;
        c->in_cap = cap;
    }
    memmove(c->in, p, len);
    c->in_len = len;
    return 0;
}

static void conn_drop_input(httpd_conn_t *c)
{
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    c->last_len = 0;
}

/* Swaps to the worker's current configuration between requests. */
static void conn_update_gen(httpd_conn_t *c)
{
    if (c->gen != c->w->gen) {
        httpd_gen_unref(c->gen);
        c->gen = httpd_gen_ref(c->w->gen);
    }
}

/* The body of a request the static handler does not take: skip it if it is all here. */
static bool conn_skip_body(const hk_http_request_t *req, size_t avail, size_t *skip)
{
    *skip = 0;
    if (req->flags & HK_HTTP_CHUNKED)
        return false;
    if (req->content_length > 0) {
        if ((uint64_t)req->content_length > avail)
            return false;
        *skip = (size_t)req->content_length;
    }
    return true;
}

/*
 * What is served here answers GET and HEAD; OPTIONS gets the list, a method
 * this server does not know 501 (RFC 9110 section 9.1) and a known one it
 * does not serve 405, both with Allow. Returns 1 when it answered.
 */
static int conn_bad_method(httpd_conn_t *c, const hk_http_request_t *req, bool ka)
{
    switch (req->method_id) {
    case HK_HTTP_GET:
    case HK_HTTP_HEAD:
        return 0;
    case HK_HTTP_OPTIONS: {
        httpd_resp_t r = {.status = 200,
                          .keep_alive = ka,
                          .length = 0,
                          .extra = HTTPD_ALLOW_LINE,
                          .extra_len = sizeof(HTTPD_ALLOW_LINE) - 1};
        (void)httpd_resp_head(c, &r);
        return 1;
    }
    case HK_HTTP_OTHER:
        httpd_resp_error(c, 501, ka, false);
        return 1;
    default:
        httpd_resp_error(c, 405, ka, false);
        return 1;
    }
}

static int conn_special(httpd_conn_t *c, const httpd_config_t *cfg, const hk_http_request_t *req,
                        const char *path, size_t len, bool ka)
{
    char *body = NULL;
    size_t blen = 0;
    const char *type;
    bool metrics = cfg->metrics_path && strlen(cfg->metrics_path) == len &&
                   memcmp(cfg->metrics_path, path, len) == 0;
    bool status = !metrics && cfg->status_path && strlen(cfg->status_path) == len &&
                  memcmp(cfg->status_path, path, len) == 0;
    if (!metrics && !status)
        return 0;
    if (conn_bad_method(c, req, ka))
        return 1;
    bool head = req->method_id == HK_HTTP_HEAD;
    if (metrics) {
        body = httpd_metrics_render(c->w->server, &blen);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else {
        body = httpd_status_render(c->w->server, &blen);
        type = "text/html; charset=utf-8";
    }
    if (!body) {
        httpd_resp_error(c, 500, ka, head);
        return 1;
    }
    httpd_resp_t r = {.status = 200,
                      .keep_alive = ka,
                      .head = head, /* the access log counts no body for a HEAD */
                      .type = type,
                      .length = blen,
                      .extra = "Cache-Control: no-store\r\n",
                      .extra_len = 25};
    if (httpd_resp_head(c, &r) < 0) {
        free(body);
        return 1;
    }
    if (head)
        free(body);
    else
        httpd_resp_body_owned(c, body, blen);
    httpd_batch_flush(c); /* one owned body per batch */
    return 1;
}

/* A plain listener with redirect_https: 301 to the same target on https. */
static void conn_redirect_https(httpd_conn_t *c, const hk_http_request_t *req, int port, bool ka)
{
    const char *host = req->host ? req->host : "localhost";
    size_t hlen = req->host ? req->host_len : 9;
    /* Drop the port of the Host value ("[::1]:8080" keeps its brackets). */
    const char *end = host + hlen;
    const char *colon = memrchr(host, ':', hlen);
    const char *bracket = memrchr(host, ']', hlen);
    if (colon && (!bracket || colon > bracket))
        end = colon;
    bool head = req->method_id == HK_HTTP_HEAD;
    /* The origin form: an absolute-form target ("http://a/p") is path and query here. */
    const char *path = req->target;
    int plen = (int)req->target_len, qlen = 0;
    const char *q = "";
    if (req->target_len > 0 && req->target[0] != '/') {
        path = req->path;
        plen = (int)req->path_len;
        if (req->query) {
            q = req->query - 1; /* with its '?' */
            qlen = (int)req->query_len + 1;
        }
    }
    char extra[4600];
    int n = snprintf(extra, sizeof(extra), "Location: https://%.*s:%d%.*s%.*s\r\n",
                     (int)(end - host), host, port, plen, path, qlen, q);
    if (n < 0 || (size_t)n >= sizeof(extra)) {
        httpd_resp_error(c, 414, ka, head);
        return;
    }
    httpd_resp_redirect(c, ka, head, extra, (size_t)n);
}

/*
 * Handles one parsed request. Returns 0 when answered, 1 when it waits for
 * an open (the request must be parsed again later).
 */
static int conn_dispatch(httpd_conn_t *c, const hk_http_request_t *req, bool ka, bool whole,
                         const char *head, size_t head_len, size_t body_avail, size_t *consumed)
{
    const httpd_config_t *cfg = c->gen->cfg;
    const char *head_ptr = head;
    bool head_only = req->method_id == HK_HTTP_HEAD;
    /*
     * Only the proxy reads request bodies. Every other answer leaves the body
     * to conn_process, which skips it when it is all here (whole); when it is
     * not (or it is chunked), the answer must close the connection, or the
     * body's bytes would be read as the next request.
     */
    bool ka_local = ka && whole;
    if (req->path_len == 1 && req->path[0] == '*') { /* OPTIONS *: the parser allows no other */
        (void)conn_bad_method(c, req, ka_local);
        return 0;
    }
    char path[4096];
    ssize_t plen = hk_http_path_decode(req->path, req->path_len, path, sizeof(path));
    if (plen < 0) {
        httpd_resp_error(c, plen == -ENAMETOOLONG ? 414 : 400, ka_local, head_only);
        return 0;
    }
    if (cfg->listens[c->listen_index].redirect_https) {
        conn_redirect_https(c, req, cfg->listens[c->listen_index].https_port, ka_local);
        return 0;
    }
    if (conn_special(c, cfg, req, path, (size_t)plen, ka_local))
        return 0;
    const httpd_location_t *loc = httpd_config_route(cfg, path, (size_t)plen);
    if (!loc) {
        httpd_resp_error(c, 404, ka_local, head_only);
        return 0;
    }
    if (loc->proxy) {
        int r = httpd_proxy_handle(c, req, head_ptr, head_len, head_ptr + head_len, body_avail, loc,
                                   ka);
        if (r < 0)
            return 0; /* answered by the proxy (an error response) */
        *consumed = (size_t)r;
        c->flags |= HTTPD_C_WAITING;
        return 2;
    }
    if (conn_bad_method(c, req, ka_local))
        return 0;
    int root_fd = c->gen->root_fds[loc - cfg->locations];
    return httpd_static_handle(c, req, loc, root_fd, path, (size_t)plen, ka_local);
}

/* Handles every complete request in p[0 .. len); keeps the rest. */
static void conn_process(httpd_conn_t *c, const char *p, size_t len)
{
    httpd_worker_t *w = c->w;
    const httpd_config_t *cfg;
    size_t off = 0;
    hk_http_header_t headers[HTTPD_MAX_HEADERS];
    while (off < len && !(c->flags & (HTTPD_C_WAITING | HTTPD_C_CLOSE_AFTER | HTTPD_C_CLOSING))) {
        if (c->last_len == 0)
            conn_update_gen(c);
        cfg = c->gen->cfg;
        hk_http_request_t req = {.headers = headers, .max_headers = HTTPD_MAX_HEADERS};
        req.limits.max_head = cfg->max_header_bytes;
        int r = hk_http_parse_request(&req, p + off, len - off, c->last_len);
        if (r == -EAGAIN) {
            c->last_len = len - off;
            break;
        }
        c->last_len = 0;
        /*
         * A HEAD gets no body, even in an error's answer (RFC 9110 section
         * 9.3.2); method_id is HEAD only once the request line has parsed.
         */
        bool head = req.method_id == HK_HTTP_HEAD;
        if (r < 0) {
            httpd_resp_error(c, req.status ? req.status : 400, false, head);
            if (cfg->access_log)
                httpd_access_log(c, &req, c->last_status, c->last_bytes);
            off = len;
            break;
        }
        size_t skip;
        bool ka = (req.flags & HK_HTTP_KEEP_ALIVE) && c->requests + 1 < cfg->keepalive_requests &&
                  cfg->keepalive_timeout > 0 && !w->draining; /* keepalive_timeout 0: none */
        if (req.content_length > 0 && (uint64_t)req.content_length > cfg->max_body) {
            c->flags |= HTTPD_C_LINGER; /* the body is on its way: let the 413 reach the client */
            httpd_resp_error(c, 413, false, head);
            off = len;
            break;
        }
        bool whole = conn_skip_body(&req, len - off - (size_t)r, &skip);
        size_t consumed = 0;
        if (!whole)
            c->flags |= HTTPD_C_LINGER; /* cleared below if the proxy takes the body */
        if (req.minor_version == 0)
            c->flags |= HTTPD_C_HTTP10;
        else
            c->flags &= ~HTTPD_C_HTTP10;
        int d =
            conn_dispatch(c, &req, ka, whole, p + off, (size_t)r, len - off - (size_t)r, &consumed);
        if (d == 1) {
            c->last_len = 0;
            break; /* waiting: this request is parsed again when its open is done */
        }
        c->requests++;
        if (d == 0 && cfg->access_log)
            httpd_access_log(c, &req, c->last_status, c->last_bytes);
        if (d == 2) { /* proxied: the proxy took the head and consumed body bytes */
            c->flags &= ~HTTPD_C_LINGER;
            off += (size_t)r + consumed;
            break;
        }
        off += (size_t)r + skip;
        if (!ka)
            off = len; /* nothing after a closing response is read */
    }
    size_t rest = len - off;
    if (rest == 0) {
        if (c->in)
            conn_drop_input(c);
        c->head_start = 0;
    } else if (conn_keep(c, p + off, rest) < 0) {
        httpd_conn_close(c);
        return;
    } else if (!(c->flags & HTTPD_C_WAITING)) {
        /* A head in pieces: the header timeout runs from its first byte. */
        uint64_t now = hk_loop_now(w->loop);
        if (!c->head_start)
            c->head_start = now;
        conn_arm(c, c->head_start + c->gen->cfg->header_timeout);
    }
    httpd_batch_flush(c);
    if ((c->flags & HTTPD_C_EOF) && !(c->flags & (HTTPD_C_WAITING | HTTPD_C_CLOSING))) {
        /* The client sent all it will (a head cut short never completes): close after it. */
        if (c->writes > 0)
            c->flags |= HTTPD_C_CLOSE_AFTER;
        else
            httpd_conn_close(c);
    }
}

static void on_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    httpd_conn_t *c = (httpd_conn_t *)s;
    if (c->flags & HTTPD_C_LINGERING) {
        if (n == -EAGAIN)
            return;
        if (n <= 0 || (uint64_t)n >= c->linger_left)
            httpd_conn_close(c); /* the client is done, or sent too much to wait for */
        else
            c->linger_left -= (uint64_t)n;
        return;
    }
    if (n <= 0) {
        if (n == -EAGAIN)
            return;
        /* EOF or an error: finish what is being written (EOF), then close. */
        c->flags |= HTTPD_C_EOF;
        if (n == 0 && c->proxy) {
            /* A client that half-closes after its request still gets the response. */
            httpd_proxy_client_data(c, NULL, 0, true);
            c->flags |= HTTPD_C_CLOSE_AFTER;
            return;
        }
        /*
         * A half-close says nothing more comes, not that no answer is wanted:
         * a request waiting for its open is answered when the open is done,
         * and conn_process closes after it.
         */
        if (n == 0 && (c->flags & HTTPD_C_WAITING))
            return;
        if (n == 0 && c->writes > 0)
            c->flags |= HTTPD_C_CLOSE_AFTER;
        else
            httpd_conn_close(c);
        return;
    }
    if (c->flags & (HTTPD_C_CLOSE_AFTER | HTTPD_C_CLOSING))
        return; /* a closing response is on its way: nothing more is read */
    const char *data = buf->base;
    if (c->proxy && c->in_len == 0) {
        /* A proxied request's body: the proxy takes what is its own; the rest waits. */
        size_t took = httpd_proxy_client_data(c, data, (size_t)n, false);
        if (took == (size_t)n || (c->flags & HTTPD_C_CLOSING))
            return;
        data += took;
        n -= (ssize_t)took;
    }
    if (c->in_len || (c->flags & HTTPD_C_WAITING)) {
        size_t limit = c->gen->cfg->max_header_bytes + 65536;
        bool waiting = c->flags & HTTPD_C_WAITING;
        if (!waiting && c->in_len + (size_t)n > limit) {
            /* A head that never ends: every request before it is answered. */
            httpd_resp_error(c, 431, false, false);
            httpd_batch_flush(c);
            return;
        }
        size_t old = c->in_len;
        if (old + (size_t)n > c->in_cap) {
            size_t cap = c->in_cap ? c->in_cap : 1024;
            while (cap < old + (size_t)n)
                cap *= 2;
            char *nb = realloc(c->in, cap);
            if (!nb) {
                httpd_conn_close(c);
                return;
            }
            c->in = nb;
            c->in_cap = cap;
        }
        memcpy(c->in + old, data, (size_t)n);
        c->in_len = old + (size_t)n;
        if (!waiting) {
            conn_process(c, c->in, c->in_len);
        } else if (c->in_len > limit) {
            /*
             * Pipelined far ahead of a request that waits (an open, the
             * proxy): an answer now (a 431) would go out before the waiting
             * one's, or in the middle of it. Stop reading instead; what is
             * kept is handled, and reading starts again, once it is answered.
             */
            c->flags |= HTTPD_C_HELD;
            hk_stream_read_stop(&c->stream);
        }
        return;
    }
    conn_process(c, data, (size_t)n);
}

void httpd_conn_proxy_done(httpd_conn_t *c, bool keep_alive)
{
    c->proxy = NULL;
    if (!keep_alive)
        c->flags |= HTTPD_C_CLOSE_AFTER;
    if (c->flags & HTTPD_C_CLOSING)
        return;
    if ((c->flags & HTTPD_C_CLOSE_AFTER) && c->writes == 0 && hk_stream_queued(&c->stream) == 0) {
        httpd_conn_close_written(c);
        return;
    }
    conn_arm(c, hk_loop_now(c->w->loop) + c->gen->cfg->keepalive_timeout);
    httpd_conn_resume(c);
}

void httpd_conn_pause_reading(httpd_conn_t *c, bool pause)
{
    if (c->flags & HTTPD_C_CLOSING)
        return;
    if (pause && !(c->flags & HTTPD_C_PAUSED)) {
        c->flags |= HTTPD_C_PAUSED;
        hk_stream_read_stop(&c->stream);
    } else if (!pause && (c->flags & HTTPD_C_PAUSED)) {
        c->flags &= ~HTTPD_C_PAUSED;
        if (!(c->flags & HTTPD_C_HELD))
            hk_stream_read_start(&c->stream, NULL, on_read);
    }
}

void httpd_conn_resume(httpd_conn_t *c)
{
    c->flags &= ~HTTPD_C_WAITING;
    if (c->flags & HTTPD_C_CLOSING)
        return;
    c->last_len = 0;
    conn_process(c, c->in, c->in_len);
    if ((c->flags & HTTPD_C_HELD) && !(c->flags & (HTTPD_C_WAITING | HTTPD_C_CLOSING))) {
        /* What ran ahead is answered (or waits no more): read again. */
        c->flags &= ~HTTPD_C_HELD;
        if (!(c->flags & HTTPD_C_PAUSED))
            hk_stream_read_start(&c->stream, NULL, on_read);
    }
}

static void on_drain(hk_stream_t *s)
{
    httpd_conn_t *c = (httpd_conn_t *)s;
    if ((c->flags & HTTPD_C_PAUSED) && !(c->flags & HTTPD_C_CLOSING)) {
        c->flags &= ~HTTPD_C_PAUSED;
        if (!(c->flags & HTTPD_C_HELD))
            hk_stream_read_start(&c->stream, NULL, on_read);
    }
}

static void on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    httpd_conn_t *c = (httpd_conn_t *)((char *)t - offsetof(httpd_conn_t, timer));
    uint64_t now = hk_loop_now(c->w->loop);
    if (now < c->deadline) {
        hk_timer_start(&c->timer, on_timer, c->deadline, 0);
        return;
    }
    if (c->flags & HTTPD_C_LINGERING) {
        httpd_conn_close(c); /* lingered long enough */
        return;
    }
    if (c->writes > 0 && c->stream.bytes_written != c->sent_mark) {
        /*
         * send_timeout is the longest gap between two writes, not the time a
         * whole response may take: bytes went out since the deadline was
         * set, so it moves on (checked here, lazily, not on every write).
         */
        c->sent_mark = c->stream.bytes_written;
        c->deadline = now + c->gen->cfg->send_timeout;
        hk_timer_start(&c->timer, on_timer, c->deadline, 0);
        return;
    }
    if (c->in_len && !(c->flags & HTTPD_C_WAITING) && c->writes == 0) {
        /* Slowloris: the head did not arrive in time. */
        httpd_count(&c->w->counters.header_timeouts, 1);
        httpd_resp_error(c, 408, false, false);
        httpd_batch_flush(c);
        if (!(c->flags & HTTPD_C_CLOSING))
            c->deadline = now + 1000000000ull; /* give the 408 a second, then close */
        c->in_len = 0;
        hk_timer_start(&c->timer, on_timer, c->deadline, 0);
        return;
    }
    if (c->writes == 0)
        httpd_count(&c->w->counters.idle_timeouts, 1);
    httpd_conn_close(c);
}

void httpd_conn_arm(httpd_conn_t *c, uint64_t deadline)
{
    conn_arm(c, deadline);
}

static void conn_arm(httpd_conn_t *c, uint64_t deadline)
{
    c->deadline = deadline;
    if (hk_is_active(&c->timer.base)) {
        if (hk_timer_deadline(&c->timer) <= deadline)
            return;
        hk_timer_stop(&c->timer);
    }
    hk_timer_start(&c->timer, on_timer, deadline, 0);
}

static void on_handshake(hk_stream_t *s, int status, const char *error)
{
    httpd_conn_t *c = (httpd_conn_t *)s;
    (void)error;
    c->flags &= ~HTTPD_C_HANDSHAKE;
    if (status < 0) {
        httpd_conn_close(c);
        return;
    }
    c->flags |= HTTPD_C_READING;
    hk_stream_read_start(&c->stream, NULL, on_read);
}

void httpd_conn_start(httpd_worker_t *w, int fd, unsigned listen_index)
{
    const httpd_config_t *cfg = w->gen->cfg;
    if (httpd_read(&w->counters.conns_open) >= cfg->max_conns || w->draining) {
        httpd_count(&w->counters.conns_refused, 1);
        close(fd);
        return;
    }
    httpd_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    if (hk_stream_init_socket(w->loop, &c->stream, fd) < 0) { /* accept4 made it non-blocking */
        free(c);
        close(fd);
        return;
    }
    c->w = w;
    c->gen = httpd_gen_ref(w->gen);
    c->listen_index = listen_index;
    hk_timer_init(w->loop, &c->timer);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    httpd_count(&w->counters.conns_total, 1);
    httpd_count(&w->counters.conns_open, 1);
    if (cfg->sndbuf) {
        /*
         * A bounded send buffer instead of autotuning (up to 4 MiB): large files
         * then reach the client as fast as it reads, instead of piling up in its
         * receive queue, which costs the receiver far more per byte
         * (docs/httpd.md: 1 MiB responses went from 1,900 to 2,500 per second).
         */
        int v = (int)cfg->sndbuf;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    }
    if (cfg->notsent_lowat) {
        /*
         * At most this many bytes wait in the socket unsent (docs/httpd.md): a
         * sendfile of a large file stops there, and the rest goes out from this
         * loop when the socket becomes writable again, instead of from inside
         * whatever system call of the client's processes the ACK that opens the
         * window.
         */
        int v = (int)cfg->notsent_lowat;
        setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v));
    }
    socklen_t sl = sizeof(c->peer);
    getpeername(fd, (struct sockaddr *)&c->peer, &sl);
    hk_stream_set_watermarks(&c->stream, 256 * 1024, 64 * 1024, on_drain);
    conn_arm(c, hk_loop_now(w->loop) + cfg->header_timeout);
    c->head_start = 0;
    hk_tls_ctx_t *tls = c->gen->tls[listen_index];
    if (tls) {
        c->flags |= HTTPD_C_TLS | HTTPD_C_HANDSHAKE;
        if (hk_tls_stream_start(&c->stream, tls, HK_TLS_SERVER, NULL, on_handshake) < 0)
            httpd_conn_close(c);
        return;
    }
    c->flags |= HTTPD_C_READING;
    if (hk_stream_read_start(&c->stream, NULL, on_read) < 0)
        httpd_conn_close(c);
}

void httpd_conn_drain(httpd_conn_t *c)
{
    /*
     * Idle (nothing pending, nothing being written): close now. A head still
     * arriving is a request in flight: it is read to its end (under
     * header_timeout) and answered with Connection: close, as every request
     * is while draining. So is a request waiting for its open: marking the
     * connection to close after what is written would keep it from being
     * handled at all. Otherwise: close after the response being written.
     */
    if (c->writes == 0 && !(c->flags & HTTPD_C_WAITING)) {
        if (c->in_len == 0)
            httpd_conn_close(c);
        return;
    }
    if ((c->flags & HTTPD_C_WAITING) && !c->proxy)
        return;
    c->flags |= HTTPD_C_CLOSE_AFTER;
}
