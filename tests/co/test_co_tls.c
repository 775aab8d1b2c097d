/*
 * TLS for coroutines on plain fds: a coroutine client and a coroutine
 * server of the same runtime exchange 1 MiB each way over sockets with tiny
 * buffers; a coroutine client talks to `openssl s_server`; a server that
 * never answers the ClientHello ends the handshake at its deadline. Only
 * Test() and cr_assert* are used (the ThreadSanitizer stand-in runs it too).
 */
#include <criterion/criterion.h>
#include <hark.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS(x) ((uint64_t)(x)*UINT64_C(1000000))

static char certdir[64], crt[128], key[128];

/* A self-signed P-256 certificate for localhost in a fresh temp dir. */
static void make_cert(void)
{
    signal(SIGPIPE, SIG_IGN);
    strcpy(certdir, "/tmp/hk-cotls-XXXXXX");
    cr_assert_not_null(mkdtemp(certdir));
    snprintf(crt, sizeof crt, "%s/localhost.crt", certdir);
    snprintf(key, sizeof key, "%s/localhost.key", certdir);
    char cmd[768];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, crt);
    cr_assert_eq(system(cmd), 0, "openssl req failed");
}

static void remove_cert(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", certdir);
    cr_assert_eq(system(cmd), 0);
}

static hk_tls_ctx_t *server_ctx(void)
{
    static const char *const alpn[] = {"h2", "http/1.1", NULL};
    hk_tls_ctx_options_t o = {.cert_file = crt, .key_file = key, .alpn = alpn};
    hk_tls_ctx_t *ctx = NULL;
    int r = hk_tls_ctx_new(&o, &ctx);
    cr_assert_eq(r, 0, "%s: %s", hk_strerror(r), hk_tls_last_error());
    return ctx;
}

static hk_tls_ctx_t *client_ctx(void)
{
    static const char *const alpn[] = {"h2", NULL};
    hk_tls_ctx_options_t o = {.ca_file = crt, .alpn = alpn};
    hk_tls_ctx_t *ctx = NULL;
    int r = hk_tls_ctx_new(&o, &ctx);
    cr_assert_eq(r, 0, "%s: %s", hk_strerror(r), hk_tls_last_error());
    return ctx;
}

static hk_co_runtime_t *new_runtime(void)
{
    hk_co_runtime_t *rt = NULL;
    hk_co_runtime_options_t o = {.workers = 2};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    return rt;
}

/* A listener on 127.0.0.1, port chosen by the kernel. */
static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(fd, 4), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* ---- a coroutine client against a coroutine server, 1 MiB each way ---- */

#define TOTAL ((size_t)1 << 20)
#define CHUNK ((size_t)64 * 1024) /* far above the socket buffers: writes must wait */

struct pair {
    hk_tls_ctx_t *sctx, *cctx;
    int lfd, port;
    int server_r, client_r;
    int version;
    char alpn[16];
    size_t got_by_server, got_by_client;
};

/*
 * Small buffers, set before the connection exists so that TCP sizes its
 * window (and window scale) for them: set on an established loopback
 * connection, the kernel's minimum stalls TCP itself in zero-window probes.
 */
#define SMALL 8192

static void small_buffers(int fd)
{
    int size = SMALL;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

/* A client socket with small buffers, connected by the coroutine. */
static int small_connect(int port, uint64_t deadline)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    small_buffers(fd);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int r = hk_co_connect(fd, (struct sockaddr *)&sin, sizeof sin, deadline);
    if (r < 0) {
        hk_co_close(fd);
        return r;
    }
    return fd;
}

static unsigned char pattern(size_t i, int dir)
{
    return (unsigned char)((i * 7 + (i >> 12) + (size_t)dir * 31) & 0xff);
}

static int read_exact(hk_co_tls_t *t, unsigned char *buf, size_t len, uint64_t deadline)
{
    size_t have = 0;
    while (have < len) {
        ssize_t n = hk_co_tls_read(t, buf + have, len - have, deadline);
        if (n <= 0)
            return n == 0 ? -EPIPE : (int)n;
        have += (size_t)n;
    }
    return 0;
}

