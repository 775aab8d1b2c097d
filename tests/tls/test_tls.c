/*
 * hark's TLS against itself, in one loop: ticket key rotation, large writes
 * both ways through minimal socket buffers, a peer that sends garbage
 * instead of a ClientHello, sendfile (kTLS or the pread fallback), and
 * option errors.
 */
#include "conn.h"
#include "tls/internal.h"

#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

static hk_loop_t *loop;
static hk_tls_ctx_t *sctx, *cctx;

static void setup(void)
{
    make_certs();
    loop = new_loop();
    tls_ctx_pair_new(&sctx, &cctx, HK_TLS_KTLS, HK_TLS_SESSION_CACHE | HK_TLS_KTLS);
}

static void teardown(void)
{
    hk_tls_ctx_free(sctx);
    hk_tls_ctx_free(cctx);
    remove_certs();
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 120);

static void pair_start(conn_t *srv, conn_t *cli, int tiny)
{
    conn_pair_start(loop, srv, cli, sctx, cctx, tiny);
}

/* One connection: handshake, server says hi (after its tickets), close. Returns resumed. */
static int one_connection(void)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 0);
    int resumed = hk_tls_stream_resumed(&cli.s);
    cr_expect_eq(hk_tls_stream_resumed(&srv.s), resumed);
    hk_write_req_t req;
    struct iovec iov;
    conn_write_text(&srv, &req, &iov, "hi\n");
    conn_wait_text(loop, &cli, "hi\n");
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    return resumed;
}

/*
 * Each resumption below uses a session from a full handshake or from a
 * renewed ticket (a TLS 1.3 client does not offer a used ticket again).
 */
Test(tls, ticket_key_rotation)
{
    cr_expect_eq(one_connection(), 0);
    cr_assert_eq(hk_tls_ctx_rotate_ticket_keys(sctx), 0);
    cr_expect_eq(one_connection(), 1, "not resumed with the previous key");
    cr_assert_eq(hk_tls_ctx_rotate_ticket_keys(sctx), 0);
    cr_assert_eq(hk_tls_ctx_rotate_ticket_keys(sctx), 0);
    cr_expect_eq(one_connection(), 0, "resumed with a key rotated out");
    cr_expect_eq(one_connection(), 1, "not resumed with the current key");
    finish_loop(loop);
}

/*
 * With minimal buffers the kernel moves a couple of KiB per delayed ACK, so
 * the volume stays modest; every 16 KiB record still needs many writes.
 */
#define BULK ((size_t)384 << 10)

struct bulk {
    char *data;
    uint64_t sum;
    hk_write_req_t req;
    struct iovec iov;
    int written, shut;
};

static void on_bulk_written(hk_write_req_t *req, int status)
{
    struct bulk *b = req->data;
    cr_assert_eq(status, 0, "bulk write: %s", hk_err_name(status));
    b->written = 1;
}

static void on_shut(hk_stream_t *s, int status)
{
    (void)s;
    cr_assert_eq(status, 0, "shutdown: %s", hk_err_name(status));
}

static void bulk_send(conn_t *c, struct bulk *b, unsigned seed)
{
    b->data = malloc(BULK);
    cr_assert_not_null(b->data);
    b->sum = 0;
    for (size_t i = 0; i < BULK; i++) {
        seed = seed * 1103515245u + 12345u;
        b->data[i] = (char)(seed >> 16);
        b->sum = b->sum * 31 + (unsigned char)b->data[i];
    }
    b->iov.iov_base = b->data;
    b->iov.iov_len = BULK;
    b->req.data = b;
    cr_assert_geq(hk_stream_write(&c->s, &b->req, &b->iov, 1, on_bulk_written), 0);
    cr_assert_eq(hk_stream_shutdown(&c->s, on_shut), 0);
}

static conn_t *bulk_conns[2];

static int bulk_done(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(bulk_conns[i]->rerr, 0, "read: %s (%s)", hk_err_name(bulk_conns[i]->rerr),
                     hk_tls_last_error());
    return bulk_conns[0]->eof && bulk_conns[1]->eof;
}

