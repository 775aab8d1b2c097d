/*
 * hk_co_resolve and hk_co_tcp_connect: /etc/hosts, a dnsmasq of the test,
 * a UDP server that never answers (deadline, cancellation), and connecting
 * by address and by name. Only Test() and cr_assert* are used, so the
 * ThreadSanitizer build runs it too (tests/support/tsan).
 */
#include <criterion/criterion.h>
#include <hark.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../dns/dnsmasq.h"

#define MS(x) ((uint64_t)(x)*UINT64_C(1000000))

static hk_co_runtime_t *new_runtime(void)
{
    hk_co_runtime_t *rt = NULL;
    hk_co_runtime_options_t o = {.workers = 2};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    return rt;
}

static void free_runtime(hk_co_runtime_t *rt)
{
    cr_assert_eq(hk_co_runtime_free(rt), 0);
}

/* What a coroutine saw; checked by the test thread after hk_co_run. */
struct lookup {
    const char *host;
    int family;
    uint64_t timeout;
    int r;
    hk_dns_addr_t addrs[4];
    uint64_t elapsed;
};

static void *lookup_co(void *arg)
{
    struct lookup *l = arg;
    uint64_t t0 = hk_time_now();
    uint64_t deadline = l->timeout == HK_FOREVER ? HK_FOREVER : t0 + l->timeout;
    l->r = hk_co_resolve(l->host, l->family, l->addrs, 4, deadline);
    l->elapsed = hk_time_now() - t0;
    return NULL;
}

static int is_v4(const hk_dns_addr_t *a, const char *text)
{
    char buf[INET_ADDRSTRLEN];
    return a->sa.sa_family == AF_INET && inet_ntop(AF_INET, &a->in.sin_addr, buf, sizeof buf) &&
           strcmp(buf, text) == 0;
}

Test(co_net, resolve_localhost_from_etc_hosts)
{
    hk_co_runtime_t *rt = new_runtime();
    struct lookup l = {.host = "localhost", .family = AF_INET, .timeout = MS(5000)};
    cr_assert_eq(hk_co_run(rt, lookup_co, &l, NULL), 0);
    cr_assert_geq(l.r, 1, "%s", hk_strerror(l.r));
    cr_assert(is_v4(&l.addrs[0], "127.0.0.1"));
    /* A second lookup reuses the runtime's resolver; options are then fixed. */
    cr_assert_eq(hk_co_run(rt, lookup_co, &l, NULL), 0);
    cr_assert_geq(l.r, 1);
    hk_resolver_options_t o = {0};
    cr_assert_eq(hk_co_resolver_configure(rt, &o), -EBUSY);
    free_runtime(rt);
}

Test(co_net, resolve_from_dnsmasq)
{
    struct dnsmasq d;
    cr_assert_eq(dnsmasq_start(&d, "127.0.0.7 www.hark.test\n", 60), 0, "dnsmasq did not start");
    hk_co_runtime_t *rt = new_runtime();
    hk_resolver_options_t o = {.servers = d.servers, .flags = HK_RESOLVER_NO_SEARCH};
    cr_assert_eq(hk_co_resolver_configure(rt, &o), 0);
    struct lookup l = {.host = "www.hark.test", .family = AF_INET, .timeout = MS(5000)};
    cr_assert_eq(hk_co_run(rt, lookup_co, &l, NULL), 0);
    cr_assert_eq(l.r, 1, "%s", hk_strerror(l.r));
    cr_assert(is_v4(&l.addrs[0], "127.0.0.7"));
    struct lookup nx = {.host = "nope.hark.test", .family = AF_INET, .timeout = MS(5000)};
    cr_assert_eq(hk_co_run(rt, lookup_co, &nx, NULL), 0);
    cr_assert_eq(nx.r, -ENOENT, "%s", hk_strerror(nx.r));
    free_runtime(rt);
    dnsmasq_stop(&d);
}

Test(co_net, resolve_deadline_against_a_silent_server)
{
    char servers[64];
    int hole = blackhole_open(servers, sizeof servers);
    cr_assert_geq(hole, 0);
    hk_co_runtime_t *rt = new_runtime();
    /* c-ares alone would wait 5 s twice: the coroutine's deadline must end it. */
    hk_resolver_options_t o = {
        .servers = servers, .timeout_ms = 5000, .tries = 2, .flags = HK_RESOLVER_NO_SEARCH};
    cr_assert_eq(hk_co_resolver_configure(rt, &o), 0);
    struct lookup l = {.host = "slow.hark.test", .family = AF_UNSPEC, .timeout = MS(300)};
    cr_assert_eq(hk_co_run(rt, lookup_co, &l, NULL), 0);
    cr_assert_eq(l.r, -ETIMEDOUT, "%s", hk_strerror(l.r));
    cr_assert_geq(l.elapsed, MS(300));
    cr_assert_lt(l.elapsed, MS(2000), "late: %llu ms", (unsigned long long)(l.elapsed / MS(1)));
    /* 0 = try once: anything that needs the network times out at once. */
    struct lookup once = {.host = "slow2.hark.test", .family = AF_INET, .timeout = 0};
    cr_assert_eq(hk_co_run(rt, lookup_co, &once, NULL), 0);
    cr_assert_eq(once.r, -ETIMEDOUT, "%s", hk_strerror(once.r));
    free_runtime(rt);
    close(hole);
}

