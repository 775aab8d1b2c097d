/*
 * TLS streams: the transport installed on an hk_stream_t, and the handshake.
 *
 * What goes wrong: OpenSSL over a non-blocking socket may need the other
 * direction at any time. SSL_read may have to write (the answer to a TLS 1.3
 * KeyUpdate, an alert) and SSL_write may have to read (a handshake in
 * progress). A stream that waits only for readability while OpenSSL holds a
 * record it could not send waits forever: the peer, blocked on that record,
 * sends nothing.
 *
 * What we do: each side (read, write, shutdown) remembers what its last
 * SSL_* call asked for, and the union goes to the stream through
 * hk_stream_transport_want after every call, so the stream polls for
 * exactly that and retries both sides when it fires. A read that stalled on
 * writing is also reported by pending(), so restarting reading retries it
 * at once instead of waiting for bytes that may never come. The SSL object
 * works on the socket itself (a socket BIO, which kTLS needs), with
 * read-ahead on (ctx.c; off for kTLS): OpenSSL may then hold bytes epoll
 * cannot see, whole records or an end of file already taken from the
 * socket, and pending() reports them.
 *
 * The handshake runs through the stream's own reading: start() reads
 * internally with a private callback, the transport's read drives
 * SSL_do_handshake, and when it finishes reading stops and the caller's
 * callback runs from a deferred callback (never from inside a transport
 * call). A failure travels as the read error the stream delivers once.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "tls/ctx_access.h"
#include "tls/internal.h"

static const hk_stream_transport_t hk__tls_transport;

hk__tls_conn_t *hk__tls_conn(const hk_stream_t *s)
{
    if (!s || s->_transport != &hk__tls_transport)
        return NULL;
    return s->transport_data;
}

void hk__tls_update_want(hk__tls_conn_t *c)
{
    /*
     * A read that waits for bytes adds nothing: the stream polls for them by
     * itself while it reads (the handshake reads too). Added here, it would
     * outlive hk_stream_read_stop, and every flush would set it again: with
     * writes queued on a full socket and the peer's bytes left in the kernel
     * (backpressure), each EPOLLIN woke the loop for nothing, a busy loop.
     */
    hk_stream_transport_want(c->stream, (c->rwant & HK_WRITABLE) | c->wwant | c->swant);
}

static unsigned hk__tls_want_of(int ssl_err)
{
    if (ssl_err == SSL_ERROR_WANT_READ)
        return HK_READABLE;
    if (ssl_err == SSL_ERROR_WANT_WRITE)
        return HK_WRITABLE;
    return 0;
}

/* One SSL_do_handshake: 0 done, -EAGAIN (want set), or -errno. */
static int hk__tls_handshake_step(hk__tls_conn_t *c)
{
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(c->ssl);
    int saved = errno;
    if (ret == 1) {
        c->rwant = 0;
        hk__tls_update_want(c);
        return 0;
    }
    int e = SSL_get_error(c->ssl, ret);
    unsigned want = hk__tls_want_of(e);
    c->rwant = want;
    hk__tls_update_want(c);
    if (want)
        return -EAGAIN;
    c->state = HK__TLS_FAILED;
    return hk__tls_fail("handshake", c->ssl, e, saved);
}

static void hk__tls_on_handshake_done(hk_defer_t *d)
{
    hk__tls_conn_t *c = d->data;
    if (c->hs_status < 0) {
        c->state = HK__TLS_FAILED;
        c->cb(c->stream, c->hs_status, c->hs_error ? c->hs_error : hk_strerror(c->hs_status));
        return;
    }
    c->state = HK__TLS_OPEN;
    c->cb(c->stream, 0, NULL);
}

/* The private read callback during the handshake: only failures reach it. */
static void hk__tls_on_handshake_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    (void)buf;
    hk__tls_conn_t *c = s->transport_data;
    if (n > 0 || n == -EAGAIN)
        return;
    (void)hk_stream_read_stop(s);
    int status = n == 0 ? -ECONNRESET : (int)n;
    /* Our own step failed and left its text; anything else (epoll) gets its name. */
    const char *text = c->state == HK__TLS_FAILED ? hk_tls_last_error()
                                                  : hk__tls_set_error(hk_strerror(status), NULL);
    c->state = HK__TLS_FAILED;
    c->cb(s, status, text);
}

