/*
 * Responses: status line and headers appended to the connection's batch with
 * plain copies (no printf on the hot path), bodies as iovecs, and the batch
 * written with one hk_stream_write (plus a sendfile request for a large
 * file). Batches come from a per-worker free list.
 */
#include <stdlib.h>
#include <string.h>

#include "conn.h"

/* Worker-private free list of batches (the worker struct has no room for it in httpd.h). */
static _Thread_local httpd_batch_t *batch_free;
static _Thread_local unsigned batch_free_count;

httpd_batch_t *httpd_batch_get(httpd_conn_t *c)
{
    if (c->batch)
        return c->batch;
    httpd_batch_t *b = batch_free;
    if (b) {
        batch_free = b->next;
        batch_free_count--;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    b->next = NULL;
    b->conn = c;
    b->writes = 0;
    b->niov = 0;
    b->hdr_used = 0;
    b->nrefs = 0;
    b->owned = NULL;
    b->file = NULL;
    c->batch = b;
    return b;
}

void httpd_batch_release(httpd_worker_t *w, httpd_batch_t *b)
{
    (void)w;
    for (unsigned i = 0; i < b->nrefs; i++)
        httpd_file_unref(b->refs[i]);
    httpd_file_unref(b->file);
    free(b->owned);
    if (batch_free_count < 64) {
        b->next = batch_free;
        batch_free = b;
        batch_free_count++;
    } else {
        free(b);
    }
}

void httpd_batch_cache_free(void)
{
    while (batch_free) {
        httpd_batch_t *b = batch_free;
        batch_free = b->next;
        free(b);
    }
    batch_free_count = 0;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

void httpd_count_status(httpd_worker_t *w, int status)
{
    int k;
    switch (status) {
    case 200:
        k = HTTPD_ST_200;
        break;
    case 206:
        k = HTTPD_ST_206;
        break;
    case 301:
        k = HTTPD_ST_301;
        break;
    case 304:
        k = HTTPD_ST_304;
        break;
    case 400:
        k = HTTPD_ST_400;
        break;
    case 403:
        k = HTTPD_ST_403;
        break;
    case 404:
        k = HTTPD_ST_404;
        break;
    case 405:
        k = HTTPD_ST_405;
        break;
    case 408:
        k = HTTPD_ST_408;
        break;
    case 412:
        k = HTTPD_ST_412;
        break;
    case 413:
        k = HTTPD_ST_413;
        break;
    case 414:
        k = HTTPD_ST_414;
        break;
    case 416:
        k = HTTPD_ST_416;
        break;
    case 431:
        k = HTTPD_ST_431;
        break;
    case 500:
        k = HTTPD_ST_500;
        break;
    case 501:
        k = HTTPD_ST_501;
        break;
    case 502:
        k = HTTPD_ST_502;
        break;
    case 503:
        k = HTTPD_ST_503;
        break;
    case 504:
        k = HTTPD_ST_504;
        break;
    case 505:
        k = HTTPD_ST_505;
        break;
    default:
        k = HTTPD_ST_OTHER;
        break;
    }
    httpd_count(&w->counters.by_status[k], 1);
    httpd_count(&w->counters.requests, 1);
}

static int batch_add_iov(httpd_batch_t *b, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    /* Adjacent header bytes extend the last iovec instead of using a new one. */
    if (b->niov > 0 && (const char *)b->iov[b->niov - 1].iov_base + b->iov[b->niov - 1].iov_len ==
                           (const char *)p) {
        b->iov[b->niov - 1].iov_len += len;
        return 0;
    }
    if (b->niov == HTTPD_BATCH_IOV)
        return -ENOSPC;
    b->iov[b->niov].iov_base = (void *)p;
    b->iov[b->niov].iov_len = len;
    b->niov++;
    return 0;
}

static bool batch_full(const httpd_batch_t *b, size_t need)
{
    return b->file || b->hdr_used + need > sizeof(b->hdr) || b->niov >= HTTPD_BATCH_IOV - 1 ||
           b->nrefs >= HTTPD_BATCH_REFS;
}

int httpd_resp_head(httpd_conn_t *c, const httpd_resp_t *r)
{
    httpd_batch_t *b = httpd_batch_get(c);
    if (!b)
        return -ENOMEM;
    /* The page counts too: a head whose page then did not fit went out without it. */
    size_t need = 256 + (r->type ? strlen(r->type) : 0) + r->extra_len + r->page_len;
    if (batch_full(b, need)) {
        /* This batch is full: send it and start the next one. */
        httpd_batch_flush(c);
        if (c->flags & HTTPD_C_CLOSING)
            return -EPIPE;
        b = httpd_batch_get(c);
        if (!b)
            return -ENOMEM;
        if (batch_full(b, need))
            return -ENOSPC; /* a header larger than a batch */
    }
    char *start = b->hdr + b->hdr_used, *p = start;
    p = PUT_LIT(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)r->status);
    *p++ = ' ';
    const char *reason = hk_http_status_text(r->status);
    p = put(p, reason, strlen(reason));
    p = PUT_LIT(p, "\r\nServer: hark\r\nDate: ");
    p = put(p, httpd_worker_date(c->w), HK_HTTP_DATE_LEN);
    if (r->type) {
        p = PUT_LIT(p, "\r\nContent-Type: ");
        p = put(p, r->type, strlen(r->type));
    }
    if (r->status != 304 && r->status >= 200 && r->status != 204) {
        p = PUT_LIT(p, "\r\nContent-Length: ");
        p = put_u64(p, r->length);
    }
    /* HTTP/1.0 closes unless told otherwise (RFC 9112 appendix C.2.2), as ab -k expects. */
    if (!r->keep_alive)
        p = PUT_LIT(p, "\r\nConnection: close\r\n");
    else if (c->flags & HTTPD_C_HTTP10)
        p = PUT_LIT(p, "\r\nConnection: keep-alive\r\n");
    else
        p = PUT_LIT(p, "\r\n");
    if (r->extra_len)
        p = put(p, r->extra, r->extra_len);
    p = PUT_LIT(p, "\r\n");
    b->hdr_used += (size_t)(p - start);
    (void)batch_add_iov(b, start, (size_t)(p - start)); /* room checked above */
    httpd_count_status(c->w, r->status);
    c->last_status = r->status;
    c->last_bytes = r->head ? 0 : r->length;
    if (!r->keep_alive)
        c->flags |= HTTPD_C_CLOSE_AFTER;
    return 0;
}

int httpd_resp_body_mem(httpd_conn_t *c, const void *p, size_t len, httpd_file_t *ref)
{
    httpd_batch_t *b = c->batch;
    if (batch_add_iov(b, p, len) < 0)
        return -ENOSPC;
    if (ref)
        b->refs[b->nrefs++] = httpd_file_ref(ref);
    return 0;
}

void httpd_resp_body_owned(httpd_conn_t *c, char *p, size_t len)
{
    httpd_batch_t *b = c->batch;
    b->owned = p;
    (void)batch_add_iov(b, p, len);
}

void httpd_resp_body_file(httpd_conn_t *c, httpd_file_t *f, uint64_t off, uint64_t len)
{
    httpd_batch_t *b = c->batch;
    b->file = httpd_file_ref(f);
    b->file_off = off;
    b->file_len = len;
}

void httpd_resp_redirect(httpd_conn_t *c, bool keep_alive, bool head, const char *location_line,
                         size_t len)
{
    httpd_resp_t r = {.status = 301,
                      .keep_alive = keep_alive,
                      .head = head,
                      .extra = location_line,
                      .extra_len = len};
    (void)httpd_resp_head(c, &r);
}

void httpd_resp_error(httpd_conn_t *c, int status, bool keep_alive, bool head)
{
    httpd_resp_error_allow(c, status, keep_alive, head, HTTPD_ALLOW_LINE);
}

void httpd_resp_error_allow(httpd_conn_t *c, int status, bool keep_alive, bool head,
                            const char *allow)
{
    char body[160];
    const char *reason = hk_http_status_text(status);
    int n = snprintf(body, sizeof(body), "<!doctype html><title>%d %s</title><h1>%d %s</h1>\n",
                     status, reason, status, reason);
    httpd_resp_t r = {.status = status,
                      .keep_alive = keep_alive,
                      .head = head,
                      .type = "text/html; charset=utf-8",
                      .length = (uint64_t)n,
                      .page_len = head ? 0 : (size_t)n};
    if (status == 405 || status == 501) {
        r.extra = allow;
        r.extra_len = strlen(allow);
    }
    if (httpd_resp_head(c, &r) < 0)
        return;
    if (head)
        return;
    /* The body goes right after the header bytes, in the same buffer. */
    httpd_batch_t *b = c->batch;
    if (b->hdr_used + (size_t)n <= sizeof(b->hdr)) {
        char *dst = b->hdr + b->hdr_used;
        memcpy(dst, body, (size_t)n);
        b->hdr_used += (size_t)n;
        (void)batch_add_iov(b, dst, (size_t)n);
    }
}

static void on_batch_written(hk_write_req_t *req, int status)
{
    httpd_batch_t *b = req->data;
    httpd_conn_t *c = b->conn;
    if (--b->writes > 0)
        return;
    c->writes--;
    httpd_batch_release(c->w, b);
    if (c->flags & HTTPD_C_CLOSING)
        return;
    if (status < 0) {
        httpd_conn_close(c);
        return;
    }
    if (c->writes == 0 && (c->flags & HTTPD_C_CLOSE_AFTER)) {
        httpd_conn_close_written(c);
        return;
    }
    if (c->writes == 0) /* idle now: keepalive_timeout may be shorter than what is armed */
        httpd_conn_arm(c, hk_loop_now(c->w->loop) + c->gen->cfg->keepalive_timeout);
}

static void on_tls_file_written(hk_tls_sendfile_t *req, int status)
{
    on_batch_written(&((httpd_batch_t *)req->data)->req, status);
}

void httpd_batch_flush(httpd_conn_t *c)
{
    httpd_batch_t *b = c->batch;
    if (!b)
        return;
    c->batch = NULL;
    if (b->niov == 0 && !b->file) {
        httpd_batch_release(c->w, b);
        return;
    }
    b->req.data = b;
    int r = 0;
    c->writes++;
    uint64_t bytes = b->file ? b->file_len : 0;
    for (int i = 0; i < b->niov; i++)
        bytes += b->iov[i].iov_len;
    httpd_count(&c->w->counters.bytes_out, bytes);
    /* Callbacks never run inside the write calls, so counting after each is safe. */
    b->writes = 0;
    /*
     * A header followed by a file: corked, the header leaves with MSG_MORE and
     * shares its segment with the file's first bytes (one segment fewer per
     * response for both ends to process, and no small segment that makes the
     * client ACK at once).
     */
    bool cork = b->niov > 0 && b->file && !(c->flags & HTTPD_C_TLS);
    if (cork)
        hk_stream_cork(&c->stream);
    if (b->niov > 0) {
        r = hk_stream_write(&c->stream, &b->req, b->iov, b->niov, on_batch_written);
        if (r >= 0)
            b->writes++;
    }
    if (r >= 0 && b->file) {
        if (c->flags & HTTPD_C_TLS) {
            b->tls_req.data = b;
            r = hk_tls_sendfile(&c->stream, &b->tls_req, b->file->fd, (off_t)b->file_off,
                                b->file_len, on_tls_file_written);
        } else {
            b->file_req.data = b;
            r = hk_stream_sendfile(&c->stream, &b->file_req, b->file->fd, (int64_t)b->file_off,
                                   b->file_len, on_batch_written);
        }
        if (r >= 0)
            b->writes++;
    }
    if (cork)
        hk_stream_uncork(&c->stream);
    if (r < 0) {
        /* The stream is dead; its close completes the requests already queued. */
        if (b->writes == 0) {
            c->writes--;
            httpd_batch_release(c->w, b);
        }
        httpd_conn_close(c);
        return;
    }
    if (r == HK_STREAM_FULL && !(c->flags & HTTPD_C_PAUSED)) {
        /* Backpressure: stop reading (and so answering) until the queue drains. */
        c->flags |= HTTPD_C_PAUSED;
        hk_stream_read_stop(&c->stream);
    }
    c->sent_mark = c->stream.bytes_written;
    httpd_conn_arm(c, hk_loop_now(c->w->loop) + c->gen->cfg->send_timeout);
}
