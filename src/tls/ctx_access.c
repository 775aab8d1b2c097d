/* Accessors of src/tls/ctx_access.h (the context stays opaque outside src/tls). */
#include "tls/ctx_access.h"
#include "tls/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>

#include <openssl/x509_vfy.h>

SSL_CTX *hk__tls_ctx_ssl(hk_tls_ctx_t *ctx)
{
    return ctx->ssl_ctx;
}

unsigned hk__tls_ctx_flags(const hk_tls_ctx_t *ctx)
{
    return ctx->flags;
}

/* Whether name is an IPv4 or IPv6 address literal (no brackets). */
static bool hk__tls_is_ip(const char *name)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

int hk__tls_client_name(SSL *ssl, const char *sni, unsigned flags)
{
    /*
     * An address is no server name: RFC 6066 forbids it in SNI, so it is
     * not sent, and it is checked against the certificate's iPAddress
     * entries (OpenSSL 3's SSL_set1_host would too; 1.1's would compare it
     * with DNS names and fail).
     */
    bool ip = sni && hk__tls_is_ip(sni);
    if (sni && !ip && SSL_set_tlsext_host_name(ssl, sni) != 1)
        return 0;
    if (flags & HK_TLS_NO_VERIFY)
        return 1;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    if (ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sni) == 1;
    return !sni || SSL_set1_host(ssl, sni) == 1;
}