static ssize_t hk__tls_read_handshake(hk__tls_conn_t *c)
{
    if (c->state != HK__TLS_HANDSHAKE)
        return -EAGAIN;
    int r = hk__tls_handshake_step(c);
    if (r < 0)
        return r;
    c->state = HK__TLS_HS_DONE;
    (void)hk_stream_read_stop(c->stream);
    c->defer.data = c;
    (void)hk_defer(c->stream->_io.base.loop, &c->defer, hk__tls_on_handshake_done);
    return -EAGAIN;
}

static ssize_t hk__tls_read(hk_stream_t *s, void *buf, size_t len)
{
    hk__tls_conn_t *c = s->transport_data;
    if (c->state != HK__TLS_OPEN)
        return c->state == HK__TLS_FAILED ? -EPROTO : hk__tls_read_handshake(c);
    if (c->rend_held)
        return c->rend;
    /* Fill the buffer record by record: one SSL_read returns at most one record. */
    size_t total = 0;
    ssize_t result = 0;
    unsigned want = 0;
    int ended = 0;
    while (total < len) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int ret = SSL_read_ex(c->ssl, (char *)buf + total, len - total, &n);
        int saved = errno;
        if (ret == 1) {
            total += n;
            c->partial = 0;
            /*
             * Stop when OpenSSL holds nothing more, decrypted or raw: another
             * SSL_read would only find an empty socket (one recv for EAGAIN
             * per request). New bytes raise a readiness event of their own.
             */
            if (!SSL_has_pending(c->ssl))
                break;
            continue;
        }
        int e = SSL_get_error(c->ssl, ret);
        want = hk__tls_want_of(e);
        c->partial = e == SSL_ERROR_WANT_READ && SSL_has_pending(c->ssl);
        ended = !want;
        if (want)
            result = -EAGAIN;
        else if (e == SSL_ERROR_ZERO_RETURN)
            result = 0; /* close_notify: end of file */
        else
            result = hk__tls_fail("read", c->ssl, e, saved);
        break;
    }
    c->rwant = want;
    hk__tls_update_want(c);
    /*
     * Bytes first; an end or error found behind them comes back on the next
     * call. It is kept (and pending() says so) because its bytes, a
     * close_notify for one, are already out of the socket: no fd event would
     * bring it, and a peer that waits for our close_notify sends nothing more.
     */
    if (total > 0 && ended) {
        c->rend_held = 1;
        c->rend = result;
    }
    return total > 0 ? (ssize_t)total : result;
}

/*
 * Why small pieces are gathered: each SSL_write makes at least one record,
 * and each record leaves in its own send(). An HTTP response is a header
 * and a body in two iovecs; copied into one buffer (at most one record,
 * 16 KiB) they cost one record, one MAC and one system call instead of two.
 * A retry after WANT_WRITE gathers the same bytes again (the stream hands
 * back the unwritten iovecs), which SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
 * allows. Returns how many iovecs were gathered into *p, *len (0 or 1: use
 * iov[0] as it is).
 */
static _Thread_local char hk__tls_gather_buf[16384];

static size_t hk__tls_gather(const struct iovec *iov, int iovcnt, const char **p, size_t *len)
{
    size_t used = 0;
    int k = 0;
    while (k < iovcnt && !hk__tls_is_file_ptr(iov[k].iov_base) &&
           used + iov[k].iov_len <= sizeof(hk__tls_gather_buf))
        used += iov[k++].iov_len;
    if (k < 2)
        return 0;
    used = 0;
    for (int i = 0; i < k; i++) {
        memcpy(hk__tls_gather_buf + used, iov[i].iov_base, iov[i].iov_len);
        used += iov[i].iov_len;
    }
    *p = hk__tls_gather_buf;
    *len = used;
    return (size_t)k;
}

