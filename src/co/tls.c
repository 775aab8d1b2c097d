/*
 * TLS for coroutines, straight on a non-blocking socket.
 *
 * What goes wrong: OpenSSL over a non-blocking socket may need either
 * direction from any call. SSL_read may have to write (the answer to a TLS
 * 1.3 KeyUpdate, an alert) and SSL_write or SSL_do_handshake may have to
 * read. Code that waits for readability after a read and writability after
 * a write can wait forever for the wrong thing: the peer, blocked on a
 * record we never finished sending, sends nothing.
 *
 * What we do: after every SSL_* call that did not complete, SSL_get_error
 * says what it needs (WANT_READ or WANT_WRITE) and the coroutine waits for
 * exactly that on the netpoller (hk_co_wait_fd), then repeats the call. The
 * SSL object uses a socket BIO on the fd (which kTLS needs), with the
 * context's read-ahead (on, off for kTLS): records it already holds are
 * decrypted by the next SSL_read without asking, and WANT_READ means it
 * needs bytes still in the socket, so waiting for readability is right.
 *
 * OpenSSL's error queue is per thread; a coroutine may move between worker
 * threads only while parked, never between an SSL_* call and reading its
 * errors, so each failure is drained on the thread that produced it.
 */
#include "co/internal.h"
#include "hark/co_net.h"
#include "tls/ctx_access.h"

#include <errno.h>
#include <string.h>

#include <openssl/err.h>

/* hk_co_tls_t._state; a negative state is the -errno of a fatal failure, returned again. */
enum { HK__COTLS_NONE = 0, HK__COTLS_HANDSHAKE, HK__COTLS_OPEN, HK__COTLS_SHUT };

/* Longest SNI name accepted (a DNS name is at most 253 characters). */
#define HK__COTLS_NAME 255

/*
 * An SSL_* call returned ret without completing: waits for what it asked and
 * returns 0 to retry it, or -errno (the failure text recorded).
 */
static int hk__cotls_wait(hk_co_tls_t *t, const char *what, int ret, int saved_errno,
                          uint64_t deadline)
{
    SSL *ssl = t->_ssl;
    int err = SSL_get_error(ssl, ret);
    unsigned events;
    if (err == SSL_ERROR_WANT_READ)
        events = HK_READABLE;
    else if (err == SSL_ERROR_WANT_WRITE)
        events = HK_WRITABLE;
    else
        return hk__tls_fail(what, ssl, err, saved_errno);
    int r = hk_co_wait_fd(t->fd, events, deadline);
    return r < 0 ? r : 0;
}

/* A new SSL object for fd, configured like a TLS stream's. */
static int hk__cotls_setup(hk_co_tls_t *t, int fd, hk_tls_ctx_t *ctx, hk_tls_role_t role,
                           const char *sni)
{
    SSL_CTX *sc = hk__tls_ctx_ssl(ctx);
    unsigned flags = hk__tls_ctx_flags(ctx);
    if (role == HK_TLS_SERVER && !SSL_CTX_get0_certificate(sc)) {
        hk__tls_set_error("a server context needs a certificate", NULL);
        return -EINVAL;
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(sc);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        hk__tls_set_error("SSL_new", NULL);
        SSL_free(ssl);
        return -ENOMEM;
    }
    int ok = 1;
    if (role == HK_TLS_CLIENT) {
        SSL_set_connect_state(ssl);
        ok = hk__tls_client_name(ssl, sni, flags);
    } else {
        SSL_set_accept_state(ssl);
        if (flags & HK_TLS_VERIFY_CLIENT)
            SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (!ok) {
        hk__tls_set_error("server name", NULL);
        SSL_free(ssl);
        return -EINVAL;
    }
    hk__tls_ctx_ref(ctx);
    t->fd = fd;
    t->_ssl = ssl;
    t->_ctx = ctx;
    t->_state = HK__COTLS_HANDSHAKE;
    return 0;
}

int hk_co_tls_handshake(hk_co_tls_t *tls, int fd, hk_tls_ctx_t *ctx, hk_tls_role_t role,
                        const char *sni, uint64_t deadline)
{
    if (!hk__co_current())
        return -EPERM;
    if (!tls || fd < 0 || !ctx || (role != HK_TLS_SERVER && role != HK_TLS_CLIENT) ||
        (sni && (!sni[0] || strlen(sni) > HK__COTLS_NAME)) || !hk__deadline_ok(deadline))
        return -EINVAL;
    if (tls->_state < 0)
        return tls->_state;
    if (tls->_state == HK__COTLS_OPEN || tls->_state == HK__COTLS_SHUT)
        return -EISCONN;
    if (tls->_state == HK__COTLS_HANDSHAKE) {
        if (tls->fd != fd)
            return -EINVAL;
    } else {
        int r = hk__cotls_setup(tls, fd, ctx, role, sni);
        if (r < 0)
            return r;
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int ret = SSL_do_handshake(tls->_ssl);
        int saved = errno;
        if (ret == 1) {
            tls->_state = HK__COTLS_OPEN;
            return 0;
        }
        int r = hk__cotls_wait(tls, "handshake", ret, saved, deadline);
        if (r < 0) {
            /* A deadline or a cancellation leaves the handshake resumable. */
            if (r != -ETIMEDOUT && r != -ECANCELED)
                tls->_state = r;
            return r;
        }
    }
}

/* The state a read, write or shutdown needs; 0 when it may go on. */
static int hk__cotls_check(const hk_co_tls_t *tls, uint64_t deadline)
{
    if (!hk__co_current())
        return -EPERM;
    if (!tls || !hk__deadline_ok(deadline))
        return -EINVAL;
    if (tls->_state < 0)
        return tls->_state;
    if (tls->_state != HK__COTLS_OPEN && tls->_state != HK__COTLS_SHUT)
        return -ENOTCONN;
    return 0;
}

ssize_t hk_co_tls_read(hk_co_tls_t *tls, void *buf, size_t len, uint64_t deadline)
{
    int r = hk__cotls_check(tls, deadline);
    if (r < 0)
        return r;
    if (!buf && len)
        return -EINVAL;
    if (len == 0)
        return 0;
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int ret = SSL_read_ex(tls->_ssl, buf, len, &n);
        int saved = errno;
        if (ret == 1)
            return (ssize_t)n;
        if (SSL_get_error(tls->_ssl, ret) == SSL_ERROR_ZERO_RETURN)
            return 0; /* close_notify */
        r = hk__cotls_wait(tls, "read", ret, saved, deadline);
        if (r < 0) {
            /* A read that timed out may be retried; other failures end the connection. */
            if (r != -ETIMEDOUT && r != -ECANCELED)
                tls->_state = r;
            return r;
        }
    }
}

