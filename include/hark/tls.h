/*
 * hark/tls.h: TLS 1.2 and 1.3 (OpenSSL 3) on hark streams, server and client.
 *
 * A TLS context (hk_tls_ctx_t) holds what connections share: certificates
 * and keys from PEM files (a default one plus extra ones chosen by SNI), the
 * ALPN list, the CA file for verifying peers, session-ticket keys (rotated
 * with hk_tls_ctx_rotate_ticket_keys) and a client-side session cache.
 *
 * hk_tls_stream_start() turns an hk_stream_t (net.h) into a TLS stream: it
 * installs a transport on the stream, runs the handshake from the loop and
 * calls back once. From the callback on, the caller uses the ordinary stream
 * API (hk_stream_read_start, hk_stream_write, hk_stream_shutdown, which sends
 * close_notify, hk_stream_close) on plaintext.
 *
 * Everything is non-blocking, and after every OpenSSL call the stream waits
 * for exactly what OpenSSL asked for: SSL_ERROR_WANT_READ or
 * SSL_ERROR_WANT_WRITE, whichever direction the call was made in (a read
 * that must write: a KeyUpdate answer, a ticket; a write that must read).
 *
 * Errors follow loop.h: >= 0 or -errno, and a failing call never invokes
 * its callback. TLS failures are -EPROTO (a protocol error or a failed
 * verification), -ECONNRESET (the peer closed without close_notify) or the
 * socket's -errno; the text of OpenSSL's error queue is kept per thread and
 * returned by hk_tls_last_error(). Contexts are thread-safe (shared by the
 * loops of several threads); a TLS stream belongs to its loop's thread.
 */
#ifndef HARK_TLS_H
#define HARK_TLS_H

#include "hark/api.h"
#include "hark/net.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hk_tls_ctx hk_tls_ctx_t;

typedef enum hk_tls_role {
    HK_TLS_SERVER = 0,
    HK_TLS_CLIENT = 1,
} hk_tls_role_t;

/* Protocol versions (the TLS wire values). Older versions are never offered. */
#define HK_TLS_1_2 0x0303
#define HK_TLS_1_3 0x0304

/* hk_tls_ctx_options_t.flags */
#define HK_TLS_NO_VERIFY 0x01u     /* client: accept any server certificate (tests only) */
#define HK_TLS_VERIFY_CLIENT 0x02u /* server: require a client certificate signed by ca_file */
#define HK_TLS_NO_TICKETS 0x04u    /* server: issue no session tickets */
#define HK_TLS_SESSION_CACHE 0x08u /* client: remember sessions per SNI name and resume them */
#define HK_TLS_KTLS 0x10u          /* let OpenSSL move the record layer into the kernel */

/* A certificate chosen when the client's SNI name matches (exactly, or "*.example.com"). */
typedef struct hk_tls_cert {
    const char *name;      /* "example.com" or "*.example.com" */
    const char *cert_file; /* PEM, the leaf first, then the chain */
    const char *key_file;  /* PEM private key */
} hk_tls_cert_t;

typedef struct hk_tls_ctx_options {
    const char *cert_file; /* PEM chain: required for servers, a client certificate otherwise */
    const char *key_file;  /* PEM key of cert_file */
    const hk_tls_cert_t *sni_certs; /* extra certificates by SNI name (servers) */
    size_t sni_count;
    const char *const *alpn; /* NULL-terminated protocol names, in order of preference */
    const char *ca_file;     /* PEM CAs to verify the peer; NULL: the system's (clients) */
    int min_version;         /* HK_TLS_1_2 (also for 0) or HK_TLS_1_3 */
    int max_version;         /* HK_TLS_1_3 (also for 0) or HK_TLS_1_2 */
    unsigned flags;          /* HK_TLS_* above */
} hk_tls_ctx_options_t;

/*
 * Creates a context from the options (copied: the strings may go after the
 * call). Errors: -EINVAL (bad options), -EPROTO (OpenSSL refused a file: a
 * missing or malformed PEM, a key that does not match; hk_tls_last_error()
 * says which), -ENOMEM.
 */
HK_API int hk_tls_ctx_new(const hk_tls_ctx_options_t *options, hk_tls_ctx_t **ctxp);

/* Drops the caller's reference; streams still using the context keep it alive. */
HK_API void hk_tls_ctx_free(hk_tls_ctx_t *ctx);

/*
 * Makes a fresh random session-ticket key the current one; tickets sealed
 * with the previous key are still accepted (and replaced by new ones), older
 * tickets are not. Call it periodically (every few hours) from any thread.
 * Errors: -EIO (no randomness).
 */
HK_API int hk_tls_ctx_rotate_ticket_keys(hk_tls_ctx_t *ctx);

