/*
 * What the rest of libhark may know of a TLS context.
 *
 * Why: coroutine TLS (src/co/tls.c) runs its own SSL objects straight on an
 * fd, without a loop stream, yet must configure them from the same context
 * (certificates, verification, ALPN, tickets) and report failures with the
 * same text. Rather than expose struct hk_tls_ctx to other modules, this
 * header gives them the SSL_CTX, the flags, a reference, and the error
 * formatting; everything else stays private to src/tls.
 */
#ifndef HK_TLS_CTX_ACCESS_H
#define HK_TLS_CTX_ACCESS_H

#include "hark/tls.h"

#include <openssl/ssl.h>

/* The context's main SSL_CTX (SNI certificates are switched to by its callback). */
SSL_CTX *hk__tls_ctx_ssl(hk_tls_ctx_t *ctx);
/* Its HK_TLS_* flags. */
unsigned hk__tls_ctx_flags(const hk_tls_ctx_t *ctx);
/* Takes a reference; hk_tls_ctx_free() drops it. */
void hk__tls_ctx_ref(hk_tls_ctx_t *ctx);
/*
 * A client SSL object's server name: sent as SNI when it is a host name, and
 * verified (a host name, or an IPv4/IPv6 address literal against the
 * certificate's address entries) unless flags has HK_TLS_NO_VERIFY; sni may
 * be NULL (no SNI, no name check). Sets SSL_VERIFY_PEER unless
 * HK_TLS_NO_VERIFY. Returns 1, or 0 when OpenSSL refused the name.
 */
int hk__tls_client_name(SSL *ssl, const char *sni, unsigned flags);
/* Records "what: <OpenSSL error queue>" as the thread's hk_tls_last_error(). */
const char *hk__tls_set_error(const char *what, SSL *ssl);
/* Maps a failed SSL_* call (SSL_get_error, its errno) to -errno and records the text. */
int hk__tls_fail(const char *what, SSL *ssl, int ssl_err, int saved_errno);

#endif
