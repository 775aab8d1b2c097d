/*
 * The reverse proxy, response side: read the upstream's head, rewrite it,
 * stream the body to the client in the framing the client can use.
 *
 * Why at most four buffers per request: the upstream is read straight into
 * a 64 KiB buffer of ours, which is then written to the client zero-copy
 * (with a chunk-size line around it when we re-chunk). A buffer is busy
 * until its write completes. Reading stops when every buffer is busy or the
 * client stream said HK_STREAM_FULL, and starts again as the client's
 * writes complete, so a slow client holds at most 256 KiB of a response in
 * the proxy, whatever the size of the body; TCP slows the upstream down.
 *
 * Framing: a Content-Length body passes through with its length; a chunked
 * body is decoded and re-chunked (the chunk boundaries are this hop's
 * business, trailers are dropped); a body delimited by the upstream closing
 * goes chunked to an HTTP/1.1 client and close-delimited to an HTTP/1.0
 * one. HEAD, 204 and 304 have no body whatever the headers say. Interim 1xx
 * responses (103 Early Hints, 102...) go to an HTTP/1.1 client rewritten like
 * a final head, as RFC 9110 section 15.2 asks of a proxy; an HTTP/1.0 client
 * must not get one, and 101 is refused (no upgrades).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static const char crlf[] = "\r\n";

/* A response buffer not being written (allocated on first need), or NULL. */
static httpd_pbuf_t *buf_get(httpd_proxy_t *p)
{
    for (int i = 0; i < HTTPD_PROXY_NBUF; i++) {
        httpd_pbuf_t *b = p->bufs[i];
        if (!b) {
            b = malloc(sizeof(*b) + HTTPD_PROXY_BUF);
            if (!b)
                return NULL;
            memset(b, 0, sizeof(*b));
            b->p = p;
            b->cap = HTTPD_PROXY_BUF;
            p->bufs[i] = b;
        }
        if (!b->busy)
            return b;
    }
    return NULL;
}

static bool buf_free(const httpd_proxy_t *p)
{
    for (int i = 0; i < HTTPD_PROXY_NBUF; i++) {
        if (!p->bufs[i] || !p->bufs[i]->busy)
            return true;
    }
    return false;
}

static void on_alloc(hk_stream_t *stream, size_t suggested, hk_buf_t *buf)
{
    httpd_proxy_t *p = stream->data;
    (void)suggested;
    buf->base = NULL;
    buf->len = 0;
    /* The head is gathered in the first buffer; the body goes in any free one. */
    httpd_pbuf_t *b =
        p->state == HTTPD_PX_HEAD ? (p->bufs[0] ? p->bufs[0] : buf_get(p)) : buf_get(p);
    if (!b)
        return;
    p->cur = b;
    size_t off = p->state == HTTPD_PX_HEAD ? p->hlen : 0;
    buf->base = b->data + off;
    buf->len = b->cap - off;
}

static void on_buf_written(hk_write_req_t *req, int status)
{
    httpd_pbuf_t *b = req->data;
    httpd_proxy_t *p = b->p;
    b->busy = false;
    p->client_pending--;
    httpd_proxy_client_written(p, status);
    httpd_proxy_maybe_free(p);
}

/* Queues d[0 .. len) of b for the client; false when the client connection is dead. */
static bool client_write(httpd_proxy_t *p, httpd_pbuf_t *b, char *d, size_t len)
{
    httpd_conn_t *c = p->c;
    int k = 0;
    if (!c)
        return false;
    if (p->out == HTTPD_FRAME_CHUNKED) {
        int m = snprintf(b->line, sizeof(b->line), "%zx\r\n", len);
        b->iov[k++] = (struct iovec){b->line, (size_t)m};
    }
    b->iov[k++] = (struct iovec){d, len};
    if (p->out == HTTPD_FRAME_CHUNKED)
        b->iov[k++] = (struct iovec){(char *)crlf, 2};
    b->wr.data = b;
    int r = hk_stream_write(&c->stream, &b->wr, b->iov, k, on_buf_written);
    if (r < 0) {
        httpd_conn_close(c);
        return false;
    }
    b->busy = true;
    p->client_pending++;
    p->log_bytes += len;
    httpd_count(&p->w->counters.bytes_out, len);
    if (r == HK_STREAM_FULL)
        p->client_full = true;
    return true;
}

/* The whole response has come: the last chunk, the upstream connection back to its pool. */
static void resp_complete(httpd_proxy_t *p)
{
    p->state = HTTPD_PX_DONE;
    httpd_conn_t *c = p->c;
    if (p->out == HTTPD_FRAME_CHUNKED && c) {
        static const struct iovec last = {(char *)"0\r\n\r\n", 5};
        p->end_wr.data = p;
        if (hk_stream_write(&c->stream, &p->end_wr, &last, 1, httpd_proxy_on_client_written) < 0)
            httpd_conn_close(c);
        else
            p->client_pending++;
    }
    httpd_uconn_t *u = p->u;
    p->u = NULL;
    p->up_reading = false;
    if (u)
        httpd_uconn_release(u, p->up_reuse && p->body_done && !p->q_head);
    httpd_proxy_finish(p);
}