static void *server_co(void *arg)
{
    struct pair *p = arg;
    uint64_t deadline = hk_time_now() + MS(30000);
    unsigned char *buf = malloc(CHUNK);
    hk_co_tls_t t = HK_CO_TLS_INIT;
    int fd = hk_co_accept(p->lfd, NULL, NULL, deadline);
    int r = fd;
    if (fd >= 0)
        r = hk_co_tls_handshake(&t, fd, p->sctx, HK_TLS_SERVER, NULL, deadline);
    for (size_t off = 0; r >= 0 && off < TOTAL; off += CHUNK) {
        r = read_exact(&t, buf, CHUNK, deadline);
        for (size_t i = 0; r == 0 && i < CHUNK; i++)
            r = buf[i] == pattern(off + i, 0) ? 0 : -EBADMSG;
        if (r == 0)
            p->got_by_server += CHUNK;
        for (size_t i = 0; r == 0 && i < CHUNK; i++)
            buf[i] = pattern(off + i, 1);
        if (r == 0)
            r = (int)hk_co_tls_write(&t, buf, CHUNK, deadline) == (int)CHUNK ? 0 : -EIO;
    }
    /* The client's close_notify, then ours. */
    if (r >= 0)
        r = hk_co_tls_read(&t, buf, 1, deadline) == 0 ? 0 : -EPROTO;
    if (r >= 0)
        r = hk_co_tls_shutdown(&t, deadline);
    p->server_r = r;
    hk_co_tls_free(&t);
    if (fd >= 0)
        hk_co_close(fd);
    free(buf);
    return NULL;
}

static void *client_co(void *arg)
{
    struct pair *p = arg;
    uint64_t deadline = hk_time_now() + MS(30000);
    unsigned char *buf = malloc(CHUNK);
    hk_co_tls_t t = HK_CO_TLS_INIT;
    int fd = small_connect(p->port, deadline);
    int r = fd;
    if (fd >= 0)
        r = hk_co_tls_handshake(&t, fd, p->cctx, HK_TLS_CLIENT, "localhost", deadline);
    if (r >= 0) {
        p->version = hk_co_tls_version(&t);
        hk_co_tls_alpn(&t, p->alpn, sizeof p->alpn);
    }
    for (size_t off = 0; r >= 0 && off < TOTAL; off += CHUNK) {
        for (size_t i = 0; i < CHUNK; i++)
            buf[i] = pattern(off + i, 0);
        r = (int)hk_co_tls_write(&t, buf, CHUNK, deadline) == (int)CHUNK ? 0 : -EIO;
        if (r == 0)
            r = read_exact(&t, buf, CHUNK, deadline);
        for (size_t i = 0; r == 0 && i < CHUNK; i++)
            r = buf[i] == pattern(off + i, 1) ? 0 : -EBADMSG;
        if (r == 0)
            p->got_by_client += CHUNK;
    }
    if (r >= 0)
        r = hk_co_tls_shutdown(&t, deadline);
    if (r >= 0)
        r = hk_co_tls_read(&t, buf, 1, deadline) == 0 ? 0 : -EPROTO;
    if (r >= 0)
        r = hk_co_tls_write(&t, "x", 1, deadline) == -EPIPE ? 0 : -EPROTO;
    p->client_r = r;
    hk_co_tls_free(&t);
    if (fd >= 0)
        hk_co_close(fd);
    free(buf);
    return NULL;
}

static void *pair_main(void *arg)
{
    hk_co_t *s, *c;
    if (hk_co_spawn(NULL, server_co, arg, &(hk_co_attr_t){.name = "tls-server"}, &s) < 0 ||
        hk_co_spawn(NULL, client_co, arg, &(hk_co_attr_t){.name = "tls-client"}, &c) < 0)
        return NULL;
    hk_co_join(s, NULL, HK_FOREVER);
    hk_co_join(c, NULL, HK_FOREVER);
    return (void *)1;
}

Test(co_tls, client_and_server_exchange_1mib_each_way, .timeout = 120)
{
    make_cert();
    struct pair p = {.sctx = server_ctx(), .cctx = client_ctx()};
    p.lfd = listener(&p.port);
    small_buffers(p.lfd); /* accepted sockets inherit them */
    hk_co_runtime_t *rt = new_runtime();
    void *ok = NULL;
    cr_assert_eq(hk_co_run(rt, pair_main, &p, &ok), 0);
    cr_assert_eq(ok, (void *)1);
    cr_assert_eq(p.client_r, 0, "client: %s", hk_strerror(p.client_r));
    cr_assert_eq(p.server_r, 0, "server: %s", hk_strerror(p.server_r));
    cr_assert_eq(p.got_by_server, TOTAL);
    cr_assert_eq(p.got_by_client, TOTAL);
    cr_assert_eq(p.version, HK_TLS_1_3);
    cr_assert_str_eq(p.alpn, "h2");
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    close(p.lfd);
    hk_tls_ctx_free(p.sctx);
    hk_tls_ctx_free(p.cctx);
    remove_cert();
}

