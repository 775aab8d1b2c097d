/*
 * hark's TLS against the openssl tool: hark as client of `openssl s_server`
 * and as server for `openssl s_client`, both started by the test with pipes
 * on stdin/stdout. Handshakes both ways, TLS 1.2 and 1.3, SNI, ALPN,
 * verification, resumption both ways, and a KeyUpdate sent by s_client in
 * the middle of the stream.
 */
#include "conn.h"

static hk_loop_t *loop;
static child_t peer = {.pid = -1, .in = -1, .out = -1};

static void setup(void)
{
    make_certs();
    loop = new_loop();
}

static void teardown(void)
{
    child_kill(&peer);
    remove_certs();
}

TestSuite(openssl, .init = setup, .fini = teardown, .timeout = 60);

/* Starts s_server with the localhost certificate plus extra arguments; returns its port. */
static int start_s_server(const char *cert, const char *const *extra)
{
    static char port_s[32], crt[128], key[128];
    int port = free_port();
    snprintf(port_s, sizeof port_s, "127.0.0.1:%d", port);
    cert_path(crt, sizeof crt, cert, "crt");
    cert_path(key, sizeof key, cert, "key");
    char *argv[32] = {"openssl", "s_server", "-accept", port_s, "-cert", crt, "-key", key};
    int n = 8;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    child_spawn(&peer, argv);
    run_until_child_says(loop, &peer, "ACCEPT", 10000);
    return port;
}

static hk_tls_ctx_t *client_ctx(unsigned flags, int maxv, const char *const *alpn)
{
    char ca[128];
    cert_path(ca, sizeof ca, "localhost", "crt");
    hk_tls_ctx_options_t o = {.ca_file = ca, .flags = flags, .max_version = maxv, .alpn = alpn};
    hk_tls_ctx_t *ctx = NULL;
    int r = hk_tls_ctx_new(&o, &ctx);
    cr_assert_eq(r, 0, "ctx: %s (%s)", hk_err_name(r), hk_tls_last_error());
    return ctx;
}

/* hark client -> s_server: handshake, data both ways. */
static void client_roundtrip(hk_tls_ctx_t *ctx, int port, conn_t *c, const char *sni)
{
    conn_start(loop, c, connect_port(port), ctx, HK_TLS_CLIENT, sni);
    conn_handshake(loop, c);
    hk_write_req_t req;
    struct iovec iov;
    conn_write_text(c, &req, &iov, "hello-from-hark\n");
    run_until_child_says(loop, &peer, "hello-from-hark", 10000);
    child_send(&peer, "pong-from-s_server\n");
    conn_wait_text(loop, c, "pong-from-s_server");
}

Test(openssl, client_tls13)
{
    int port = start_s_server("localhost", NULL);
    hk_tls_ctx_t *ctx = client_ctx(0, 0, NULL);
    conn_t c;
    client_roundtrip(ctx, port, &c, "localhost");
    cr_expect_eq(hk_tls_stream_version(&c.s), HK_TLS_1_3);
    cr_expect_not_null(hk_tls_stream_cipher(&c.s));
    cr_expect_eq(hk_tls_stream_resumed(&c.s), 0);
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, client_tls12)
{
    int port = start_s_server("localhost", NULL);
    hk_tls_ctx_t *ctx = client_ctx(0, HK_TLS_1_2, NULL);
    conn_t c;
    client_roundtrip(ctx, port, &c, "localhost");
    cr_expect_eq(hk_tls_stream_version(&c.s), HK_TLS_1_2);
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, client_alpn)
{
    const char *extra[] = {"-alpn", "http/1.1", NULL};
    int port = start_s_server("localhost", extra);
    const char *alpn[] = {"h2", "http/1.1", NULL};
    hk_tls_ctx_t *ctx = client_ctx(0, 0, alpn);
    conn_t c;
    client_roundtrip(ctx, port, &c, "localhost");
    char proto[32];
    cr_expect_eq(hk_tls_stream_alpn(&c.s, proto, sizeof proto), 8);
    cr_expect_str_eq(proto, "http/1.1");
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, client_resumes_with_cached_ticket)
{
    int port = start_s_server("localhost", NULL);
    hk_tls_ctx_t *ctx = client_ctx(HK_TLS_SESSION_CACHE, 0, NULL);
    conn_t c;
    client_roundtrip(ctx, port, &c, "localhost"); /* the ticket came before the pong */
    cr_expect_eq(hk_tls_stream_resumed(&c.s), 0);
    conn_close(loop, &c);
    client_roundtrip(ctx, port, &c, "localhost");
    cr_expect_eq(hk_tls_stream_resumed(&c.s), 1, "second connection not resumed");
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, client_rejects_wrong_name)
{
    int port = start_s_server("localhost", NULL);
    hk_tls_ctx_t *ctx = client_ctx(0, 0, NULL);
    conn_t c;
    conn_start(loop, &c, connect_port(port), ctx, HK_TLS_CLIENT, "a.test");
    run_until(loop, &c.hs_done, 10000, "handshake");
    cr_expect_eq(c.hs_status, -EPROTO, "%s", hk_err_name(c.hs_status));
    cr_expect(strstr(c.hs_error, "certificate") != NULL, "error text: %s", c.hs_error);
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

/* A hark server for s_client: default localhost, SNI a.test and b.test, ALPN. */
static hk_tls_ctx_t *server_ctx(void)
{
    static char crt[3][128], key[3][128];
    const char *names[] = {"localhost", "a.test", "b.test"};
    for (int i = 0; i < 3; i++) {
        cert_path(crt[i], sizeof crt[i], names[i], "crt");
        cert_path(key[i], sizeof key[i], names[i], "key");
    }
    hk_tls_cert_t sni[] = {{"a.test", crt[1], key[1]}, {"*.test", crt[2], key[2]}};
    const char *alpn[] = {"h2", "http/1.1", NULL};
    hk_tls_ctx_options_t o = {
        .cert_file = crt[0], .key_file = key[0], .sni_certs = sni, .sni_count = 2, .alpn = alpn};
    hk_tls_ctx_t *ctx = NULL;
    int r = hk_tls_ctx_new(&o, &ctx);
    cr_assert_eq(r, 0, "ctx: %s (%s)", hk_err_name(r), hk_tls_last_error());
    return ctx;
}

struct accept_state {
    int fd;
};

static void on_conn(hk_listener_t *l, int fd)
{
    struct accept_state *a = l->data;
    a->fd = fd;
}

static int accepted(void *arg)
{
    return ((struct accept_state *)arg)->fd >= 0;
}

/* Listens, starts s_client with the given arguments, accepts and starts TLS. */
static void serve_s_client(hk_tls_ctx_t *ctx, conn_t *c, const char *const *extra)
{
    hk_listener_t l;
    struct accept_state a = {-1};
    l.data = &a;
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 16, 0, on_conn), 0);
    static char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", hk_listener_port(&l));
    char *argv[32] = {"openssl", "s_client", "-connect", where};
    int n = 4;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    child_spawn(&peer, argv);
    run_until_cond(loop, accepted, &a, 10000, "accept");
    hk_listener_close(&l, NULL);
    conn_start(loop, c, a.fd, ctx, HK_TLS_SERVER, NULL);
    conn_handshake(loop, c);
}

