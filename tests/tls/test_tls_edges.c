/*
 * TLS streams at the edges a review probed: try_write meeting a full socket
 * (OpenSSL has sealed the bytes: the stream must keep them), a sendfile
 * request that fails and the next one on the same connection, a KeyUpdate
 * that arrives while the server's write is stuck, and an uncork after close.
 */
#include "conn.h"
#include "support/turkish_locale.h"
#include "tls/internal.h"

#include <signal.h>
#include <sys/socket.h>

static hk_loop_t *loop;
static hk_tls_ctx_t *sctx, *cctx;

static void setup(void)
{
    make_certs();
    loop = new_loop();
    tls_ctx_pair_new(&sctx, &cctx, 0, 0);
}

static void teardown(void)
{
    hk_tls_ctx_free(sctx);
    hk_tls_ctx_free(cctx);
    remove_certs();
}

TestSuite(tls_edges, .init = setup, .fini = teardown, .timeout = 120);

static void pair_start(conn_t *srv, conn_t *cli, int tiny)
{
    conn_pair_start(loop, srv, cli, sctx, cctx, tiny);
}

/* What the client received: counts of 'A' and 'B', and whether an A came after a B. */
static size_t got_a, got_b;
static int a_after_b, rd_err;
static void count_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    (void)s;
    if (n < 0 && n != -EAGAIN)
        rd_err = (int)n;
    for (ssize_t i = 0; i < n; i++) {
        if (buf->base[i] == 'A') {
            got_a++;
            if (got_b)
                a_after_b = 1;
        } else if (buf->base[i] == 'B') {
            got_b++;
        }
    }
}

static int wdone, wstatus;
static void on_w(hk_write_req_t *req, int status)
{
    (void)req;
    wdone = 1;
    wstatus = status;
}

static int all_in(void *arg)
{
    size_t want = *(size_t *)arg;
    return rd_err || (wdone && got_a + got_b >= want);
}

/*
 * hk_stream_try_write says -EAGAIN ("nothing written, the fd is full"), but
 * OpenSSL has already sealed those bytes into a record it will send first.
 * A caller that then writes other bytes gets the old ones on the wire.
 */
Test(tls_edges, try_write_eagain_keeps_the_sealed_bytes)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 1);
    cr_assert_eq(hk_stream_read_stop(&cli.s), 0);
    static char a[1000];
    memset(a, 'A', sizeof a);
    struct iovec ia = {a, sizeof a};
    size_t accepted = 0;
    ssize_t w;
    while ((w = hk_stream_try_write(&srv.s, &ia, 1)) > 0)
        accepted += (size_t)w;
    cr_assert_eq(w, -EAGAIN, "try_write: %s", hk_err_name((int)w));
    /* The caller was told nothing of that last buffer went out; it sends something else. */
    static char b[2000];
    memset(b, 'B', sizeof b);
    struct iovec ib = {b, sizeof b};
    hk_write_req_t req;
    cr_assert_geq(hk_stream_write(&srv.s, &req, &ib, 1, on_w), 0);
    cr_assert_eq(hk_stream_read_start(&cli.s, NULL, count_read), 0);
    size_t want = accepted + sizeof b;
    run_until_cond(loop, all_in, &want, 20000, "all bytes");
    cr_expect_eq(rd_err, 0, "read error %s", hk_err_name(rd_err));
    cr_expect_eq(wstatus, 0, "write status %s", hk_err_name(wstatus));
    cr_expect_eq(got_a, accepted, "client got %zu 'A' bytes, try_write reported %zu written", got_a,
                 accepted);
    cr_expect_eq(got_b, sizeof b, "client got %zu 'B' bytes of %zu", got_b, sizeof b);
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    finish_loop(loop);
}

/*
 * A sendfile request that fails (peer reset) stays on the connection's list of
 * file requests: the next hk_tls_sendfile links the new request to the old,
 * already completed (here freed) one.
 */
