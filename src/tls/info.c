/*
 * TLS stream queries and the kTLS probe.
 *
 * Why probe the kernel separately: OpenSSL turns kTLS on quietly, per
 * connection, only if the kernel has the "tls" upper-layer protocol (a
 * module that may not be loaded or allowed) and the cipher suits it. The
 * probe answers the first question once per process, so a server can log
 * why its files go through pread and SSL_write; hk_tls_stream_ktls answers
 * for a given connection.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls/internal.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static hk__tls_conn_t *hk__tls_open_conn(const hk_stream_t *s)
{
    hk__tls_conn_t *c = hk__tls_conn(s);
    return c && c->state == HK__TLS_OPEN ? c : NULL;
}

int hk_tls_stream_is_tls(const hk_stream_t *s)
{
    return hk__tls_conn(s) != NULL;
}

int hk_tls_stream_version(const hk_stream_t *s)
{
    hk__tls_conn_t *c = hk__tls_conn(s);
    if (!c)
        return -EINVAL;
    return c->state == HK__TLS_OPEN ? SSL_version(c->ssl) : -ENOTCONN;
}

const char *hk_tls_stream_cipher(const hk_stream_t *s)
{
    hk__tls_conn_t *c = hk__tls_open_conn(s);
    return c ? SSL_get_cipher_name(c->ssl) : NULL;
}

int hk_tls_stream_alpn(const hk_stream_t *s, char *buf, size_t size)
{
    hk__tls_conn_t *c = hk__tls_open_conn(s);
    const unsigned char *p = NULL;
    unsigned len = 0;
    if (c)
        SSL_get0_alpn_selected(c->ssl, &p, &len);
    if (!p || !len || !size) {
        if (size)
            buf[0] = '\0';
        return 0;
    }
    if (len >= size)
        return -ENOSPC;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return (int)len;
}

const char *hk_tls_stream_sni(const hk_stream_t *s)
{
    hk__tls_conn_t *c = hk__tls_conn(s);
    return c ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

int hk_tls_stream_resumed(const hk_stream_t *s)
{
    hk__tls_conn_t *c = hk__tls_open_conn(s);
    return c ? SSL_session_reused(c->ssl) : 0;
}

unsigned hk_tls_stream_ktls(const hk_stream_t *s)
{
    hk__tls_conn_t *c = hk__tls_open_conn(s);
    if (!c)
        return 0;
    unsigned r = 0;
    if (BIO_get_ktls_send(SSL_get_wbio(c->ssl)))
        r |= HK_TLS_KTLS_SEND;
    if (BIO_get_ktls_recv(SSL_get_rbio(c->ssl)))
        r |= HK_TLS_KTLS_RECV;
    return r;
}

static pthread_once_t hk__tls_probe_once = PTHREAD_ONCE_INIT;
static int hk__tls_probe_result;

/* A loopback connection, then TCP_ULP "tls" on it (the kernel needs an established socket). */
static void hk__tls_probe(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int a = -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    if (l >= 0 && cfd >= 0 && bind(l, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        listen(l, 1) == 0 && getsockname(l, (struct sockaddr *)&sin, &len) == 0 &&
        connect(cfd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        (a = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        hk__tls_probe_result = setsockopt(cfd, SOL_TCP, TCP_ULP, "tls", sizeof "tls") == 0;
    if (a >= 0)
        close(a);
    if (cfd >= 0)
        close(cfd);
    if (l >= 0)
        close(l);
}

int hk_tls_ktls_supported(void)
{
    pthread_once(&hk__tls_probe_once, hk__tls_probe);
    return hk__tls_probe_result;
}
