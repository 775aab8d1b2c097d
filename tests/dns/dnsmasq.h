/*
 * A real DNS server for the tests: dnsmasq as a child process on a free
 * loopback port, answering from a hosts file of ours and authoritative for
 * hark.test (unknown names there are NXDOMAIN, not forwarded anywhere).
 *
 * The child is killed in dnsmasq_stop (call it from the test's fini, which
 * Criterion runs after a failed assertion too), and, should the test process
 * die without it, by the kernel: the child asks for SIGKILL when its parent
 * dies (PR_SET_PDEATHSIG).
 */
#ifndef HK_TEST_DNSMASQ_H
#define HK_TEST_DNSMASQ_H

#include <stddef.h>
#include <sys/types.h>

struct dnsmasq {
    pid_t pid;
    int port;
    char dir[256];
    char servers[64]; /* "127.0.0.1:<port>", for hk_resolver_options_t.servers */
};

/*
 * Writes hosts (the contents of a hosts file) to a temporary directory and
 * starts dnsmasq with local answers of TTL ttl_s, on a port chosen by binding
 * port 0 (retried if dnsmasq then finds it taken). Returns when the server
 * answers a query, 0; -1 if it could not be started (with a message on stderr).
 */
int dnsmasq_start(struct dnsmasq *d, const char *hosts, unsigned ttl_s);

/* Kills and reaps the server and removes its directory. Safe to call twice. */
void dnsmasq_stop(struct dnsmasq *d);

/* A UDP socket on 127.0.0.1 that never answers; stores "127.0.0.1:<port>" in servers. */
int blackhole_open(char *servers, size_t len);

#endif