static int sf_fd = -1, sf_status = 1, sf_second = 1;
static void on_sf2(hk_tls_sendfile_t *req, int status)
{
    (void)req;
    (void)status;
}
static void on_sf1(hk_tls_sendfile_t *req, int status)
{
    hk_stream_t *s = req->stream;
    sf_status = status;
    free(req); /* the request is done: its memory goes back */
    /* The application's next response on this connection (refused: the stream is dead). */
    static hk_tls_sendfile_t next;
    sf_second = hk_tls_sendfile(s, &next, sf_fd, 0, 4096, on_sf2);
}
static int sf_failed(void *arg)
{
    (void)arg;
    return sf_status != 1;
}

Test(tls_edges, sendfile_after_a_failed_sendfile)
{
    char path[128];
    cert_path(path, sizeof path, "file", "bin");
    sf_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(sf_fd, 0);
    size_t size = (size_t)1 << 20;
    char *data = calloc(1, size);
    cr_assert_eq(write(sf_fd, data, size), (ssize_t)size);
    signal(SIGPIPE, SIG_IGN);
    conn_t srv, cli;
    pair_start(&srv, &cli, 1);
    cr_assert_eq(hk_stream_read_stop(&cli.s), 0);
    hk_tls_sendfile_t *sf = malloc(sizeof *sf);
    cr_assert_geq(hk_tls_sendfile(&srv.s, sf, sf_fd, 0, size, on_sf1), 0);
    for (int i = 0; i < 5; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(cli.s.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    conn_close(loop, &cli); /* RST */
    run_until_cond(loop, sf_failed, NULL, 10000, "the sendfile to fail");
    cr_expect_lt(sf_status, 0);
    cr_expect_lt(sf_second, 0);
    conn_close(loop, &srv);
    close(sf_fd);
    free(data);
    finish_loop(loop);
}

/*
 * KeyUpdate (update requested) arriving while the server's own write is stuck
 * on a full socket: the server must answer it without breaking the stream.
 */
static conn_t *ku_srv, *ku_cli;
static int ku_written = 0, ku_wstatus = 1;
static void on_ku_written(hk_write_req_t *req, int status)
{
    (void)req;
    ku_written = 1;
    ku_wstatus = status;
}
static int ku_done(void *arg)
{
    size_t want = *(size_t *)arg;
    return ku_srv->rerr || ku_cli->rerr || ku_wstatus < 0 || (ku_written && ku_cli->nread >= want);
}

Test(tls_edges, key_update_while_write_pending)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 1);
    ku_srv = &srv;
    ku_cli = &cli;
    cr_assert_eq(hk_stream_read_stop(&cli.s), 0);
    size_t size = (size_t)256 << 10;
    char *data = malloc(size);
    uint64_t sum = 0;
    for (size_t i = 0; i < size; i++) {
        data[i] = (char)(i * 7 + 3);
        sum = sum * 31 + (unsigned char)data[i];
    }
    struct iovec iov = {data, size};
    hk_write_req_t req;
    cr_assert_geq(hk_stream_write(&srv.s, &req, &iov, 1, on_ku_written), 0);
    for (int i = 0; i < 20; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_gt(hk_stream_queued(&srv.s), 0, "the server's write is not stuck");
    /* The client asks for a key update and sends a byte to carry it. */
    cr_assert_eq(SSL_key_update(hk__tls_conn(&cli.s)->ssl, SSL_KEY_UPDATE_REQUESTED), 1);
    hk_write_req_t creq;
    struct iovec civ;
    conn_write_text(&cli, &creq, &civ, "k");
    struct text_arg ta = {&srv, "k"};
    run_until_cond(loop, text_cond, &ta, 10000, "the server to read the byte");
    cr_assert_eq(hk_stream_read_start(&cli.s, NULL, conn_on_read), 0);
    run_until_cond(loop, ku_done, &size, 60000, "the bulk");
    cr_expect_eq(srv.rerr, 0, "server read: %s (%s)", hk_err_name(srv.rerr), hk_tls_last_error());
    cr_expect_eq(cli.rerr, 0, "client read: %s (%s)", hk_err_name(cli.rerr), hk_tls_last_error());
    cr_expect_eq(ku_wstatus, 0, "bulk write: %s", hk_err_name(ku_wstatus));
    cr_expect_eq(cli.nread, size);
    cr_expect_eq(cli.sum, sum);
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    free(data);
    finish_loop(loop);
}

Test(tls_edges, uncork_after_close)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 0);
    hk_write_req_t req;
    struct iovec iov;
    hk_stream_cork(&srv.s);
    conn_write_text(&srv, &req, &iov, "held");
    hk_stream_close(&srv.s, conn_on_close);
    hk_stream_uncork(&srv.s);
    run_until(loop, &srv.closed, 5000, "close");
    conn_close(loop, &cli);
    finish_loop(loop);
}

