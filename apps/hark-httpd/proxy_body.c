/*
 * The reverse proxy, request body: bytes from the client on their way up.
 *
 * The client's body arrives in reads of at most 64 KiB; each is copied once
 * into a chunk of its own (the read buffer is the library's, valid only
 * during the callback) and queued on the upstream stream, or held while the
 * connection is being made. A chunked body is decoded in place and sent
 * re-chunked, since chunk boundaries belong to one hop. Backpressure: the
 * client is not read while the upstream queue is at its high watermark or
 * 256 KiB wait for the connection; the upstream's drain callback and the
 * connection being made start it again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define PROXY_QUEUE_MAX ((size_t)256 << 10) /* body bytes held while connecting */

static const char chunk_end[] = "\r\n0\r\n\r\n";

/*
 * Only a pause of ours is undone here. The connection's flag is checked
 * each time: its own drain callback restarts reading when its write queue
 * drains, whatever paused it, so a pause is asked again whenever the
 * upstream is still full.
 */
void httpd_proxy_pause_client(httpd_proxy_t *p, bool pause)
{
    if (!p->c || (!pause && !p->client_paused))
        return;
    p->client_paused = pause;
    if (((p->c->flags & HTTPD_C_PAUSED) != 0) != pause)
        httpd_conn_pause_reading(p->c, pause);
}

static void on_up_body_written(hk_write_req_t *req, int status)
{
    httpd_pbuf_t *b = req->data;
    httpd_proxy_t *p = b->p;
    const hk_stream_t *stream = req->stream; /* req is part of b */
    free(b);
    httpd_proxy_up_written(p, stream, status);
    httpd_proxy_maybe_free(p);
}

void httpd_proxy_up_write(httpd_proxy_t *p, httpd_pbuf_t *b)
{
    if (hk_stream_queued(&p->u->stream) == 0)
        httpd_proxy_send_mark(p); /* the send timeout runs from now, not from the last write */
    b->wr.data = b;
    int r = hk_stream_write(&p->u->stream, &b->wr, b->iov, b->niov, on_up_body_written);
    if (r < 0) {
        free(b); /* the stream's error reaches the read callback */
        return;
    }
    p->up_pending++;
    if (r == HK_STREAM_FULL && !p->body_done)
        httpd_proxy_pause_client(p, true);
}

void httpd_proxy_on_up_drain(hk_stream_t *stream)
{
    httpd_proxy_t *p = stream->data;
    if (p && !p->body_done)
        httpd_proxy_pause_client(p, false);
}

/* ---- The request and its body ------------------------------------------------------------ */

/* Body bytes go up now, or wait for the connection (a bounded amount). */
static void body_send(httpd_proxy_t *p, httpd_pbuf_t *b)
{
    if (p->state == HTTPD_PX_HEAD || p->state == HTTPD_PX_BODY) {
        httpd_proxy_up_write(p, b);
        return;
    }
    if (p->state != HTTPD_PX_CONNECT) {
        free(b); /* the response is over: nobody wants the rest */
        return;
    }
    b->next = NULL;
    if (p->q_tail)
        p->q_tail->next = b;
    else
        p->q_head = b;
    p->q_tail = b;
    p->q_bytes += b->len;
    if (p->q_bytes >= PROXY_QUEUE_MAX)
        httpd_proxy_pause_client(p, true);
}

/* Takes the request body's bytes from data: returns how many were the body's, or -errno. */
ssize_t httpd_proxy_body_take(httpd_proxy_t *p, const char *data, size_t len)
{
    if (p->body_done || len == 0)
        return 0;
    size_t n = len;
    if (!p->body_chunked && (uint64_t)p->body_left < n)
        n = (size_t)p->body_left;
    httpd_pbuf_t *b = malloc(sizeof(*b) + n);
    if (!b)
        return -ENOMEM;
    memset(b, 0, sizeof(*b));
    b->p = p;
    memcpy(b->data, data, n);
    size_t took = n, payload = n;
    if (p->body_chunked) {
        /* Decoded in place and sent re-chunked: the framing is this hop's. */
        int r = hk_http_chunked_decode(&p->body_dec, b->data, &payload);
        p->body_total += payload;
        if (r < 0 || p->body_total > p->c->gen->cfg->max_body) {
            free(b);
            return r < 0 ? -EBADMSG : -EFBIG;
        }
        if (r == 1) {
            took = p->body_dec.end_offset;
            p->body_done = true;
        }
        /* chunk_end is the CRLF after a chunk's data, then the last chunk. */
        int k = 0;
        if (payload > 0) {
            int m = snprintf(b->line, sizeof(b->line), "%zx\r\n", payload);
            b->iov[k++] = (struct iovec){b->line, (size_t)m};
            b->iov[k++] = (struct iovec){b->data, payload};
            b->iov[k++] = (struct iovec){(char *)chunk_end, p->body_done ? 7 : 2};
        } else if (p->body_done) {
            b->iov[k++] = (struct iovec){(char *)chunk_end + 2, 5};
        }
        b->niov = k;
    } else {
        p->body_left -= (int64_t)n;
        p->body_done = p->body_left == 0;
        b->iov[0] = (struct iovec){b->data, n};
        b->niov = 1;
    }
    b->len = payload;
    if (b->niov == 0)
        free(b);
    else
        body_send(p, b);
    if (p->body_done)
        p->read_deadline = hk_loop_now(p->w->loop) + p->ups->cfg->read_timeout;
    return (ssize_t)took;
}

size_t httpd_proxy_client_data(httpd_conn_t *c, const char *data, size_t len, bool eof)
{
    httpd_proxy_t *p = c->proxy;
    if (!p)
        return 0;
    if (eof) {
        p->client_eof = true;
        if (!p->body_done && p->state != HTTPD_PX_DONE && p->state != HTTPD_PX_FAILED) {
            /* The request was cut short: nobody is left to answer. */
            p->state = HTTPD_PX_FAILED;
            httpd_proxy_drop_upstream(p);
            if (p->responded) {
                httpd_conn_close(c);
            } else {
                httpd_proxy_log(p, 499, 0); /* as httpd_proxy_abort logs a client gone */
                p->c = NULL;
                httpd_conn_proxy_done(c, false);
                httpd_proxy_maybe_free(p);
            }
        }
        return 0;
    }
    ssize_t took = httpd_proxy_body_take(p, data, len);
    if (took < 0) {
        p->ka = false;
        if (p->responded) {
            p->state = HTTPD_PX_FAILED;
            httpd_proxy_drop_upstream(p);
            httpd_conn_close(c);
        } else {
            httpd_proxy_error(p, took == -EFBIG ? 413 : took == -EBADMSG ? 400 : 500);
            httpd_proxy_maybe_free(p);
        }
        return len;
    }
    httpd_proxy_touch(p);
    httpd_proxy_arm(p);
    return (size_t)took;
}
