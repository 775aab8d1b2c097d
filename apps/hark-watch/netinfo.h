/*
 * netinfo.h: the sockets of the scanner's network namespace, from
 * /proc/net/{tcp,tcp6,udp,udp6,unix}: for each socket inode, whether it
 * listens and what its remote endpoint is.
 */
#ifndef HARK_WATCH_NETINFO_H
#define HARK_WATCH_NETINFO_H

#include <stddef.h>
#include <stdint.h>

enum net_proto { NET_TCP = 1, NET_UDP, NET_UNIX };

typedef struct net_sock {
    uint64_t ino;
    uint8_t proto;     /* enum net_proto */
    uint8_t listening; /* TCP LISTEN, or a unix socket accepting connections */
    uint8_t family;    /* 4 or 6 for tcp/udp */
    uint8_t addr[16];  /* remote address (network order) */
    uint16_t port;     /* remote port */
    uint32_t path;     /* unix: offset of the path in netinfo_t.strings (0: none) */
} net_sock_t;

typedef struct netinfo {
    net_sock_t *socks; /* sorted by inode once netinfo_load returns */
    size_t n, cap;
    char *strings; /* NUL-separated unix paths; offset 0 is "" */
    size_t slen, scap;
    uint32_t bad_lines;
} netinfo_t;

/*
 * Loads the tables of the process's network namespace (proc_root normally
 * "/proc"). Missing tables (no IPv6) are skipped. Returns 0 or -ENOMEM.
 */
int netinfo_load(netinfo_t *ni, const char *proc_root);
/*
 * Only the listening sockets (TCP and unix), through sock_diag, which is far
 * cheaper than /proc/net (sockdiag.c); falls back to netinfo_load.
 */
int netinfo_load_listening(netinfo_t *ni, const char *proc_root);
void netinfo_free(netinfo_t *ni);
const net_sock_t *netinfo_find(const netinfo_t *ni, uint64_t ino);
/* Formats the remote endpoint ("10.0.0.2:443", "[::1]:80", "unix:/run/x", "unix:?"). */
void netinfo_format(const netinfo_t *ni, const net_sock_t *s, char *out, size_t cap);

/* Reads path line by line into a fixed buffer (lines longer than it are skipped). */
typedef int (*lines_fn)(const char *line, size_t len, void *arg);
int read_lines(int dirfd, const char *path, char *buf, size_t cap, lines_fn fn, void *arg);

#endif