/*
 * The peer's last bytes and its close_notify arrive together (read-ahead
 * takes both in one recv) and the peer then waits for our close_notify with
 * its TCP side still open: no further fd event comes, so the end of file
 * must be delivered without one.
 */
static int eof_cond(void *arg)
{
    conn_t *c = arg;
    return c->eof || c->rerr;
}

Test(tls_edges, close_notify_behind_data_is_delivered)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 0);
    cr_assert_eq(hk_stream_read_stop(&cli.s), 0);
    SSL *ssl = hk__tls_conn(&cli.s)->ssl;
    size_t n = 0;
    cr_assert_eq(SSL_write_ex(ssl, "last words", 10, &n), 1);
    cr_assert_eq(SSL_shutdown(ssl), 0); /* close_notify sent, the socket stays open */
    run_until_cond(loop, eof_cond, &srv, 10000, "the server to see the end of file");
    cr_expect_str_eq(srv.text, "last words");
    cr_expect_eq(srv.rerr, 0, "read error %s", hk_err_name(srv.rerr));
    cr_expect_eq(srv.eof, 1);
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    finish_loop(loop);
}

/* A certificate for the address 127.0.0.1 only (SAN IP:127.0.0.1), in certdir as ip.crt/ip.key. */
static void make_ip_cert(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s/ip.key "
             "-out %s/ip.crt >/dev/null 2>&1",
             certdir, certdir);
    cr_assert_eq(system(cmd), 0, "openssl req failed");
}

/* A server context with the address certificate, and a client context that trusts it. */
static void ip_ctx_pair(hk_tls_ctx_t **s_ip, hk_tls_ctx_t **c_ip, unsigned cflags)
{
    make_ip_cert();
    char crt[128], key[128];
    cert_path(crt, sizeof crt, "ip", "crt");
    cert_path(key, sizeof key, "ip", "key");
    hk_tls_ctx_options_t so = {.cert_file = crt, .key_file = key};
    cr_assert_eq(hk_tls_ctx_new(&so, s_ip), 0, "%s", hk_tls_last_error());
    hk_tls_ctx_options_t co = {.ca_file = crt, .flags = cflags};
    cr_assert_eq(hk_tls_ctx_new(&co, c_ip), 0, "%s", hk_tls_last_error());
}

/* A client handshake to a server of sctx_ip with name; returns the client's status. */
static int ip_handshake(hk_tls_ctx_t *s_ctx, hk_tls_ctx_t *c_ctx, const char *name, conn_t *srv,
                        conn_t *cli)
{
    int fds[2];
    tcp_pair(fds);
    conn_start(loop, srv, fds[0], s_ctx, HK_TLS_SERVER, NULL);
    conn_start(loop, cli, fds[1], c_ctx, HK_TLS_CLIENT, name);
    run_until(loop, &cli->hs_done, 10000, "client handshake");
    run_until(loop, &srv->hs_done, 10000, "server handshake");
    return cli->hs_status;
}