Test(tls, large_writes_both_ways_tiny_buffers)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 1);
    struct bulk a, b;
    bulk_send(&srv, &a, 1);
    bulk_send(&cli, &b, 2);
    bulk_conns[0] = &srv;
    bulk_conns[1] = &cli;
    /* Zero-window probes pace tiny buffers (about 34 s here, whatever the load): a wide margin. */
    run_until_cond(loop, bulk_done, NULL, 90000, "both directions");
    cr_expect(a.written && b.written);
    cr_expect_eq(cli.nread, BULK);
    cr_expect_eq(srv.nread, BULK);
    cr_expect_eq(cli.sum, a.sum, "server->client bytes differ");
    cr_expect_eq(srv.sum, b.sum, "client->server bytes differ");
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    free(a.data);
    free(b.data);
    finish_loop(loop);
}

Test(tls, garbage_instead_of_client_hello)
{
    int fds[2];
    tcp_pair(fds);
    conn_t srv;
    conn_start(loop, &srv, fds[0], sctx, HK_TLS_SERVER, NULL);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\xff\xff garbage garbage";
    cr_assert_eq(write(fds[1], junk, sizeof junk), (ssize_t)sizeof junk);
    run_until(loop, &srv.hs_done, 10000, "handshake failure");
    cr_expect_eq(srv.hs_status, -EPROTO, "%s", hk_err_name(srv.hs_status));
    cr_expect_neq(srv.hs_error[0], '\0');
    cr_log_info("garbage: %s", srv.hs_error);
    conn_close(loop, &srv);
    /* The fd is closed: the raw peer sees the end (an alert, then EOF or a reset). */
    char buf[256];
    ssize_t n;
    while ((n = read(fds[1], buf, sizeof buf)) > 0)
        ;
    cr_expect(n == 0 || errno == ECONNRESET);
    close(fds[1]);
    /* And the loop goes on serving. */
    cr_expect_eq(one_connection(), 0);
    finish_loop(loop);
}

static void on_file_sent(hk_tls_sendfile_t *req, int status)
{
    cr_assert_eq(status, 0, "sendfile: %s", hk_err_name(status));
    *(int *)req->data = 1;
}

Test(tls, sendfile_between_writes)
{
    char path[128];
    cert_path(path, sizeof path, "file", "bin");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    size_t size = (size_t)256 << 10;
    char *data = malloc(size);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)('a' + i % 26);
    cr_assert_eq(write(fd, data, size), (ssize_t)size);
    conn_t srv, cli;
    pair_start(&srv, &cli, 1);
    cr_log_info("kTLS: kernel %s, connection send=%d recv=%d",
                hk_tls_ktls_supported() ? "supports it" : "has no tls ULP",
                !!(hk_tls_stream_ktls(&srv.s) & HK_TLS_KTLS_SEND),
                !!(hk_tls_stream_ktls(&srv.s) & HK_TLS_KTLS_RECV));
    hk_write_req_t r1, r2;
    struct iovec i1, i2;
    conn_write_text(&srv, &r1, &i1, "<head>");
    hk_tls_sendfile_t sf;
    int sent = 0;
    sf.data = &sent;
    cr_assert_geq(hk_tls_sendfile(&srv.s, &sf, fd, 1000, size - 2000, on_file_sent), 0);
    conn_write_text(&srv, &r2, &i2, "<tail>");
    cr_assert_eq(hk_stream_shutdown(&srv.s, on_shut), 0);
    run_until(loop, &cli.eof, 60000, "end of file");
    cr_expect_eq(sent, 1);
    cr_expect_eq(cli.nread, size - 2000 + 12);
    uint64_t sum = 0;
    const char *parts[] = {"<head>", data + 1000, "<tail>"};
    size_t lens[] = {6, size - 2000, 6};
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < lens[p]; i++)
            sum = sum * 31 + (unsigned char)parts[p][i];
    cr_expect_eq(cli.sum, sum, "file bytes differ");
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    close(fd);
    free(data);
    finish_loop(loop);
}

