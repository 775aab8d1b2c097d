/*
 * TLS errors: OpenSSL's per-thread error queue turned into one line of text.
 *
 * Why: an SSL_* call that fails leaves its reasons (often several, from the
 * record layer up to the certificate check) on a thread-local queue, and the
 * next call would be confused by stale entries. Each failure is drained into
 * a per-thread buffer right away, so the text survives until the caller
 * looks (hk_tls_last_error, or the handshake callback's error argument),
 * and the queue is empty again for the next call.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "tls/internal.h"

static _Thread_local char hk__tls_err[512];

const char *hk_tls_last_error(void)
{
    return hk__tls_err;
}

const char *hk__tls_set_error(const char *what, SSL *ssl)
{
    size_t len = (size_t)snprintf(hk__tls_err, sizeof hk__tls_err, "%s", what);
    unsigned long e;
    const char *sep = ": ";
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        if (len < sizeof hk__tls_err)
            len += (size_t)snprintf(hk__tls_err + len, sizeof hk__tls_err - len, "%s%s", sep, one);
        sep = "; ";
    }
    if (ssl) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK && len < sizeof hk__tls_err)
            snprintf(hk__tls_err + len, sizeof hk__tls_err - len, "%scertificate: %s", sep,
                     X509_verify_cert_error_string(v));
    }
    return hk__tls_err;
}

int hk__tls_fail(const char *what, SSL *ssl, int ssl_err, int saved_errno)
{
    int r;
    unsigned long top = ERR_peek_error();
    char line[96];
    switch (ssl_err) {
    case SSL_ERROR_SYSCALL:
        /* An empty queue and no errno: the peer closed the connection mid-record. */
        r = (!top && saved_errno && saved_errno != EAGAIN) ? -saved_errno : -ECONNRESET;
        break;
    case SSL_ERROR_ZERO_RETURN:
        r = -ECONNRESET;
        break;
    case SSL_ERROR_SSL:
        r = (ERR_GET_LIB(top) == ERR_LIB_SSL &&
             ERR_GET_REASON(top) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                ? -ECONNRESET
                : -EPROTO;
        break;
    default:
        r = -EPROTO;
        break;
    }
    if (!top) {
        snprintf(line, sizeof line, "%s: %s", what,
                 r == -ECONNRESET ? "connection closed by the peer" : strerror(-r));
        ERR_clear_error();
        hk__tls_set_error(line, ssl);
    } else {
        hk__tls_set_error(what, ssl);
    }
    return r;
}
