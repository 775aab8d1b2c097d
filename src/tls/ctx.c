/*
 * TLS contexts: certificates, SNI, ALPN, ticket keys, the client session cache.
 *
 * Why one SSL_CTX per SNI certificate: OpenSSL's servername callback can
 * switch a connection to another SSL_CTX, which brings that context's
 * certificate and key in one pointer swap, with nothing parsed per
 * handshake. Every such context is configured like the main one (versions,
 * ALPN, CAs), because after the switch OpenSSL reads some settings from it;
 * tickets and the session cache stay with the main context.
 *
 * Why our own ticket keys: OpenSSL's built-in key is random per context and
 * never changes, so a server that runs for months encrypts every ticket
 * under one key (no forward secrecy for resumed sessions). We keep the
 * current key and the previous one: a rotation starts sealing with a new
 * key while tickets from the last period still resume (and are renewed).
 *
 * Why a client session cache of our own: OpenSSL clients never look
 * sessions up by themselves. A new-session callback files each session (a
 * TLS 1.3 ticket arrives after the handshake) under the SNI name, and the
 * next connection to that name offers it.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls/internal.h"

static int hk__tls_version(int v, int dflt)
{
    if (v == 0)
        return dflt;
    return (v == HK_TLS_1_2 || v == HK_TLS_1_3) ? v : -1;
}

/* ALPN names to the wire format (each prefixed by its length). */
static int hk__tls_alpn_wire(hk_tls_ctx_t *ctx, const char *const *alpn)
{
    size_t total = 0;
    for (size_t i = 0; alpn[i]; i++) {
        size_t n = strlen(alpn[i]);
        if (n == 0 || n > 255)
            return -EINVAL;
        total += 1 + n;
    }
    if (total == 0 || total > 65535)
        return -EINVAL;
    ctx->alpn = malloc(total);
    if (!ctx->alpn)
        return -ENOMEM;
    size_t off = 0;
    for (size_t i = 0; alpn[i]; i++) {
        size_t n = strlen(alpn[i]);
        ctx->alpn[off++] = (unsigned char)n;
        memcpy(ctx->alpn + off, alpn[i], n);
        off += n;
    }
    ctx->alpn_len = (unsigned)total;
    return 0;
}

static int hk__tls_on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    hk_tls_ctx_t *ctx = arg;
    if (!ctx->alpn)
        return SSL_TLSEXT_ERR_NOACK;
    /* RFC 7301: no common protocol is a fatal no_application_protocol alert. */
    return hk__tls_alpn_select(ctx->alpn, ctx->alpn_len, in, inlen, out, outlen)
               ? SSL_TLSEXT_ERR_OK
               : SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int hk__tls_on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    hk_tls_ctx_t *ctx = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < ctx->nsni; i++) {
        if (hk__tls_name_match(ctx->sni_names[i], name)) {
            if (!SSL_set_SSL_CTX(ssl, ctx->sni_ctx[i]))
                return SSL_TLSEXT_ERR_ALERT_FATAL;
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown names get the default certificate */
}

static int hk__tls_on_ticket(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                             EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    hk_tls_ctx_t *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    hk__tls_conn_t *c = SSL_get_app_data(ssl);
    if (c)
        ctx = c->ctx;
    int r = -1;
    pthread_mutex_lock(&ctx->lock);
    int idx = 0;
    if (enc) {
        memcpy(key_name, ctx->keys[0].name, 16);
        if (RAND_bytes(iv, 16) != 1)
            goto out;
    } else {
        for (idx = 0; idx < ctx->nkeys; idx++) {
            if (memcmp(key_name, ctx->keys[idx].name, 16) == 0)
                break;
        }
        if (idx == ctx->nkeys) {
            r = 0; /* an unknown or expired key: a full handshake */
            goto out;
        }
    }
    const hk__tls_ticket_key_t *k = &ctx->keys[idx];
    OSSL_PARAM params[3];
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (!EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv, enc) ||
        !EVP_MAC_CTX_set_params(hctx, params))
        goto out;
    r = (enc || idx == 0) ? 1 : 2; /* 2: valid under the previous key, issue a new ticket */
out:
    pthread_mutex_unlock(&ctx->lock);
    return r;
}