static void resp_body(httpd_proxy_t *p, httpd_pbuf_t *b, size_t off, size_t n)
{
    char *d = b->data + off;
    size_t len = n;
    bool complete = false;
    if (p->in == HTTPD_FRAME_LENGTH) {
        if (len >= p->resp_left) {
            if (len > p->resp_left)
                p->up_reuse = false; /* more than announced: do not trust the connection */
            len = (size_t)p->resp_left;
            complete = true;
        }
        p->resp_left -= len;
    } else if (p->in == HTTPD_FRAME_CHUNKED) {
        int r = hk_http_chunked_decode(&p->resp_dec, d, &len);
        if (r < 0) {
            httpd_proxy_up_failed(p, -EBADMSG);
            return;
        }
        if (r == 1) {
            complete = true;
            if (p->resp_dec.end_offset < n)
                p->up_reuse = false;
        }
    }
    if (len > 0 && !client_write(p, b, d, len))
        return;
    if (complete)
        resp_complete(p);
}

/* An interim response on its way to the client; freed when its write completes. */
typedef struct interim {
    hk_write_req_t wr;
    httpd_proxy_t *p;
    struct iovec iov;
    char data[];
} interim_t;

static void on_interim_written(hk_write_req_t *req, int status)
{
    interim_t *im = req->data;
    httpd_proxy_t *p = im->p;
    free(im);
    p->client_pending--;
    httpd_proxy_client_written(p, status);
    httpd_proxy_maybe_free(p);
}

/* The parsed 1xx head (head_len bytes) to the client; false when the request is over. */
static bool resp_interim(httpd_proxy_t *p, size_t head_len)
{
    httpd_count(&p->server->stat->responses[0], 1);
    httpd_conn_t *c = p->c;
    if (!c || p->client_10)
        return true;
    httpd_proxy_respinfo_t info = {.keep_alive = true};
    size_t cap = httpd_proxy_response_head_max(&p->res, head_len);
    interim_t *im = malloc(sizeof(*im) + cap);
    ssize_t n = im ? httpd_proxy_response_head(im->data, cap, &p->res, &info) : -ENOMEM;
    if (n < 0) {
        free(im);
        httpd_proxy_up_failed(p, -EBADMSG);
        return false;
    }
    im->p = p;
    im->iov = (struct iovec){im->data, (size_t)n};
    im->wr.data = im;
    int r = hk_stream_write(&c->stream, &im->wr, &im->iov, 1, on_interim_written);
    if (r < 0) {
        free(im);
        httpd_conn_close(c);
        return false;
    }
    p->client_pending++;
    httpd_count(&p->w->counters.bytes_out, (uint64_t)n);
    if (r == HK_STREAM_FULL)
        p->client_full = true;
    return true;
}

/* The head is parsed (head_len bytes of the first buffer): answer the client. */
static void resp_respond(httpd_proxy_t *p, size_t head_len)
{
    const hk_http_response_t *res = &p->res;
    httpd_conn_t *c = p->c;
    httpd_userver_report(p->server, true, p->started);
    if (res->status >= 100 && res->status <= 599)
        httpd_count(&p->server->stat->responses[res->status / 100 - 1], 1);
    if (p->head_req || res->status == 204 || res->status == 304) {
        p->in = HTTPD_FRAME_NONE;
    } else if (res->flags & HK_HTTP_CHUNKED) {
        p->in = HTTPD_FRAME_CHUNKED;
    } else if (res->content_length >= 0) {
        p->in = HTTPD_FRAME_LENGTH;
        p->resp_left = (uint64_t)res->content_length;
    } else {
        p->in = HTTPD_FRAME_CLOSE;
    }
    p->up_reuse = (res->flags & HK_HTTP_KEEP_ALIVE) && p->in != HTTPD_FRAME_CLOSE;
    if (p->in == HTTPD_FRAME_NONE || p->in == HTTPD_FRAME_LENGTH)
        p->out = p->in;
    else
        p->out = p->client_10 ? HTTPD_FRAME_CLOSE : HTTPD_FRAME_CHUNKED;
    /* A body still coming from the client, or no framing: the connection cannot go on. */
    p->ka = httpd_proxy_keep_alive(p) && p->out != HTTPD_FRAME_CLOSE;
    httpd_proxy_respinfo_t info = {
        .chunked = p->out == HTTPD_FRAME_CHUNKED,
        .drop_length = p->in == HTTPD_FRAME_CHUNKED || p->in == HTTPD_FRAME_CLOSE,
        .keep_alive = p->ka,
        .client_10 = p->client_10,
        .date = httpd_worker_date(p->c->w),
    };
    size_t cap = httpd_proxy_response_head_max(res, head_len);
    p->resp_head = malloc(cap);
    ssize_t n = p->resp_head ? httpd_proxy_response_head(p->resp_head, cap, res, &info) : -ENOMEM;
    if (n < 0 || !c) {
        httpd_proxy_up_failed(p, -EBADMSG);
        return;
    }
    p->state = HTTPD_PX_BODY;
    p->responded = true;
    httpd_count_status(p->w, res->status);
    p->resp_iov = (struct iovec){p->resp_head, (size_t)n};
    p->resp_wr.data = p;
    int r =
        hk_stream_write(&c->stream, &p->resp_wr, &p->resp_iov, 1, httpd_proxy_on_client_written);
    if (r < 0) {
        httpd_conn_close(c);
        return;
    }
    p->client_pending++;
    httpd_count(&p->w->counters.bytes_out, (uint64_t)n);
    if (r == HK_STREAM_FULL)
        p->client_full = true;
    size_t rest = p->hlen - head_len;
    if (p->in == HTTPD_FRAME_NONE || (p->in == HTTPD_FRAME_LENGTH && p->resp_left == 0)) {
        if (rest)
            p->up_reuse = false;
        resp_complete(p);
    } else if (rest) {
        resp_body(p, p->bufs[0], head_len, rest);
    }
}

