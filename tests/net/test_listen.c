/*
 * Listeners and connectors on loopback: IPv4, IPv6 and Unix sockets, ports
 * from bind(0), refused and timed-out connects, cancellation, batched
 * accepts, and the numeric address parser.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/un.h>

struct acc {
    int fds[256];
    int n;
};

static void on_conn(hk_listener_t *l, int fd)
{
    struct acc *a = l->data;
    cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK, "accepted fds are non-blocking");
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "and close-on-exec");
    if (a->n < 256)
        a->fds[a->n++] = fd;
    else
        close(fd);
}

struct conn {
    int fd, done;
};

static void on_connected(hk_connect_t *req, int fd)
{
    struct conn *c = req->data;
    c->fd = fd;
    c->done = 1;
}

static void listen_and_connect(const char *listen_addr, const char *fmt)
{
    hk_loop_t *loop = new_loop();
    hk_listener_t l;
    struct acc a = {.n = 0};
    l.data = &a;
    int r =
        hk_tcp_listen(loop, &l, listen_addr, 0, HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE, on_conn);
    cr_assert_eq(r, 0, "listen %s: %s", listen_addr, hk_err_name(r));
    int port = hk_listener_port(&l);
    cr_assert_gt(port, 0);
    char addr[64];
    snprintf(addr, sizeof addr, fmt, port);
    hk_connect_t req;
    struct conn c = {-1, 0};
    req.data = &c;
    r = hk_tcp_connect(loop, &req, addr, hk_time_now() + (uint64_t)MS(5000),
                       HK_CONNECT_NODELAY | HK_CONNECT_KEEPALIVE, on_connected);
    cr_assert_eq(r, 0, "connect %s: %s", addr, hk_err_name(r));
    cr_assert_eq(c.done, 0, "the callback runs from the loop");
    while (!c.done || a.n < 1)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_geq(c.fd, 0, "connect: %s", hk_err_name(c.fd));
    int on = 0;
    socklen_t len = sizeof on;
    cr_assert_eq(getsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    cr_assert(on, "TCP_NODELAY set on the connected socket");
    cr_assert_eq(getsockopt(a.fds[0], IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    cr_assert(on, "TCP_NODELAY set on the accepted socket");
    cr_assert_eq(getsockopt(c.fd, SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
    cr_assert(on, "keep-alive on");
    cr_assert_eq(getsockopt(a.fds[0], SOL_SOCKET, SO_KEEPALIVE, &on, &len), 0);
    cr_assert(on, "keep-alive on the accepted socket");
    cr_assert_eq(getsockopt(a.fds[0], IPPROTO_TCP, TCP_KEEPIDLE, &on, &len), 0);
    cr_assert_eq(on, 60, "the accepted socket's keep-alive idle time");
    cr_assert_eq(write(c.fd, "ping", 4), 4);
    char buf[8];
    usleep(1000);
    cr_assert_eq(read(a.fds[0], buf, sizeof buf), 4);
    cr_assert_eq(l.stats.accepts, 1);
    close(c.fd);
    close(a.fds[0]);
    hk_listener_close(&l, NULL);
    finish_loop(loop);
}

Test(listen, tcp_ipv4)
{
    listen_and_connect("127.0.0.1:0", "127.0.0.1:%d");
}

Test(listen, tcp_ipv6)
{
    listen_and_connect("[::1]:0", "[::1]:%d");
}

Test(listen, tcp_refused)
{
    hk_loop_t *loop = new_loop();
    hk_listener_t l;
    struct acc a = {.n = 0};
    l.data = &a;
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 0, 0, on_conn), 0);
    int port = hk_listener_port(&l);
    hk_listener_close(&l, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    hk_connect_t req;
    struct conn c = {0, 0};
    req.data = &c;
    cr_assert_eq(hk_tcp_connect(loop, &req, addr, HK_FOREVER, 0, on_connected), 0);
    run_until(loop, &c.done, 5000);
    cr_assert_eq(c.fd, -ECONNREFUSED, "got %s", hk_err_name(c.fd));
    finish_loop(loop);
}

/* A listener whose accept queue is full drops SYNs: the connect hangs until the deadline. */
Test(listen, tcp_deadline)
{
    hk_loop_t *loop = new_loop();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    socklen_t sl = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sin.sin_port));
    /* Fill the accept queue (nobody accepts). */
    int fill[8];
    for (int i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        (void)connect(fill[i], (struct sockaddr *)&sin, sizeof sin);
    }
    usleep(20000);
    hk_connect_t req;
    struct conn c = {0, 0};
    req.data = &c;
    uint64_t t0 = hk_time_now();
    cr_assert_eq(hk_tcp_connect(loop, &req, addr, t0 + (uint64_t)MS(200), 0, on_connected), 0);
    run_until(loop, &c.done, 5000);
    uint64_t took = hk_time_now() - t0;
    cr_assert_eq(c.fd, -ETIMEDOUT, "got %s", hk_err_name(c.fd));
    cr_assert_geq(took, (uint64_t)MS(190));
    cr_assert_lt(took, (uint64_t)MS(2000));
    for (int i = 0; i < 8; i++)
        close(fill[i]);
    close(lfd);
    finish_loop(loop);
}

