/* Module-private parts of hark/tls.h: the context and the per-connection state. */
#ifndef HK_TLS_INTERNAL_H
#define HK_TLS_INTERNAL_H

#include "hark/tls.h"
#include "hark/error.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include <openssl/ssl.h>

#define HK__TLS_CACHE 32    /* client sessions remembered per context */
#define HK__TLS_NAME 256    /* longest SNI name kept */
#define HK__TLS_CHUNK 16384 /* one TLS record of plaintext */

typedef struct hk__tls_ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} hk__tls_ticket_key_t;

typedef struct hk__tls_cached {
    char host[HK__TLS_NAME];
    SSL_SESSION *session;
} hk__tls_cached_t;

struct hk_tls_ctx {
    SSL_CTX *ssl_ctx;
    SSL_CTX **sni_ctx; /* one per extra certificate */
    char **sni_names;
    size_t nsni;
    unsigned char *alpn; /* wire format: length-prefixed names */
    unsigned alpn_len;
    unsigned flags;
    atomic_int refs;
    pthread_mutex_t lock;         /* the ticket keys and the session cache */
    hk__tls_ticket_key_t keys[2]; /* current, previous */
    int nkeys;
    hk__tls_cached_t cache[HK__TLS_CACHE];
    unsigned cache_next;
};

/* Connection states. */
#define HK__TLS_HANDSHAKE 1 /* SSL_do_handshake in progress */
#define HK__TLS_HS_DONE 2   /* done; the callback is deferred */
#define HK__TLS_OPEN 3      /* the caller owns the plaintext stream */
#define HK__TLS_FAILED 4

typedef struct hk__tls_conn {
    SSL *ssl;
    hk_tls_ctx_t *ctx;
    hk_stream_t *stream;
    hk_tls_handshake_cb cb;
    hk_defer_t defer;
    int state;
    hk_tls_role_t role;
    unsigned rwant, wwant, swant; /* what the read, write, shutdown sides wait for */
    int partial;   /* the last read stopped at a partial record in the read-ahead buffer */
    int rend_held; /* the last read returned bytes and found the end (or an error) behind them */
    ssize_t rend;  /* that end: 0 or -errno, returned by the next read */
    hk_tls_sendfile_t *sf_head, *sf_tail;
    int hs_status;  /* a handshake that ended inside start(): its result, for the callback */
    char *hs_error; /* and its text */
    /*
     * A client's session cache key: the name it was given, sent as SNI or
     * not (an address is not), "" for none; only with HK_TLS_SESSION_CACHE.
     */
    char cache_name[];
} hk__tls_conn_t;

/* ctx.c */
void hk__tls_ctx_ref(hk_tls_ctx_t *ctx);
/* Looks up a cached client session for host and installs it on ssl. */
void hk__tls_cache_apply(hk_tls_ctx_t *ctx, SSL *ssl, const char *host);

/* error.c */
/* Records "what: <OpenSSL error queue>" as the thread's last error; returns the text. */
const char *hk__tls_set_error(const char *what, SSL *ssl);
/*
 * Maps the failed result of an SSL_* call (ssl_err from SSL_get_error, the
 * call's saved errno) to -errno and records the text. Never -EAGAIN.
 */
int hk__tls_fail(const char *what, SSL *ssl, int ssl_err, int saved_errno);

/* match.c: pure functions over peer input (fuzzed). */
/* 1 if an SNI name matches a pattern ("a.example.com" or "*.example.com"), ignoring case. */
int hk__tls_name_match(const char *pattern, const char *name);
/*
 * Chooses the first of the server's protocols (wire format) that the client
 * offered (wire format). Returns 1 and sets *out and *outlen, or 0 (no overlap or
 * a malformed client list).
 */
int hk__tls_alpn_select(const unsigned char *server, unsigned server_len,
                        const unsigned char *client, unsigned client_len, const unsigned char **out,
                        unsigned char *outlen);

/* sendfile.c */
/* 1 if p points into the address range that stands for queued file bytes. */
int hk__tls_is_file_ptr(const void *p);
/*
 * Sends up to left file bytes for the front sendfile request, p being where
 * the stream is in its range. Returns like SSL_write_ex (1 and *written, or
 * 0 with *ssl_err from SSL_get_error and the call's errno).
 */
int hk__tls_file_write(hk__tls_conn_t *c, const void *p, size_t left, size_t *written, int *ssl_err,
                       int *saved_errno);

/* stream.c */
hk__tls_conn_t *hk__tls_conn(const hk_stream_t *stream);
void hk__tls_update_want(hk__tls_conn_t *c);

/* bio.c: a socket BIO that sends with MSG_NOSIGNAL (never SIGPIPE). */
BIO *hk__tls_bio_new(int fd);

#endif