/*
 * A head with more fields than the inline array: most have a few dozen, so
 * only such a head pays for a larger array (4 times larger each time, up to
 * HTTPD_PROXY_RES_HEADERS_MAX). False when at the limit or out of memory.
 */
static bool res_grow(httpd_proxy_t *p)
{
    size_t n = p->res.max_headers * 4;
    if (n > HTTPD_PROXY_RES_HEADERS_MAX)
        n = HTTPD_PROXY_RES_HEADERS_MAX;
    if (n <= p->res.max_headers)
        return false;
    hk_http_header_t *h = malloc(n * sizeof(*h));
    if (!h)
        return false;
    free(p->res_big);
    p->res_big = h;
    p->res_big_n = n;
    return true;
}

static void resp_head(httpd_proxy_t *p)
{
    httpd_pbuf_t *b = p->bufs[0];
    for (;;) {
        if (p->res_last == 0) {
            memset(&p->res, 0, sizeof(p->res));
            p->res.headers = p->res_big ? p->res_big : p->res_hdrs;
            p->res.max_headers = p->res_big ? p->res_big_n : HTTPD_PROXY_RES_HEADERS;
            p->res.max_head = b->cap;
        }
        int r = hk_http_parse_response(&p->res, b->data, p->hlen, p->res_last);
        if (r == -EBADMSG && p->res.num_headers == p->res.max_headers && res_grow(p)) {
            p->res_last = 0; /* parsed again from its start, with room for more fields */
            continue;
        }
        if (r == -EAGAIN) {
            p->res_last = p->hlen;
            if (p->hlen == b->cap)
                httpd_proxy_up_failed(p, -EMSGSIZE);
            return;
        }
        p->res_last = 0;
        if (r < 0 || p->res.status == 101) {
            httpd_proxy_up_failed(p, -EBADMSG);
            return;
        }
        if (p->res.status >= 200) {
            resp_respond(p, (size_t)r);
            return;
        }
        /* An interim response: forwarded; the final one follows. */
        if (!resp_interim(p, (size_t)r))
            return;
        memmove(b->data, b->data + r, p->hlen - (size_t)r);
        p->hlen -= (size_t)r;
        if (p->hlen == 0)
            return;
    }
}

static void on_read(hk_stream_t *stream, ssize_t n, const hk_buf_t *buf)
{
    httpd_proxy_t *p = stream->data;
    (void)buf;
    if (!p || n == -EAGAIN)
        return;
    if (n > 0) {
        p->got_bytes = true;
        p->read_deadline = hk_loop_now(p->w->loop) + p->ups->cfg->read_timeout;
        httpd_proxy_touch(p);
        if (p->state == HTTPD_PX_HEAD) {
            p->hlen += (size_t)n;
            resp_head(p);
        } else if (p->state == HTTPD_PX_BODY) {
            resp_body(p, p->cur, 0, (size_t)n);
        }
        httpd_proxy_flow(p);
    } else if (n == 0 && p->state == HTTPD_PX_BODY && p->in == HTTPD_FRAME_CLOSE) {
        p->up_reuse = false;
        resp_complete(p);
    } else {
        p->up_reading = false;
        httpd_proxy_up_failed(p, n == 0 ? -ECONNRESET : (int)n);
    }
    httpd_proxy_maybe_free(p);
}

void httpd_proxy_flow(httpd_proxy_t *p)
{
    httpd_uconn_t *u = p->u;
    if (!u || (p->state != HTTPD_PX_HEAD && p->state != HTTPD_PX_BODY))
        return;
    bool want = p->c && !p->client_full && (p->state == HTTPD_PX_HEAD || buf_free(p));
    if (want && !p->up_reading) {
        if (hk_stream_read_start(&u->stream, on_alloc, on_read) == 0) {
            p->up_reading = true;
            p->read_deadline = hk_loop_now(p->w->loop) + p->ups->cfg->read_timeout;
        }
    } else if (!want && p->up_reading) {
        (void)hk_stream_read_stop(&u->stream);
        p->up_reading = false;
    }
    httpd_proxy_arm(p);
}

void httpd_proxy_resp_start(httpd_proxy_t *p)
{
    p->hlen = 0;
    p->res_last = 0;
    p->got_bytes = false;
    p->up_reading = false;
    httpd_proxy_flow(p);
}