Test(openssl, server_tls13_sni_alpn)
{
    hk_tls_ctx_t *ctx = server_ctx();
    conn_t c;
    const char *extra[] = {"-servername", "a.test", "-alpn", "http/1.1", "-tls1_3", NULL};
    serve_s_client(ctx, &c, extra);
    cr_expect_eq(hk_tls_stream_version(&c.s), HK_TLS_1_3);
    cr_expect_str_eq(hk_tls_stream_sni(&c.s), "a.test");
    char proto[32];
    hk_tls_stream_alpn(&c.s, proto, sizeof proto);
    cr_expect_str_eq(proto, "http/1.1");
    hk_write_req_t req;
    struct iovec iov;
    conn_write_text(&c, &req, &iov, "hello-s_client\n");
    run_until_child_says(loop, &peer, "hello-s_client", 10000);
    cr_expect(child_saw(&peer, "CN = a.test"), "s_client output: %s", peer.buf);
    child_send(&peer, "from-s_client\n");
    conn_wait_text(loop, &c, "from-s_client");
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, server_tls12_wildcard_sni)
{
    hk_tls_ctx_t *ctx = server_ctx();
    conn_t c;
    const char *extra[] = {"-servername", "b.test", "-tls1_2", NULL};
    serve_s_client(ctx, &c, extra);
    cr_expect_eq(hk_tls_stream_version(&c.s), HK_TLS_1_2);
    hk_write_req_t req;
    struct iovec iov;
    conn_write_text(&c, &req, &iov, "hello-tls12\n");
    run_until_child_says(loop, &peer, "hello-tls12", 10000);
    cr_expect(child_saw(&peer, "CN = b.test"), "s_client output: %s", peer.buf);
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, server_key_update_mid_stream)
{
    hk_tls_ctx_t *ctx = server_ctx();
    conn_t c;
    const char *extra[] = {"-tls1_3", NULL};
    serve_s_client(ctx, &c, extra);
    child_send(&peer, "before-update\n");
    conn_wait_text(loop, &c, "before-update");
    child_send(&peer, "K\n"); /* KeyUpdate, update_requested: we must answer with ours */
    run_until_child_says(loop, &peer, "KEYUPDATE", 10000);
    child_send(&peer, "after-update\n");
    conn_wait_text(loop, &c, "after-update");
    hk_write_req_t req;
    struct iovec iov;
    conn_write_text(&c, &req, &iov, "server-after-update\n");
    run_until_child_says(loop, &peer, "server-after-update", 10000);
    conn_close(loop, &c);
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}

Test(openssl, server_resumption_for_s_client)
{
    hk_tls_ctx_t *ctx = server_ctx();
    char sess[128];
    cert_path(sess, sizeof sess, "session", "pem");
    for (int round = 0; round < 2; round++) {
        conn_t c;
        const char *extra[] = {round ? "-sess_in" : "-sess_out", sess, "-tls1_3", NULL};
        serve_s_client(ctx, &c, extra);
        cr_expect_eq(hk_tls_stream_resumed(&c.s), round, "round %d", round);
        hk_write_req_t req;
        struct iovec iov;
        conn_write_text(&c, &req, &iov, "tickets-are-out\n");
        run_until_child_says(loop, &peer, "tickets-are-out", 10000);
        child_close_stdin(&peer); /* s_client says goodbye and exits */
        run_until(loop, &c.eof, 10000, "close_notify");
        cr_expect(child_wait_exit(&peer, 10000));
        if (round)
            cr_expect(child_saw(&peer, "Reused"), "s_client output: %s", peer.buf);
        child_kill(&peer);
        conn_close(loop, &c);
    }
    hk_tls_ctx_free(ctx);
    finish_loop(loop);
}