static ssize_t hk__tls_writev(hk_stream_t *s, const struct iovec *iov, int iovcnt)
{
    hk__tls_conn_t *c = s->transport_data;
    if (c->state != HK__TLS_OPEN) {
        hk__tls_set_error("write before the handshake finished", NULL);
        return c->state == HK__TLS_FAILED ? -EPROTO : -ENOTCONN;
    }
    size_t total = 0;
    ssize_t result = 0;
    unsigned want = 0;
    for (int i = 0; i < iovcnt && !want && result == 0; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        size_t gathered = hk__tls_gather(iov + i, iovcnt - i, &p, &left);
        if (gathered > 1)
            i += (int)gathered - 1;
        while (left > 0) {
            size_t n = 0;
            int ret, e = 0, saved;
            ERR_clear_error();
            errno = 0;
            if (hk__tls_is_file_ptr(p)) {
                ret = hk__tls_file_write(c, p, left, &n, &e, &saved);
            } else {
                /* The stream retries with the same bytes first, as OpenSSL requires. */
                ret = SSL_write_ex(c->ssl, p, left, &n);
                saved = errno;
                if (ret != 1)
                    e = SSL_get_error(c->ssl, ret);
            }
            if (ret == 1) {
                total += n;
                left -= n;
                p += n;
                if (gathered > 1 && left > 0)
                    goto out; /* part of a gathered record: the stream calls again */
                continue;
            }
            want = hk__tls_want_of(e);
            result = want ? -EAGAIN : hk__tls_fail("write", c->ssl, e, saved);
            break;
        }
    }
out:
    c->wwant = want;
    hk__tls_update_want(c);
    return total > 0 ? (ssize_t)total : result;
}