/* ---- a wrong name fails verification ---- */

struct verify {
    hk_tls_ctx_t *sctx, *cctx;
    int lfd, port;
    int client_r, server_r;
    char error[512];
};

static void *verify_server(void *arg)
{
    struct verify *v = arg;
    uint64_t deadline = hk_time_now() + MS(10000);
    hk_co_tls_t t = HK_CO_TLS_INIT;
    int fd = hk_co_accept(v->lfd, NULL, NULL, deadline);
    v->server_r = fd < 0 ? fd : hk_co_tls_handshake(&t, fd, v->sctx, HK_TLS_SERVER, NULL, deadline);
    hk_co_tls_free(&t);
    if (fd >= 0)
        hk_co_close(fd);
    return NULL;
}

static void *verify_main(void *arg)
{
    struct verify *v = arg;
    if (hk_co_spawn(NULL, verify_server, v, NULL, NULL) < 0)
        return NULL;
    uint64_t deadline = hk_time_now() + MS(10000);
    hk_co_tls_t t = HK_CO_TLS_INIT;
    int fd = hk_co_tcp_connect("127.0.0.1", (uint16_t)v->port, deadline);
    v->client_r =
        fd < 0 ? fd : hk_co_tls_handshake(&t, fd, v->cctx, HK_TLS_CLIENT, "other.test", deadline);
    snprintf(v->error, sizeof v->error, "%s", hk_tls_last_error());
    hk_co_tls_free(&t);
    if (fd >= 0)
        hk_co_close(fd);
    return (void *)1;
}