Test(listen, connect_cancel)
{
    hk_loop_t *loop = new_loop();
    hk_listener_t l;
    struct acc a = {.n = 0};
    l.data = &a;
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 0, 0, on_conn), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", hk_listener_port(&l));
    hk_connect_t req;
    struct conn c = {0, 0};
    req.data = &c;
    cr_assert_eq(hk_tcp_connect(loop, &req, addr, HK_FOREVER, 0, on_connected), 0);
    cr_assert_eq(hk_connect_cancel(&req), 0);
    cr_assert_eq(hk_connect_cancel(&req), -EALREADY);
    cr_assert_eq(c.done, 0);
    run_until(loop, &c.done, 5000);
    cr_assert_eq(c.fd, -ECANCELED);
    hk_listener_close(&l, NULL);
    for (int i = 0; i < 5; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
    for (int i = 0; i < a.n; i++)
        close(a.fds[i]);
    finish_loop(loop);
}

static void unix_roundtrip(const char *path)
{
    hk_loop_t *loop = new_loop();
    hk_listener_t l;
    struct acc a = {.n = 0};
    l.data = &a;
    int r = hk_unix_listen(loop, &l, path, 0, 0, on_conn);
    cr_assert_eq(r, 0, "unix listen %s: %s", path, hk_err_name(r));
    cr_assert_eq(hk_listener_port(&l), -EAFNOSUPPORT);
    hk_listener_t l2;
    cr_assert_eq(hk_unix_listen(loop, &l2, path, 0, 0, on_conn), -EADDRINUSE);
    hk_connect_t req;
    struct conn c = {-1, 0};
    req.data = &c;
    cr_assert_eq(hk_unix_connect(loop, &req, path, HK_FOREVER, on_connected), 0);
    while (!c.done || a.n < 1)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_geq(c.fd, 0, "unix connect: %s", hk_err_name(c.fd));
    cr_assert_eq(write(c.fd, "u", 1), 1);
    char ch;
    usleep(1000);
    cr_assert_eq(read(a.fds[0], &ch, 1), 1);
    close(c.fd);
    close(a.fds[0]);
    hk_listener_close(&l, NULL);
    finish_loop(loop);
}

Test(listen, unix_path)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/hk-net-test-%d.sock", (int)getpid());
    unlink(path);
    unix_roundtrip(path);
    unlink(path);
}

Test(listen, unix_abstract)
{
    char path[64];
    snprintf(path, sizeof path, "@hk-net-test-%d", (int)getpid());
    unix_roundtrip(path);
}

Test(listen, unix_refused)
{
    hk_loop_t *loop = new_loop();
    hk_connect_t req;
    struct conn c = {0, 0};
    req.data = &c;
    cr_assert_eq(hk_unix_connect(loop, &req, "/nonexistent/hk.sock", HK_FOREVER, on_connected), 0);
    cr_assert_eq(c.done, 0);
    run_until(loop, &c.done, 5000);
    cr_assert_eq(c.fd, -ENOENT, "got %s", hk_err_name(c.fd));
    finish_loop(loop);
}

