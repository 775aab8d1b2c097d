/*
 * The resolver against crafted answers from tests/dns/fakedns.py (a small
 * python3 DNS server on a free loopback port): a truncated UDP answer falls
 * back to TCP, a reply with the wrong ID is ignored (timeout), a compression
 * loop or a record cut short is -EBADMSG, SERVFAIL from the only server is
 * -ECONNREFUSED (c-ares 1.18 moves on to the next server and reports
 * "connection refused" when none is left; docs/dns.md), a CNAME chain gives
 * its smallest TTL, and 20 addresses keep 16 with total 20.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "util.h"

static struct fx fx;
static pid_t fake_pid = -1;

/* Starts fakedns.py in mode; writes "127.0.0.1:PORT" into servers. */
static void fake_start(const char *mode, char *servers, size_t len)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        execlp("python3", "python3", FAKEDNS_PY, mode, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    fake_pid = pid;
    char buf[32] = {0};
    ssize_t n;
    do
        n = read(p[0], buf, sizeof(buf) - 1);
    while (n < 0 && errno == EINTR);
    close(p[0]);
    cr_assert_gt(n, 0, "fakedns.py did not start: %s", n < 0 ? strerror(errno) : "EOF");
    snprintf(servers, len, "127.0.0.1:%d", atoi(buf));
}

static void fake_stop(void)
{
    if (fake_pid > 0) {
        kill(fake_pid, SIGKILL);
        waitpid(fake_pid, NULL, 0);
        fake_pid = -1;
    }
}

static void teardown(void)
{
    fx_teardown(&fx);
    fake_stop();
}

TestSuite(dns_answers, .fini = teardown, .timeout = 60);

static void resolver_on_fake(const char *mode)
{
    static char servers[64];
    fx_loop(&fx);
    fake_start(mode, servers, sizeof(servers));
    hk_resolver_options_t o = {.timeout_ms = 500, .tries = 1, .servers = servers};
    o.flags |= HK_RESOLVER_NO_SEARCH | HK_RESOLVER_NO_HOSTS;
    int rc = hk_resolver_new(fx.loop, &o, &fx.r);
    cr_assert_eq(rc, 0, "%s", hk_strerror(rc));
}

static void resolver_done(void)
{
    fx_teardown(&fx);
    fake_stop();
}

Test(dns_answers, crafted_answers)
{
    static const struct {
        const char *mode;
        int family;
        int result;
    } cases[] = {
        {"ok", AF_INET, 0},
        {"tc", AF_INET, 0},
        {"tc", AF_UNSPEC, 0},
        {"wrongid", AF_INET, -ETIMEDOUT},
        {"loop", AF_INET, -EBADMSG},
        {"trunc", AF_INET, -EBADMSG},
        {"servfail", AF_INET, -ECONNREFUSED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        resolver_on_fake(cases[i].mode);
        struct got g = fx_resolve(&fx, "x.hark.test", cases[i].family);
        cr_assert_eq(g.result, cases[i].result, "%s (family %d): %d (%s)", cases[i].mode,
                     cases[i].family, g.result, hk_strerror(g.result));
        if (cases[i].result == 0)
            cr_assert_geq(g.naddrs, 1, "%s", cases[i].mode);
        resolver_done();
    }
}

Test(dns_answers, cname_chain_gives_the_smallest_ttl)
{
    resolver_on_fake("cname");
    struct got g = fx_resolve(&fx, "x.hark.test", AF_INET);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.ttl_s, 2);
}

Test(dns_answers, twenty_addresses_keep_sixteen)
{
    resolver_on_fake("many");
    hk_dns_req_t req;
    struct got g = {0};
    req.data = &g;
    cr_assert_eq(
        hk_dns_resolve(fx.r, &req, "x.hark.test.", AF_INET, hk_time_now() + 5 * SEC, on_got), 0);
    fx_wait(&fx, &g);
    cr_assert_eq(g.result, 0, "%s", hk_strerror(g.result));
    cr_assert_eq(g.naddrs, 16);
    cr_assert_eq(req.total, 20);
}