/*
 * The text of the last TLS failure on this thread ("" if none): the
 * operation, then OpenSSL's error queue ("handshake: error:0A00010B:SSL
 * routines::wrong version number"), and the verification result if any.
 */
HK_API const char *hk_tls_last_error(void);

/*
 * The handshake finished: status 0, or -errno (the stream is then dead:
 * close it). error is the text of the failure (NULL on success), valid
 * during the callback.
 */
typedef void (*hk_tls_handshake_cb)(hk_stream_t *stream, int status, const char *error);

/*
 * Starts TLS on a stream that has not read or written yet. A client sends
 * its ClientHello at once, with sni as the server name (also the name its
 * certificate is verified against unless HK_TLS_NO_VERIFY; NULL: no SNI, no
 * name check). An IPv4 or IPv6 address literal ("192.0.2.1", "::1") is not
 * sent (RFC 6066 allows only host names in SNI) and is verified against the
 * certificate's IP address entries instead. cb runs once, from the loop.
 * Until then do not read or write (a write fails the stream with
 * -ENOTCONN). Closing the stream before cb cancels the handshake; cb does
 * not run then. A failure while sending the ClientHello (a socket error)
 * reaches cb too.
 * Errors: -EINVAL, -EBUSY (closing, or a transport is already installed),
 * -ENOMEM, -EPROTO.
 */
HK_API int hk_tls_stream_start(hk_stream_t *stream, hk_tls_ctx_t *ctx, hk_tls_role_t role,
                               const char *sni, hk_tls_handshake_cb cb);

/* Queries, valid once the handshake callback reported success. */

/* Non-zero if the stream is a TLS stream. */
HK_API int hk_tls_stream_is_tls(const hk_stream_t *stream);
/* HK_TLS_1_2 or HK_TLS_1_3, or -EINVAL (not TLS) / -ENOTCONN (no handshake yet). */
HK_API int hk_tls_stream_version(const hk_stream_t *stream);
/* The negotiated cipher suite ("TLS_AES_256_GCM_SHA384"), or NULL. */
HK_API const char *hk_tls_stream_cipher(const hk_stream_t *stream);
/* Copies the ALPN protocol (NUL-terminated) into buf; returns its length, 0 if none. */
HK_API int hk_tls_stream_alpn(const hk_stream_t *stream, char *buf, size_t size);
/* Server: the SNI name the client sent, or NULL. Client: the name it sent (NULL for an address). */
HK_API const char *hk_tls_stream_sni(const hk_stream_t *stream);
/* 1 if the session was resumed (ticket or session ID), else 0. */
HK_API int hk_tls_stream_resumed(const hk_stream_t *stream);

/* hk_tls_stream_ktls() bits. */
#define HK_TLS_KTLS_SEND 0x1u
#define HK_TLS_KTLS_RECV 0x2u

/* The directions the kernel does the record layer for (0: OpenSSL does all). */
HK_API unsigned hk_tls_stream_ktls(const hk_stream_t *stream);

/*
 * Whether this kernel accepts the "tls" upper-layer protocol on a TCP
 * socket: probed once per process on a loopback connection (1 or 0).
 */
HK_API int hk_tls_ktls_supported(void);

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct hk_tls_sendfile hk_tls_sendfile_t;

/* The file range was sent (status 0) or not (-errno, -ECANCELED on close, -EIO if it was short). */
typedef void (*hk_tls_sendfile_cb)(hk_tls_sendfile_t *req, int status);

struct hk_tls_sendfile {
    void *data;          /* free for the caller */
    hk_stream_t *stream; /* read-only */
    int fd;              /* read-only */
    off_t offset;        /* read-only */
    size_t len;          /* read-only */
    size_t _sent;
    hk_tls_sendfile_cb _cb;
    hk_tls_sendfile_t *_next;
    struct iovec _iov;
    hk_write_req_t _req;
};

/* The largest range one request may send. */
#define HK_TLS_SENDFILE_MAX ((size_t)1 << 36)

/*
 * Queues len bytes of the file fd from offset, in order with the stream's
 * other writes (and counted by its watermarks). With kTLS send active the
 * kernel encrypts straight from the page cache (SSL_sendfile); otherwise
 * the file is read with pread in 16 KiB pieces and written with SSL_write.
 * fd must stay open until cb. Returns 0 or HK_STREAM_FULL like
 * hk_stream_write. Errors: -EINVAL (len 0 or above HK_TLS_SENDFILE_MAX, not
 * a TLS stream), -ENOTCONN (handshake not done), -ENOMEM, and those of
 * hk_stream_write.
 */
HK_API int hk_tls_sendfile(hk_stream_t *stream, hk_tls_sendfile_t *req, int fd, off_t offset,
                           size_t len, hk_tls_sendfile_cb cb);

#ifdef __cplusplus
}
#endif

#endif