/* Several coroutines resolve against the silent server; closing their scope cancels them. */
#define CANCELLED 8

static void *cancel_main(void *arg)
{
    struct lookup *ls = arg;
    hk_co_scope_t *scope;
    if (hk_co_scope_new(&scope) < 0)
        return NULL;
    for (int i = 0; i < CANCELLED; i++) {
        if (hk_co_spawn(scope, lookup_co, &ls[i], NULL, NULL) < 0)
            return NULL;
    }
    /* Some are in flight by now, maybe not all: both paths must end cleanly. */
    hk_co_sleep_until(hk_time_now() + MS(100));
    hk_co_scope_close(scope);
    /* The resolver is still healthy: /etc/hosts answers a later lookup. */
    lookup_co(&ls[CANCELLED]);
    return (void *)1;
}

Test(co_net, resolve_cancelled_by_scope)
{
    char servers[64];
    int hole = blackhole_open(servers, sizeof servers);
    cr_assert_geq(hole, 0);
    hk_co_runtime_t *rt = new_runtime();
    hk_resolver_options_t o = {.servers = servers, .flags = HK_RESOLVER_NO_SEARCH};
    cr_assert_eq(hk_co_resolver_configure(rt, &o), 0);
    struct lookup ls[CANCELLED + 1];
    memset(ls, 0, sizeof ls);
    for (int i = 0; i < CANCELLED; i++)
        ls[i] = (struct lookup){.host = "slow.hark.test", .family = AF_INET, .timeout = HK_FOREVER};
    ls[CANCELLED] = (struct lookup){.host = "localhost", .family = AF_INET, .timeout = MS(5000)};
    void *ok = NULL;
    uint64_t t0 = hk_time_now();
    cr_assert_eq(hk_co_run(rt, cancel_main, ls, &ok), 0);
    cr_assert_eq(ok, (void *)1);
    cr_assert_lt(hk_time_now() - t0, MS(3000), "cancellation took too long");
    for (int i = 0; i < CANCELLED; i++)
        cr_assert_eq(ls[i].r, -ECANCELED, "lookup %d: %s", i, hk_strerror(ls[i].r));
    cr_assert_geq(ls[CANCELLED].r, 1, "%s", hk_strerror(ls[CANCELLED].r));
    free_runtime(rt);
    close(hole);
}

/* A listener on 127.0.0.1, port chosen by the kernel. */
static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(fd, 16), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

struct conn_test {
    int lfd, port, closed_port;
    int by_addr, by_name, refused, bad_args;
    char echoed[8];
};

/* Connects to host, accepts the peer, sends "ping" through; 0 or -errno. */
static int connect_once(struct conn_test *t, const char *host)
{
    int fd = hk_co_tcp_connect(host, (uint16_t)t->port, hk_time_now() + MS(5000));
    if (fd < 0)
        return fd;
    int peer = hk_co_accept(t->lfd, NULL, NULL, hk_time_now() + MS(5000));
    int r = peer < 0 ? peer : (int)hk_co_write_all(fd, "ping", 4, hk_time_now() + MS(5000));
    if (r >= 0) {
        memset(t->echoed, 0, sizeof t->echoed);
        r = (int)hk_co_read(peer, t->echoed, 4, hk_time_now() + MS(5000));
        r = r == 4 && memcmp(t->echoed, "ping", 4) == 0 ? 0 : -EIO;
    }
    if (peer >= 0)
        hk_co_close(peer);
    hk_co_close(fd);
    return r;
}

static void *connect_main(void *arg)
{
    struct conn_test *t = arg;
    t->by_addr = connect_once(t, "127.0.0.1");
    /* localhost may give ::1 first: nothing listens there, so the next address must be tried. */
    t->by_name = connect_once(t, "localhost");
    t->refused = hk_co_tcp_connect("127.0.0.1", (uint16_t)t->closed_port, hk_time_now() + MS(5000));
    t->bad_args = hk_co_tcp_connect("127.0.0.1", 0, HK_FOREVER);
    return NULL;
}

Test(co_net, tcp_connect_by_address_and_by_name)
{
    struct conn_test t = {0};
    t.lfd = listener(&t.port);
    int closed = listener(&t.closed_port);
    close(closed); /* a port nobody listens on any more */
    hk_co_runtime_t *rt = new_runtime();
    cr_assert_eq(hk_co_run(rt, connect_main, &t, NULL), 0);
    cr_assert_eq(t.by_addr, 0, "%s", hk_strerror(t.by_addr));
    cr_assert_eq(t.by_name, 0, "%s", hk_strerror(t.by_name));
    cr_assert_eq(t.refused, -ECONNREFUSED, "%s", hk_strerror(t.refused));
    cr_assert_eq(t.bad_args, -EINVAL);
    free_runtime(rt);
    close(t.lfd);
}

Test(co_net, outside_a_coroutine)
{
    hk_dns_addr_t a;
    cr_assert_eq(hk_co_resolve("localhost", AF_INET, &a, 1, HK_FOREVER), -EPERM);
    cr_assert_eq(hk_co_tcp_connect("127.0.0.1", 80, HK_FOREVER), -EPERM);
}
