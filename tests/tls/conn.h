/* A TLS connection for the tests: a stream, its handshake result, what it read. */
#ifndef HK_TEST_TLS_CONN_H
#define HK_TEST_TLS_CONN_H

#include "util.h"

typedef struct conn {
    hk_stream_t s; /* first member: the stream callbacks cast back */
    int hs_done, hs_status;
    char hs_error[512];
    char text[8192]; /* the first bytes read, as text */
    size_t tlen;
    uint64_t nread, sum; /* all bytes read, and their checksum */
    int eof, rerr, closed;
} conn_t;

static inline void conn_on_hs(hk_stream_t *s, int status, const char *error)
{
    conn_t *c = (conn_t *)s;
    c->hs_done = 1;
    c->hs_status = status;
    snprintf(c->hs_error, sizeof c->hs_error, "%s", error ? error : "");
}

static inline void conn_on_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    conn_t *c = (conn_t *)s;
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            c->sum = c->sum * 31 + (unsigned char)buf->base[i];
        c->nread += (uint64_t)n;
        size_t room = sizeof c->text - 1 - c->tlen;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(c->text + c->tlen, buf->base, take);
        c->tlen += take;
        c->text[c->tlen] = '\0';
    } else if (n == 0) {
        c->eof = 1;
    } else if (n != -EAGAIN) {
        c->rerr = (int)n;
    }
}

static inline void conn_on_close(hk_stream_t *s)
{
    ((conn_t *)s)->closed = 1;
}

/* Wraps fd and starts TLS on it. */
static inline void conn_start(hk_loop_t *loop, conn_t *c, int fd, hk_tls_ctx_t *ctx,
                              hk_tls_role_t role, const char *sni)
{
    memset(c, 0, sizeof *c);
    cr_assert_eq(hk_stream_init(loop, &c->s, fd), 0);
    int r = hk_tls_stream_start(&c->s, ctx, role, sni, conn_on_hs);
    cr_assert_eq(r, 0, "hk_tls_stream_start: %s (%s)", hk_err_name(r), hk_tls_last_error());
}

static inline void conn_handshake(hk_loop_t *loop, conn_t *c)
{
    run_until(loop, &c->hs_done, 10000, "handshake");
    cr_assert_eq(c->hs_status, 0, "handshake: %s (%s)", hk_err_name(c->hs_status), c->hs_error);
    cr_assert_eq(hk_stream_read_start(&c->s, NULL, conn_on_read), 0);
}

struct text_arg {
    conn_t *c;
    const char *needle;
};

/*
 * The test certificate (made with make_certs) in a server context and a
 * client context that trusts it; extra flags for each (HK_TLS_KTLS, ...).
 */
static inline void tls_ctx_pair_new(hk_tls_ctx_t **sctx, hk_tls_ctx_t **cctx, unsigned sflags,
                                    unsigned cflags)
{
    char crt[128], key[128];
    cert_path(crt, sizeof crt, "localhost", "crt");
    cert_path(key, sizeof key, "localhost", "key");
    hk_tls_ctx_options_t so = {.cert_file = crt, .key_file = key, .flags = sflags};
    cr_assert_eq(hk_tls_ctx_new(&so, sctx), 0, "%s", hk_tls_last_error());
    hk_tls_ctx_options_t co = {.ca_file = crt, .flags = cflags};
    cr_assert_eq(hk_tls_ctx_new(&co, cctx), 0, "%s", hk_tls_last_error());
}

/*
 * A TCP pair on loopback, TLS server and client on it, both handshakes done.
 * tiny: 1-byte socket buffers (the kernel rounds them up to its minimum), so
 * that writes meet a full socket early.
 */
static inline void conn_pair_start(hk_loop_t *loop, conn_t *srv, conn_t *cli, hk_tls_ctx_t *sctx,
                                   hk_tls_ctx_t *cctx, int tiny)
{
    int fds[2];
    tcp_pair(fds);
    if (tiny) {
        int one = 1;
        for (int i = 0; i < 2; i++) {
            setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
            setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &one, sizeof one);
        }
    }
    conn_start(loop, srv, fds[0], sctx, HK_TLS_SERVER, NULL);
    conn_start(loop, cli, fds[1], cctx, HK_TLS_CLIENT, "localhost");
    conn_handshake(loop, srv);
    conn_handshake(loop, cli);
}

static inline int text_cond(void *arg)
{
    struct text_arg *a = arg;
    cr_assert_eq(a->c->rerr, 0, "read error %s (%s)", hk_err_name(a->c->rerr), hk_tls_last_error());
    return strstr(a->c->text, a->needle) != NULL;
}

static inline void conn_wait_text(hk_loop_t *loop, conn_t *c, const char *needle)
{
    struct text_arg a = {c, needle};
    run_until_cond(loop, text_cond, &a, 10000, needle);
}

static inline void conn_write_text(conn_t *c, hk_write_req_t *req, struct iovec *iov,
                                   const char *text)
{
    iov->iov_base = (void *)text;
    iov->iov_len = strlen(text);
    int r = hk_stream_write(&c->s, req, iov, 1, NULL);
    cr_assert_geq(r, 0, "write: %s", hk_err_name(r));
}

static inline void conn_close(hk_loop_t *loop, conn_t *c)
{
    hk_stream_close(&c->s, conn_on_close);
    run_until(loop, &c->closed, 5000, "close");
}

#endif