static int hk__tls_on_new_session(SSL *ssl, SSL_SESSION *session)
{
    hk__tls_conn_t *c = SSL_get_app_data(ssl);
    if (!c || c->role != HK_TLS_CLIENT || !(c->ctx->flags & HK_TLS_SESSION_CACHE))
        return 0;
    /*
     * Filed under the name the connection was given, which is what the next
     * connection looks up: not the SNI sent, which an address never is (RFC
     * 6066), so a session for 127.0.0.1 was filed under "no name".
     */
    const char *host = c->cache_name;
    if (strlen(host) >= HK__TLS_NAME)
        return 0;
    hk_tls_ctx_t *ctx = c->ctx;
    pthread_mutex_lock(&ctx->lock);
    hk__tls_cached_t *slot = NULL;
    for (unsigned i = 0; i < HK__TLS_CACHE && !slot; i++) {
        if (ctx->cache[i].session && strcmp(ctx->cache[i].host, host) == 0)
            slot = &ctx->cache[i];
    }
    if (!slot) /* replace the oldest filing */
        slot = &ctx->cache[ctx->cache_next++ % HK__TLS_CACHE];
    if (slot->session)
        SSL_SESSION_free(slot->session);
    strcpy(slot->host, host);
    slot->session = session;
    pthread_mutex_unlock(&ctx->lock);
    return 1; /* we keep OpenSSL's reference */
}

void hk__tls_cache_apply(hk_tls_ctx_t *ctx, SSL *ssl, const char *host)
{
    if (!(ctx->flags & HK_TLS_SESSION_CACHE))
        return;
    if (!host)
        host = "";
    pthread_mutex_lock(&ctx->lock);
    for (unsigned i = 0; i < HK__TLS_CACHE; i++) {
        if (ctx->cache[i].session && strcmp(ctx->cache[i].host, host) == 0) {
            (void)SSL_set_session(ssl, ctx->cache[i].session);
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

static int hk__tls_new_key(hk__tls_ticket_key_t *k)
{
    return RAND_bytes(k->name, sizeof k->name) == 1 && RAND_bytes(k->aes, sizeof k->aes) == 1 &&
                   RAND_bytes(k->hmac, sizeof k->hmac) == 1
               ? 0
               : -EIO;
}

int hk_tls_ctx_rotate_ticket_keys(hk_tls_ctx_t *ctx)
{
    hk__tls_ticket_key_t k;
    if (hk__tls_new_key(&k) < 0) {
        hk__tls_set_error("ticket key", NULL);
        return -EIO;
    }
    pthread_mutex_lock(&ctx->lock);
    ctx->keys[1] = ctx->keys[0];
    ctx->keys[0] = k;
    ctx->nkeys = 2;
    pthread_mutex_unlock(&ctx->lock);
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}

/* An SSL_CTX with the settings every context of ours shares. */
static int hk__tls_ssl_ctx(hk_tls_ctx_t *ctx, const hk_tls_ctx_options_t *o, const char *cert,
                           const char *key, int minv, int maxv, SSL_CTX **out)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_method());
    if (!sc) {
        hk__tls_set_error("SSL_CTX_new", NULL);
        return -ENOMEM;
    }
    *out = sc;
    SSL_CTX_set_app_data(sc, ctx);
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (o->flags & HK_TLS_NO_TICKETS)
        opts |= SSL_OP_NO_TICKET;
#ifdef SSL_OP_ENABLE_KTLS
    if (o->flags & HK_TLS_KTLS)
        opts |= SSL_OP_ENABLE_KTLS;
#endif
    SSL_CTX_set_options(sc, opts);
    /*
     * Read-ahead: one recv takes every byte the kernel holds (a request and
     * what is pipelined behind it) instead of a 5-byte header recv and a body
     * recv per record. kTLS receive decrypts in the kernel and wants records
     * one by one, so it keeps OpenSSL's default.
     */
    if (!(o->flags & HK_TLS_KTLS))
        SSL_CTX_set_read_ahead(sc, 1);
    /* Partial writes: one record at a time, so a writev can report what went out. */
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_min_proto_version(sc, minv) || !SSL_CTX_set_max_proto_version(sc, maxv) ||
        !SSL_CTX_set_session_id_context(sc, (const unsigned char *)"hark", 4)) {
        hk__tls_set_error("protocol versions", NULL);
        return -EPROTO;
    }
    if (cert && SSL_CTX_use_certificate_chain_file(sc, cert) != 1) {
        hk__tls_set_error(cert, NULL);
        return -EPROTO;
    }
    /*
     * The chain sent is the one in cert_file. Without this OpenSSL completes
     * it at every handshake from the verify store, and the system store is a
     * directory: /etc/ssl/certs read (getdents, opens) on the loop thread for
     * each connection, a blocking disk access per handshake.
     */
    if (cert)
        SSL_CTX_set_mode(sc, SSL_MODE_NO_AUTO_CHAIN);
    if (key && (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_check_private_key(sc) != 1)) {
        hk__tls_set_error(key, NULL);
        return -EPROTO;
    }
    if (o->ca_file) {
        if (SSL_CTX_load_verify_locations(sc, o->ca_file, NULL) != 1) {
            hk__tls_set_error(o->ca_file, NULL);
            return -EPROTO;
        }
    } else if (SSL_CTX_set_default_verify_paths(sc) != 1) {
        ERR_clear_error(); /* no system store: verification will fail and say so */
    }
    SSL_CTX_set_alpn_select_cb(sc, hk__tls_on_alpn, ctx);
    return 0;
}