ssize_t hk_co_tls_write(hk_co_tls_t *tls, const void *buf, size_t len, uint64_t deadline)
{
    int r = hk__cotls_check(tls, deadline);
    if (r < 0)
        return r;
    if (!buf && len)
        return -EINVAL;
    if (tls->_state == HK__COTLS_SHUT)
        return -EPIPE;
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int ret = SSL_write_ex(tls->_ssl, p + done, len - done, &n);
        int saved = errno;
        if (ret == 1) {
            done += n;
            continue;
        }
        r = hk__cotls_wait(tls, "write", ret, saved, deadline);
        if (r < 0) {
            /*
             * OpenSSL insists that an interrupted write be retried with the
             * same bytes; the caller cannot know how far this one got, so
             * the connection is finished, whatever the reason.
             */
            tls->_state = r;
            return r;
        }
    }
    return (ssize_t)len;
}

int hk_co_tls_shutdown(hk_co_tls_t *tls, uint64_t deadline)
{
    int r = hk__cotls_check(tls, deadline);
    if (r < 0)
        return r;
    if (tls->_state == HK__COTLS_SHUT)
        return 0;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int ret = SSL_shutdown(tls->_ssl);
        int saved = errno;
        /* 0: our close_notify is out (the peer's has not come), 1: both are. */
        if (ret >= 0) {
            tls->_state = HK__COTLS_SHUT;
            return 0;
        }
        r = hk__cotls_wait(tls, "shutdown", ret, saved, deadline);
        if (r < 0) {
            tls->_state = r;
            return r;
        }
    }
}

void hk_co_tls_free(hk_co_tls_t *tls)
{
    if (!tls)
        return;
    if (tls->_ssl)
        SSL_free(tls->_ssl);
    if (tls->_ctx)
        hk_tls_ctx_free(tls->_ctx);
    tls->_ssl = NULL;
    tls->_ctx = NULL;
    tls->_state = HK__COTLS_NONE;
    tls->fd = -1;
}

int hk_co_tls_version(const hk_co_tls_t *tls)
{
    if (!tls || (tls->_state != HK__COTLS_OPEN && tls->_state != HK__COTLS_SHUT))
        return -ENOTCONN;
    return SSL_version(tls->_ssl);
}

int hk_co_tls_alpn(const hk_co_tls_t *tls, char *buf, size_t size)
{
    if (!tls || !buf || size == 0)
        return -EINVAL;
    buf[0] = '\0';
    if (tls->_state != HK__COTLS_OPEN && tls->_state != HK__COTLS_SHUT)
        return -ENOTCONN;
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(tls->_ssl, &p, &n);
    if (n >= size)
        return -ENOSPC;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return (int)n;
}
