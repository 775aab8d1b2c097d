/*
 * hark/co_net.h: names, connections and TLS for coroutines.
 *
 * Straight-line coroutine code resolves a name, connects and speaks TLS with
 * the calls below; each parks only the calling coroutine. They follow
 * hark/co.h: call them from a coroutine (-EPERM otherwise), blocking calls
 * take an absolute CLOCK_MONOTONIC deadline in ns (0 tries once, HK_FOREVER
 * never expires) and return -ETIMEDOUT when it passes, -ECANCELED when the
 * coroutine's scope is cancelled, -EINVAL for a deadline >= HK_DEADLINE_MAX
 * (other than HK_FOREVER). Errors: >= 0 on success, -errno on failure.
 *
 * Kept apart from hark/co.h so that co.h needs neither c-ares nor OpenSSL
 * types. See docs/co.md, "Names, connections and TLS from coroutines".
 */
#ifndef HARK_CO_NET_H
#define HARK_CO_NET_H

#include "hark/api.h"
#include "hark/co.h"
#include "hark/dns.h"
#include "hark/tls.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Names                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Options of the runtime's resolver (hark/dns.h; copied). The runtime
 * creates its resolver on first use, on the thread of its blocking bridge,
 * from resolv.conf unless this was called before. Callable from any thread.
 * Errors: -EINVAL (opts NULL), -EBUSY (the resolver exists already: a lookup
 * has run), -ENOMEM. Bad options show up as the error of the first lookup.
 */
HK_API int hk_co_resolver_configure(hk_co_runtime_t *rt, const hk_resolver_options_t *opts);

/*
 * Resolves host (hark/dns.h: /etc/hosts, the cache, then the servers) to
 * addresses of family (AF_UNSPEC, AF_INET, AF_INET6), stores up to max of
 * them in addrs (port 0) and returns how many (>= 1). The lookup runs on
 * the runtime's resolver; the deadline is the request's own. On -ECANCELED
 * the lookup has been cancelled and finished before the call returns.
 * Errors: those of a lookup in hark/dns.h (-ENOENT, -ENODATA, -ETIMEDOUT,
 * -ECONNREFUSED, -EAGAIN, ...), -EINVAL (NULL host or addrs, max 0, bad
 * family or deadline), -ESHUTDOWN (the runtime is stopping).
 */
HK_API int hk_co_resolve(const char *host, int family, hk_dns_addr_t *addrs, size_t max,
                         uint64_t deadline);

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Connects a TCP socket to host (a literal IPv4 or IPv6 address, or a name
 * resolved with hk_co_resolve) on port, trying each address in turn until
 * one accepts; the deadline covers the whole call. Returns the connected fd
 * (non-blocking, close-on-exec, registered with the netpoller: close it with
 * hk_co_close). Errors: the last address's connect error (-ECONNREFUSED,
 * -ENETUNREACH, ...), those of hk_co_resolve, -EINVAL (NULL host, port 0).
 */
HK_API int hk_co_tcp_connect(const char *host, uint16_t port, uint64_t deadline);

/* ------------------------------------------------------------------------ */
/* TLS on an fd                                                             */
/* ------------------------------------------------------------------------ */

/*
 * A TLS connection on a connected non-blocking socket, driven by one
 * coroutine at a time (like the SSL object inside). A struct the caller
 * embeds: zero it (or use HK_CO_TLS_INIT) before the handshake, and call
 * hk_co_tls_free once done, whatever the handshake returned. The fd stays
 * the caller's: close it (hk_co_close) after hk_co_tls_free.
 *
 * Every SSL_* call that would block waits for exactly what OpenSSL asked
 * (WANT_READ: readable, WANT_WRITE: writable), whichever call it was, so a
 * read that must send (a TLS 1.3 KeyUpdate answer) and a write that must
 * receive both make progress. TLS failures are -EPROTO (protocol error,
 * failed verification), -ECONNRESET (the peer closed without close_notify)
 * or the socket's -errno; hk_tls_last_error() has the text. It is per
 * thread and a parked coroutine may move to another worker: read it right
 * after the failing call. Like TLS streams, the SSL object writes with
 * write(2): a program whose peers may reset connections ignores SIGPIPE.
 */
typedef struct hk_co_tls {
    int fd;             /* read-only: the socket */
    int _state;         /* private */
    void *_ssl;         /* SSL *, private */
    hk_tls_ctx_t *_ctx; /* a reference, private */
} hk_co_tls_t;

#define HK_CO_TLS_INIT                                                                             \
    {                                                                                              \
        .fd = -1                                                                                   \
    }

/*
 * Runs the handshake on fd as role (HK_TLS_CLIENT, HK_TLS_SERVER), with the
 * context's certificates, ALPN and verification (hark/tls.h). A client sends
 * sni as the server name and, unless HK_TLS_NO_VERIFY, verifies the server's
 * certificate against it (NULL: no SNI, no name check). After -ETIMEDOUT or
 * -ECANCELED, calling it again (same arguments) resumes the handshake; any
 * other failure is final (later calls return it). The client's session
 * cache of the context (HK_TLS_SESSION_CACHE) serves TLS streams only.
 * Errors: -EINVAL (bad arguments, a server context without a certificate,
 * a different fd than the interrupted handshake's), -EISCONN (done already),
 * -EPROTO, -ECONNRESET, -ENOMEM, a socket -errno.
 */
HK_API int hk_co_tls_handshake(hk_co_tls_t *tls, int fd, hk_tls_ctx_t *ctx, hk_tls_role_t role,
                               const char *sni, uint64_t deadline);

/*
 * Reads up to len plaintext bytes (at least one); waits until some arrive.
 * Returns 0 at the peer's close_notify. After -ETIMEDOUT or -ECANCELED it
 * may be called again; any other failure finishes the connection (later
 * calls return the same error). Errors: -ENOTCONN (no handshake),
 * -ECONNRESET, -EPROTO, a socket -errno.
 */
HK_API ssize_t hk_co_tls_read(hk_co_tls_t *tls, void *buf, size_t len, uint64_t deadline);

/*
 * Writes all len bytes (in records of up to 16 KiB) and returns len. A
 * write that fails, even by its deadline or a cancellation, may have sent
 * part: the connection is then finished (later calls return the same
 * error; call hk_co_tls_free). Errors: -ENOTCONN, -EPIPE (shut down),
 * -EPROTO, -ECONNRESET, a socket -errno.
 */
HK_API ssize_t hk_co_tls_write(hk_co_tls_t *tls, const void *buf, size_t len, uint64_t deadline);

/*
 * Sends close_notify (once; the peer's is not awaited: a later read returns
 * 0 when it comes). The socket stays open. Errors: -ENOTCONN, and those of
 * hk_co_tls_write.
 */
HK_API int hk_co_tls_shutdown(hk_co_tls_t *tls, uint64_t deadline);

/* Frees the SSL object and drops the context reference; the fd is left open. Any thread. */
HK_API void hk_co_tls_free(hk_co_tls_t *tls);

/* HK_TLS_1_2 or HK_TLS_1_3 once the handshake is done, else -ENOTCONN. */
HK_API int hk_co_tls_version(const hk_co_tls_t *tls);

/*
 * Copies the negotiated ALPN protocol (NUL-terminated) into buf; returns its
 * length, 0 if none. Errors: -EINVAL, -ENOTCONN, -ENOSPC (buf too small).
 */
HK_API int hk_co_tls_alpn(const hk_co_tls_t *tls, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