static void ip_close(conn_t *srv, conn_t *cli)
{
    hk_stream_close(&srv->s, NULL);
    hk_stream_close(&cli->s, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
}

/*
 * The client session cache keys a session by the name the connection was
 * given. An address is not sent as SNI, so the session must not be filed
 * under "no name" (where a lookup by the address never finds it, and a
 * connection without a name would be offered it): the second connection to
 * 127.0.0.1 resumes.
 */
Test(tls_edges, session_for_an_address_resumes)
{
    hk_tls_ctx_t *s_ip, *c_ip;
    ip_ctx_pair(&s_ip, &c_ip, HK_TLS_SESSION_CACHE);
    for (int round = 0; round < 2; round++) {
        conn_t srv, cli;
        int st = ip_handshake(s_ip, c_ip, "127.0.0.1", &srv, &cli);
        cr_assert_eq(st, 0, "%s (%s)", hk_err_name(st), cli.hs_error);
        cr_assert_eq(hk_tls_stream_resumed(&cli.s), round, "round %d", round);
        /* Data after the handshake, so that the client has read the server's tickets. */
        cr_assert_eq(hk_stream_read_start(&cli.s, NULL, conn_on_read), 0);
        hk_write_req_t req;
        struct iovec iov;
        conn_write_text(&srv, &req, &iov, "ticket-time");
        conn_wait_text(loop, &cli, "ticket-time");
        ip_close(&srv, &cli);
    }
    hk_tls_ctx_free(s_ip);
    hk_tls_ctx_free(c_ip);
}

/*
 * A client given an address as its server name: it is not sent as SNI
 * (RFC 6066 allows host names only; it used to be sent), and it is checked
 * against the certificate's IP entries: another address, or a certificate
 * that names only localhost, fails verification.
 */
Test(tls_edges, address_verified_as_an_address_and_not_sent_as_sni)
{
    hk_tls_ctx_t *s_ip, *c_ip;
    ip_ctx_pair(&s_ip, &c_ip, 0);
    conn_t srv, cli;

    int st = ip_handshake(s_ip, c_ip, "127.0.0.1", &srv, &cli);
    cr_assert_eq(st, 0, "127.0.0.1 against its certificate: %s (%s)", hk_err_name(st),
                 cli.hs_error);
    cr_assert_null(hk_tls_stream_sni(&srv.s), "the server got SNI %s", hk_tls_stream_sni(&srv.s));
    cr_assert_null(hk_tls_stream_sni(&cli.s));
    ip_close(&srv, &cli);

    st = ip_handshake(s_ip, c_ip, "127.0.0.2", &srv, &cli);
    cr_assert_lt(st, 0, "127.0.0.2 accepted a certificate for 127.0.0.1");
    ip_close(&srv, &cli);

    /* The localhost certificate (DNS:localhost) does not vouch for 127.0.0.1. */
    st = ip_handshake(sctx, cctx, "127.0.0.1", &srv, &cli);
    cr_assert_lt(st, 0, "a certificate for localhost was accepted for 127.0.0.1");
    ip_close(&srv, &cli);

    /* A host name still goes out as SNI. */
    st = ip_handshake(sctx, cctx, "localhost", &srv, &cli);
    cr_assert_eq(st, 0, "%s", cli.hs_error);
    cr_assert_str_eq(hk_tls_stream_sni(&srv.s), "localhost");
    ip_close(&srv, &cli);
    hk_tls_ctx_free(s_ip);
    hk_tls_ctx_free(c_ip);
}

/*
 * SNI names match ASCII case-insensitively in any locale: under a Turkish
 * one, tolower('I') is a dotless i, and a certificate for images.example.com
 * (or *.example.com) used to stop matching a client that wrote IMAGES. Bytes
 * outside ASCII are not folded at all.
 */
Test(tls_edges, sni_names_fold_ascii_only_in_any_locale)
{
    char dir[] = "/tmp/hk-locale-XXXXXX";
    turkish_locale_enter(dir);
    int exact = hk__tls_name_match("images.example.com", "IMAGES.EXAMPLE.COM");
    int wild = hk__tls_name_match("*.example.com", "WWW.IMAGES.EXAMPLE.COM");
    int wild1 = hk__tls_name_match("*.example.com", "IMAGES.EXAMPLE.COM");
    int latin = hk__tls_name_match("\xe9t\xe9.test", "\xc9T\xc9.TEST");
    turkish_locale_leave(dir);
    cr_assert_eq(exact, 1, "IMAGES.EXAMPLE.COM did not match images.example.com");
    cr_assert_eq(wild, 0, "a wildcard covers one label only");
    cr_assert_eq(wild1, 1, "IMAGES.EXAMPLE.COM did not match *.example.com");
    cr_assert_eq(latin, 0, "bytes outside ASCII were folded");
}

/*
 * A caller buffer much smaller than a record: one record decrypted by
 * OpenSSL fills many reads, and everything after the stream's per-wake-up
 * read limit stays in OpenSSL (SSL_pending), where epoll cannot see it. The
 * peer has nothing more to send, so no fd event would ever bring it.
 */
static char small_buf[16];
static void small_alloc(hk_stream_t *s, size_t suggested, hk_buf_t *buf)
{
    (void)s;
    (void)suggested;
    buf->base = small_buf;
    buf->len = sizeof small_buf;
}

struct nread_arg {
    conn_t *c;
    uint64_t want;
};

static int nread_reached(void *arg)
{
    struct nread_arg *a = arg;
    return a->c->rerr || a->c->nread >= a->want;
}

Test(tls_edges, small_caller_buffer_reads_the_whole_record)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 0);
    cr_assert_eq(hk_stream_read_stop(&srv.s), 0);
    cr_assert_eq(hk_stream_read_start(&srv.s, small_alloc, conn_on_read), 0);
    static char data[4000];
    memset(data, 'r', sizeof data);
    struct iovec iov = {data, sizeof data};
    hk_write_req_t req;
    cr_assert_geq(hk_stream_write(&cli.s, &req, &iov, 1, NULL), 0);
    struct nread_arg na = {&srv, sizeof data};
    run_until_cond(loop, nread_reached, &na, 5000, "the whole record in 16-byte reads");
    cr_expect_eq(srv.rerr, 0, "read error %s", hk_err_name(srv.rerr));
    cr_expect_eq(srv.nread, sizeof data);
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    finish_loop(loop);
}