Test(tls, option_errors)
{
    hk_tls_ctx_t *ctx = NULL;
    hk_tls_ctx_options_t o = {.cert_file = "/nonexistent.crt", .key_file = "/nonexistent.key"};
    cr_expect_eq(hk_tls_ctx_new(&o, &ctx), -EPROTO);
    cr_expect(strstr(hk_tls_last_error(), "/nonexistent.crt") != NULL, "%s", hk_tls_last_error());
    hk_tls_ctx_options_t v = {.min_version = 0x0301};
    cr_expect_eq(hk_tls_ctx_new(&v, &ctx), -EINVAL);
    const char *bad_alpn[] = {"", NULL};
    hk_tls_ctx_options_t a = {.alpn = bad_alpn};
    cr_expect_eq(hk_tls_ctx_new(&a, &ctx), -EINVAL);
    /* A context without a certificate cannot serve. */
    hk_tls_ctx_options_t c = {0};
    cr_assert_eq(hk_tls_ctx_new(&c, &ctx), 0);
    int fds[2];
    tcp_pair(fds);
    hk_stream_t s;
    cr_assert_eq(hk_stream_init(loop, &s, fds[0]), 0);
    cr_expect_eq(hk_tls_stream_start(&s, ctx, HK_TLS_SERVER, NULL, conn_on_hs), -EINVAL);
    cr_expect_eq(hk_tls_stream_version(&s), -EINVAL);
    hk_stream_close(&s, NULL);
    close(fds[1]);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

/* A peer that resets the connection costs one stream an error; the process lives on. */
static int g_reset_status = 1;
static void on_reset_written(hk_write_req_t *req, int status)
{
    (void)req;
    g_reset_status = status;
}

static int reset_seen(void *arg)
{
    (void)arg;
    return g_reset_status != 1;
}

static int reset_read(void *arg)
{
    conn_t *c = arg;
    return c->rerr != 0 || c->eof;
}

Test(tls, peer_reset_is_an_error_not_a_sigpipe)
{
    char crt[128], key[128];
    cert_path(crt, sizeof crt, "localhost", "crt");
    cert_path(key, sizeof key, "localhost", "key");
    hk_tls_ctx_t *s_ctx, *c_ctx; /* no HK_TLS_KTLS: hark's own socket BIO */
    hk_tls_ctx_options_t so = {.cert_file = crt, .key_file = key};
    cr_assert_eq(hk_tls_ctx_new(&so, &s_ctx), 0, "%s", hk_tls_last_error());
    hk_tls_ctx_options_t co = {.ca_file = crt};
    cr_assert_eq(hk_tls_ctx_new(&co, &c_ctx), 0, "%s", hk_tls_last_error());
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test */

    int fds[2];
    tcp_pair(fds);
    conn_t srv, cli;
    conn_start(loop, &srv, fds[0], s_ctx, HK_TLS_SERVER, NULL);
    conn_start(loop, &cli, fds[1], c_ctx, HK_TLS_CLIENT, "localhost");
    conn_handshake(loop, &srv);
    conn_handshake(loop, &cli);

    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    conn_close(loop, &cli); /* RST */
    /* The server's read side sees the reset first; then the write must fail cleanly. */
    run_until_cond(loop, reset_read, &srv, 10000, "the server to see the reset");

    enum { SIZE = 4 << 20 };
    char *data = calloc(1, SIZE);
    struct iovec iov = {.iov_base = data, .iov_len = SIZE};
    hk_write_req_t req;
    int r = hk_stream_write(&srv.s, &req, &iov, 1, on_reset_written);
    cr_assert(r >= 0 || r == -EPIPE || r == -ECONNRESET, "write: %s", hk_err_name(r));
    if (r >= 0)
        run_until_cond(loop, reset_seen, NULL, 10000, "the write to a reset peer to fail");
    cr_assert(r < 0 || g_reset_status < 0, "writing to a reset peer succeeded");
    conn_close(loop, &srv);
    free(data);
    hk_tls_ctx_free(s_ctx);
    hk_tls_ctx_free(c_ctx);
}

/*
 * The BIO itself: writing to a socket whose peer is gone raises SIGPIPE with
 * OpenSSL's socket BIO (write(2)); hark's BIO must return EPIPE instead. With
 * SIGPIPE at its default action, a plain socket BIO would kill this test.
 */
Test(tls, bio_write_to_a_closed_peer_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    BIO *b = hk__tls_bio_new(sv[0]);
    cr_assert_not_null(b);
    errno = 0;
    int n = BIO_write(b, "x", 1);
    cr_assert_lt(n, 1, "a write to a closed peer succeeded");
    cr_assert_eq(errno, EPIPE, "errno %d", errno);
    cr_assert(!BIO_should_retry(b), "EPIPE is not a retry");
    BIO_free(b);
    close(sv[0]);
}