/* A connection storm: each wake-up accepts at most a batch. */
Test(listen, batch_bounded)
{
    hk_loop_t *loop = new_loop();
    hk_listener_t l;
    struct acc a = {.n = 0};
    l.data = &a;
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 256, 0, on_conn), 0);
    cr_assert_eq(hk_listener_set_batch(&l, 0), -EINVAL);
    cr_assert_eq(hk_listener_set_batch(&l, 8), 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)hk_listener_port(&l))};
    int cl[40];
    for (int i = 0; i < 40; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(connect(cl[i], (struct sockaddr *)&sin, sizeof sin), 0);
    }
    cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    cr_assert_eq(a.n, 8, "one wake-up accepts one batch (%d)", a.n);
    while (a.n < 40)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_geq(l.stats.wakeups, 5);
    cr_assert_eq(l.stats.accepts, 40);
    for (int i = 0; i < 40; i++) {
        close(cl[i]);
        close(a.fds[i]);
    }
    hk_listener_close(&l, NULL);
    finish_loop(loop);
}

Test(listen, errors)
{
    hk_loop_t *loop = new_loop();
    hk_listener_t l;
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1", 0, 0, on_conn), -EINVAL);
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 0, 0x1000, on_conn), -EINVAL);
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 0, 0, NULL), -EINVAL);
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 0, HK_LISTEN_SHARED, on_conn), -EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    cr_assert_eq(hk_unix_listen(loop, &l, longp, 0, 0, on_conn), -ENAMETOOLONG);
    hk_connect_t req;
    cr_assert_eq(hk_tcp_connect(loop, &req, "nope", HK_FOREVER, 0, on_connected), -EINVAL);
    cr_assert_eq(hk_tcp_connect(loop, &req, "127.0.0.1:1", HK_DEADLINE_MAX, 0, on_connected),
                 -EINVAL);
    /* Two listeners on one port without REUSEPORT: the second is refused. */
    struct acc a = {.n = 0};
    l.data = &a;
    cr_assert_eq(hk_tcp_listen(loop, &l, "127.0.0.1:0", 0, 0, on_conn), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", hk_listener_port(&l));
    hk_listener_t l2;
    cr_assert_eq(hk_tcp_listen(loop, &l2, addr, 0, 0, on_conn), -EADDRINUSE);
    hk_listener_close(&l, NULL);
    finish_loop(loop);
}

Test(addr, parse_and_format)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[80];
    static const char *good[] = {"127.0.0.1:80", "[::1]:0", "[::]:65535", "0.0.0.0:1",
                                 "[fe80::1%2]:443"};
    for (unsigned i = 0; i < sizeof good / sizeof *good; i++) {
        cr_assert_eq(hk_addr_parse(good[i], &ss, &len), 0, "%s", good[i]);
        cr_assert_gt(hk_addr_format((struct sockaddr *)&ss, len, buf, sizeof buf), 0);
        cr_assert_str_eq(buf, good[i]);
    }
    cr_assert_eq(hk_addr_parse(":8080", &ss, &len), 0);
    cr_assert_eq(hk_addr_format((struct sockaddr *)&ss, len, buf, sizeof buf), 12);
    cr_assert_str_eq(buf, "0.0.0.0:8080");
    static const char *bad[] = {"",
                                "127.0.0.1",
                                "127.0.0.1:",
                                "127.0.0.1:65536",
                                "1.2.3.4:-1",
                                "1.2.3.4: 80",
                                "::1:80",
                                "[::1]",
                                "[::1]80",
                                "[]:80",
                                "[::1%]:80",
                                "[::1%x]:80",
                                "host:80",
                                "1.2.3:80",
                                "1.2.3.4:80x",
                                "[1.2.3.4]:80",
                                "1.2.3.4:+80",
                                "[::1]:99999999999999999999"};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(hk_addr_parse(bad[i], &ss, &len), -EINVAL, "'%s' must be refused", bad[i]);
    cr_assert_eq(hk_addr_parse("127.0.0.1:80", &ss, &len), 0);
    cr_assert_eq(hk_addr_format((struct sockaddr *)&ss, len, buf, 5), -ENOSPC);
}