/*
 * A reader that stopped reading (backpressure) while its last SSL_read had
 * met WANT_READ, with writes queued on a full socket and the peer's bytes
 * waiting in the kernel: the loop must sleep until the socket drains, not
 * wake for the bytes the caller does not want yet, over and over.
 */
static int spin_tick;
static void on_spin_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
    spin_tick = 1;
}

Test(tls_edges, stopped_reader_with_queued_writes_does_not_spin)
{
    conn_t srv, cli;
    pair_start(&srv, &cli, 1);
    /* The client's first read took the server's session tickets and then met WANT_READ. */
    for (int i = 0; i < 20 && hk__tls_conn(&cli.s)->rwant != HK_READABLE; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_eq(hk__tls_conn(&cli.s)->rwant, HK_READABLE, "no read met WANT_READ");
    cr_assert_eq(hk_stream_read_stop(&srv.s), 0);
    cr_assert_eq(hk_stream_read_stop(&cli.s), 0);
    size_t size = (size_t)1 << 20;
    char *data = malloc(size);
    memset(data, 'w', size);
    struct iovec iov = {data, size};
    hk_write_req_t req;
    cr_assert_geq(hk_stream_write(&cli.s, &req, &iov, 1, NULL), 0);
    hk_write_req_t sreq;
    struct iovec siv;
    conn_write_text(&srv, &sreq, &siv, "unread");
    for (int i = 0; i < 20; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_gt(hk_stream_queued(&cli.s), 0, "the client's write is not stuck");
    hk_timer_t t;
    hk_timer_init(loop, &t);
    spin_tick = 0;
    hk_timer_start_in(&t, on_spin_tick, MS(300), 0);
    hk_loop_stats_t before, after;
    hk_loop_stats(loop, &before);
    while (!spin_tick)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    hk_loop_stats(loop, &after);
    hk_close(&t.base, NULL);
    /* Asleep, the loop wakes for the timer and maybe a few TCP window probes. */
    uint64_t iterations = after.iterations - before.iterations;
    cr_expect_lt(iterations, 50, "%llu loop iterations in 300 ms", (unsigned long long)iterations);
    conn_close(loop, &cli);
    conn_close(loop, &srv);
    free(data);
    finish_loop(loop);
}