Test(co_tls, wrong_name_fails_verification)
{
    make_cert();
    struct verify v = {.sctx = server_ctx(), .cctx = client_ctx()};
    v.lfd = listener(&v.port);
    hk_co_runtime_t *rt = new_runtime();
    cr_assert_eq(hk_co_run(rt, verify_main, &v, NULL), 0);
    cr_assert_eq(v.client_r, -EPROTO, "%s", hk_strerror(v.client_r));
    cr_assert_not_null(strstr(v.error, "handshake"), "%s", v.error);
    cr_assert_lt(v.server_r, 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    close(v.lfd);
    hk_tls_ctx_free(v.sctx);
    hk_tls_ctx_free(v.cctx);
    remove_cert();
}

/* ---- against openssl s_server ---- */

struct child {
    pid_t pid;
    int in, out;
    char buf[16384];
    size_t len;
};

static void spawn(struct child *c, char *const argv[])
{
    int pin[2], pout[2];
    cr_assert_eq(pipe2(pin, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(pout, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(pout[1], 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    fcntl(pout[0], F_SETFL, O_NONBLOCK);
    *c = (struct child){.pid = pid, .in = pin[1], .out = pout[0]};
}

static int saw(struct child *c, const char *needle)
{
    ssize_t n;
    while (c->len + 1 < sizeof c->buf &&
           (n = read(c->out, c->buf + c->len, sizeof c->buf - 1 - c->len)) > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
    return c->len && strstr(c->buf, needle) != NULL;
}

static void kill_child(struct child *c)
{
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    close(c->in);
    close(c->out);
}

struct sserver {
    hk_tls_ctx_t *cctx;
    struct child *child;
    int port;
    int r;
    int got_pong, seen_hello;
};

static void *s_server_client(void *arg)
{
    struct sserver *s = arg;
    uint64_t deadline = hk_time_now() + MS(10000);
    hk_co_tls_t t = HK_CO_TLS_INIT;
    int fd = hk_co_tcp_connect("127.0.0.1", (uint16_t)s->port, deadline);
    int r =
        fd < 0 ? fd : hk_co_tls_handshake(&t, fd, s->cctx, HK_TLS_CLIENT, "localhost", deadline);
    if (r >= 0)
        r = (int)hk_co_tls_write(&t, "hello-from-co\n", 14, deadline);
    /* s_server prints what it received; the test thread cannot look while we run, so poll here. */
    while (r >= 0 && !(s->seen_hello = saw(s->child, "hello-from-co")) && hk_time_now() < deadline)
        hk_co_sleep_until(hk_time_now() + MS(10));
    if (r >= 0 && s->seen_hello)
        r = write(s->child->in, "pong-from-s_server\n", 19) == 19 ? 0 : -EIO;
    char buf[256];
    size_t have = 0;
    while (r >= 0 && have + 1 < sizeof buf) {
        ssize_t n = hk_co_tls_read(&t, buf + have, sizeof buf - 1 - have, deadline);
        if (n <= 0) {
            r = n == 0 ? -EPIPE : (int)n;
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "pong-from-s_server")) {
            s->got_pong = 1;
            break;
        }
    }
    if (r >= 0)
        r = hk_co_tls_shutdown(&t, deadline);
    s->r = r;
    hk_co_tls_free(&t);
    if (fd >= 0)
        hk_co_close(fd);
    return NULL;
}

Test(co_tls, client_against_openssl_s_server)
{
    make_cert();
    struct sserver s = {.cctx = client_ctx()};
    int lfd = listener(&s.port);
    close(lfd); /* s_server takes the port the kernel just gave us */
    char port_s[32];
    snprintf(port_s, sizeof port_s, "127.0.0.1:%d", s.port);
    struct child c;
    char *argv[] = {"openssl", "s_server", "-accept", port_s, "-cert", crt, "-key", key, NULL};
    spawn(&c, argv);
    s.child = &c;
    uint64_t end = hk_time_now() + MS(10000);
    while (!saw(&c, "ACCEPT") && hk_time_now() < end)
        usleep(10000);
    cr_assert(saw(&c, "ACCEPT"), "s_server did not start: %s", c.buf);
    hk_co_runtime_t *rt = new_runtime();
    cr_assert_eq(hk_co_run(rt, s_server_client, &s, NULL), 0);
    kill_child(&c);
    cr_assert_eq(s.r, 0, "%s: %s", hk_strerror(s.r), hk_tls_last_error());
    cr_assert(s.seen_hello);
    cr_assert(s.got_pong);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    hk_tls_ctx_free(s.cctx);
    remove_cert();
}

/* ---- a server that never answers the ClientHello ---- */

struct silent {
    hk_tls_ctx_t *cctx;
    int port;
    int r, again, again_fd;
    uint64_t elapsed;
};

static void *silent_client(void *arg)
{
    struct silent *s = arg;
    hk_co_tls_t t = HK_CO_TLS_INIT;
    int fd = hk_co_tcp_connect("127.0.0.1", (uint16_t)s->port, hk_time_now() + MS(5000));
    if (fd < 0) {
        s->r = fd;
        return NULL;
    }
    uint64_t t0 = hk_time_now();
    s->r = hk_co_tls_handshake(&t, fd, s->cctx, HK_TLS_CLIENT, "localhost", t0 + MS(300));
    s->elapsed = hk_time_now() - t0;
    /* Resumable: 0 tries once more and still finds nothing to read. */
    s->again = hk_co_tls_handshake(&t, fd, s->cctx, HK_TLS_CLIENT, "localhost", 0);
    s->again_fd = hk_co_tls_handshake(&t, fd + 1000, s->cctx, HK_TLS_CLIENT, "localhost", 0);
    hk_co_tls_free(&t);
    hk_co_close(fd);
    return NULL;
}

Test(co_tls, handshake_deadline_against_a_silent_server)
{
    make_cert();
    struct silent s = {.cctx = client_ctx()};
    /* Never accepted: the kernel completes the connection, nobody reads the ClientHello. */
    int lfd = listener(&s.port);
    hk_co_runtime_t *rt = new_runtime();
    cr_assert_eq(hk_co_run(rt, silent_client, &s, NULL), 0);
    cr_assert_eq(s.r, -ETIMEDOUT, "%s", hk_strerror(s.r));
    cr_assert_geq(s.elapsed, MS(300));
    cr_assert_lt(s.elapsed, MS(2000));
    cr_assert_eq(s.again, -ETIMEDOUT, "%s", hk_strerror(s.again));
    cr_assert_eq(s.again_fd, -EINVAL);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    close(lfd);
    hk_tls_ctx_free(s.cctx);
    remove_cert();
}