static int hk__tls_shutdown(hk_stream_t *s)
{
    hk__tls_conn_t *c = s->transport_data;
    if (c->state != HK__TLS_OPEN)
        return -ENOTCONN;
    ERR_clear_error();
    errno = 0;
    int ret = SSL_shutdown(c->ssl);
    int saved = errno;
    if (ret < 0) {
        int e = SSL_get_error(c->ssl, ret);
        c->swant = hk__tls_want_of(e);
        hk__tls_update_want(c);
        if (c->swant)
            return -EAGAIN;
        return hk__tls_fail("shutdown", c->ssl, e, saved);
    }
    c->swant = 0;
    hk__tls_update_want(c);
    /* close_notify is out; the TCP half-close tells peers that wait for EOF. */
    return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

static size_t hk__tls_pending(hk_stream_t *s)
{
    hk__tls_conn_t *c = s->transport_data;
    if (c->state != HK__TLS_OPEN)
        return 0;
    if (c->rend_held)
        return 1;
    int n = SSL_pending(c->ssl);
    if (n > 0)
        return (size_t)n;
    /*
     * Whole records may wait, still encrypted, in the read-ahead buffer (the
     * last read filled the caller's buffer first): they need no fd event. A
     * partial record there does, or the stream would spin on it.
     */
    if (SSL_has_pending(c->ssl) && !c->partial)
        return 1;
    /*
     * A read that waits to write must be retried even if no byte arrives.
     * (SSL_has_pending is no help: without read-ahead it only reports a
     * partial record, which needs the fd anyway.)
     */
    return c->rwant == HK_WRITABLE ? 1 : 0;
}

static void hk__tls_close(hk_stream_t *s)
{
    hk__tls_conn_t *c = s->transport_data;
    (void)hk_defer_cancel(s->_io.base.loop, &c->defer);
    /*
     * Closing without close_notify would make OpenSSL mark the session
     * unresumable; a completed handshake's session is sound either way.
     */
    if (c->state == HK__TLS_OPEN)
        SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(c->ssl);
    hk_tls_ctx_free(c->ctx);
    free(c->hs_error);
    free(c);
    s->transport_data = NULL;
}

static const hk_stream_transport_t hk__tls_transport = {
    .read = hk__tls_read,
    .writev = hk__tls_writev,
    .shutdown = hk__tls_shutdown,
    .pending = hk__tls_pending,
    .close = hk__tls_close,
};

static int hk__tls_conn_new(hk_stream_t *s, hk_tls_ctx_t *ctx, hk_tls_role_t role, const char *sni,
                            hk__tls_conn_t **out)
{
    bool keyed = role == HK_TLS_CLIENT && (ctx->flags & HK_TLS_SESSION_CACHE);
    size_t name_len = keyed && sni ? strlen(sni) : 0;
    hk__tls_conn_t *c = calloc(1, sizeof *c + name_len + 1);
    if (!c)
        return -ENOMEM;
    memcpy(c->cache_name, keyed && sni ? sni : "", name_len + 1);
    ERR_clear_error();
    c->ssl = SSL_new(ctx->ssl_ctx);
    /* kTLS needs OpenSSL's socket BIO; otherwise ours, which never raises SIGPIPE. */
    BIO *bio = NULL;
    bool own_bio = c->ssl && !(ctx->flags & HK_TLS_KTLS);
    if (own_bio && (bio = hk__tls_bio_new(s->fd)) != NULL)
        SSL_set_bio(c->ssl, bio, bio);
    if (!c->ssl || (own_bio && !bio) || (!own_bio && SSL_set_fd(c->ssl, s->fd) != 1)) {
        hk__tls_set_error("SSL_new", NULL);
        SSL_free(c->ssl);
        free(c);
        return -ENOMEM;
    }
    c->ctx = ctx;
    c->stream = s;
    c->role = role;
    c->state = HK__TLS_HANDSHAKE;
    SSL_set_app_data(c->ssl, c);
    int ok = 1;
    if (role == HK_TLS_CLIENT) {
        SSL_set_connect_state(c->ssl);
        ok = hk__tls_client_name(c->ssl, sni, ctx->flags);
        if (ok)
            hk__tls_cache_apply(ctx, c->ssl, c->cache_name);
    } else {
        SSL_set_accept_state(c->ssl);
        if (ctx->flags & HK_TLS_VERIFY_CLIENT)
            SSL_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (!ok) {
        hk__tls_set_error("server name", NULL);
        SSL_free(c->ssl);
        free(c);
        return -EINVAL;
    }
    hk__tls_ctx_ref(ctx);
    *out = c;
    return 0;
}

int hk_tls_stream_start(hk_stream_t *s, hk_tls_ctx_t *ctx, hk_tls_role_t role, const char *sni,
                        hk_tls_handshake_cb cb)
{
    if (!s || !ctx || !cb || (role != HK_TLS_SERVER && role != HK_TLS_CLIENT) ||
        (sni && strlen(sni) >= HK__TLS_NAME))
        return -EINVAL;
    if (s->transport_data || hk_is_closing(&s->_io.base))
        return -EBUSY;
    if (role == HK_TLS_SERVER && !SSL_CTX_get0_certificate(ctx->ssl_ctx)) {
        hk__tls_set_error("a server context needs a certificate", NULL);
        return -EINVAL;
    }
    hk__tls_conn_t *c;
    int r = hk__tls_conn_new(s, ctx, role, sni, &c);
    if (r < 0)
        return r;
    c->cb = cb;
    r = hk_stream_set_transport(s, &hk__tls_transport, c);
    int finished = 0;
    if (r >= 0 && role == HK_TLS_CLIENT) {
        /*
         * The client speaks first: send the ClientHello now. On loopback a
         * fast server can answer every flight before we look again, so the
         * handshake may even finish here; the callback still runs later.
         */
        r = hk__tls_handshake_step(c);
        finished = r != -EAGAIN;
        if (r < 0 && finished) { /* the server's flight failed: report it from the loop */
            c->hs_status = r;
            c->hs_error = strdup(hk_tls_last_error());
        }
        r = 0;
    }
    if (r >= 0 && !finished)
        r = hk_stream_read_start(s, NULL, hk__tls_on_handshake_read);
    if (r >= 0 && finished) {
        if (c->hs_status == 0)
            c->state = HK__TLS_HS_DONE;
        c->defer.data = c;
        r = hk_defer(s->_io.base.loop, &c->defer, hk__tls_on_handshake_done);
    }
    if (r < 0) {
        hk_stream_transport_want(s, 0);
        (void)hk_stream_set_transport(s, NULL, NULL);
        free(c->hs_error);
        SSL_free(c->ssl);
        hk_tls_ctx_free(c->ctx);
        free(c);
        return r;
    }
    return 0;
}