static int hk__tls_ctx_setup(hk_tls_ctx_t *ctx, const hk_tls_ctx_options_t *o)
{
    int minv = hk__tls_version(o->min_version, HK_TLS_1_2);
    int maxv = hk__tls_version(o->max_version, HK_TLS_1_3);
    if (minv < 0 || maxv < 0 || minv > maxv || !o->cert_file != !o->key_file ||
        (o->sni_count && !o->sni_certs)) {
        hk__tls_set_error("options: bad versions, or a certificate without its key", NULL);
        return -EINVAL;
    }
    int r;
    if (o->alpn && (r = hk__tls_alpn_wire(ctx, o->alpn)) < 0) {
        hk__tls_set_error("options: bad ALPN list", NULL);
        return r;
    }
    r = hk__tls_ssl_ctx(ctx, o, o->cert_file, o->key_file, minv, maxv, &ctx->ssl_ctx);
    if (r < 0)
        return r;
    SSL_CTX *sc = ctx->ssl_ctx;
    if (ctx->alpn && SSL_CTX_set_alpn_protos(sc, ctx->alpn, ctx->alpn_len) != 0)
        return -ENOMEM;
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_CLIENT |
                                           SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(sc, hk__tls_on_new_session);
    if (hk__tls_new_key(&ctx->keys[0]) < 0) {
        hk__tls_set_error("ticket key", NULL);
        return -EIO;
    }
    ctx->nkeys = 1;
    SSL_CTX_set_tlsext_ticket_key_evp_cb(sc, hk__tls_on_ticket);
    if (o->sni_count) {
        ctx->sni_ctx = calloc(o->sni_count, sizeof *ctx->sni_ctx);
        ctx->sni_names = calloc(o->sni_count, sizeof *ctx->sni_names);
        if (!ctx->sni_ctx || !ctx->sni_names)
            return -ENOMEM;
        for (size_t i = 0; i < o->sni_count; i++) {
            const hk_tls_cert_t *c = &o->sni_certs[i];
            if (!c->name || !c->cert_file || !c->key_file || !c->name[0]) {
                hk__tls_set_error("options: an SNI entry needs a name, cert and key", NULL);
                return -EINVAL;
            }
            ctx->sni_names[i] = strdup(c->name);
            if (!ctx->sni_names[i])
                return -ENOMEM;
            ctx->nsni = i + 1;
            r = hk__tls_ssl_ctx(ctx, o, c->cert_file, c->key_file, minv, maxv, &ctx->sni_ctx[i]);
            if (r < 0)
                return r;
        }
        SSL_CTX_set_tlsext_servername_callback(sc, hk__tls_on_servername);
        SSL_CTX_set_tlsext_servername_arg(sc, ctx);
    }
    return 0;
}

static void hk__tls_ctx_destroy(hk_tls_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->nsni; i++) {
        SSL_CTX_free(ctx->sni_ctx[i]);
        free(ctx->sni_names[i]);
    }
    free(ctx->sni_ctx);
    free(ctx->sni_names);
    SSL_CTX_free(ctx->ssl_ctx);
    for (unsigned i = 0; i < HK__TLS_CACHE; i++) {
        if (ctx->cache[i].session)
            SSL_SESSION_free(ctx->cache[i].session);
    }
    free(ctx->alpn);
    OPENSSL_cleanse(ctx->keys, sizeof ctx->keys);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

int hk_tls_ctx_new(const hk_tls_ctx_options_t *o, hk_tls_ctx_t **ctxp)
{
    if (!o || !ctxp)
        return -EINVAL;
    hk_tls_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -ENOMEM;
    pthread_mutex_init(&ctx->lock, NULL);
    atomic_init(&ctx->refs, 1);
    ctx->flags = o->flags;
    ERR_clear_error();
    int r = hk__tls_ctx_setup(ctx, o);
    if (r < 0) {
        hk__tls_ctx_destroy(ctx);
        return r;
    }
    *ctxp = ctx;
    return 0;
}

void hk__tls_ctx_ref(hk_tls_ctx_t *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void hk_tls_ctx_free(hk_tls_ctx_t *ctx)
{
    if (ctx && atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        hk__tls_ctx_destroy(ctx);
}
