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
    uint8_t doubt;     /* a /proc/net/unix line that may be part of another line's name */
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
 * "/proc"): TCP and UDP from /proc/net, unix sockets from sock_diag (with
 * their exact names) or, without it, from /proc/net/unix, read so that a
 * line forged inside a socket's name is not believed (netinfo.c). Missing
 * tables (no IPv6) are skipped. Returns 0 or -ENOMEM.
 */
int netinfo_load(netinfo_t *ni, const char *proc_root);
/*
 * Appends every unix socket of the namespace through sock_diag (sockdiag.c).
 * Returns 0, -ENOMEM, or another -errno when sock_diag is not available
 * (then nothing is appended).
 */
int netinfo_unix_diag(netinfo_t *ni);
/*
 * Parses /proc/net/unix text (header line first) as the fallback of
 * netinfo_load does, into an emptied ni, sorted and one entry per inode.
 * For fuzz/netinfo_unix.c. Returns 0 or -ENOMEM.
 */
int netinfo_parse_unix(netinfo_t *ni, const char *text, size_t len);
/* Appends a zeroed entry to ni->socks (unsorted until the load ends); NULL when out of memory. */
net_sock_t *netinfo_push(netinfo_t *ni);
/* Stores a unix socket's name as /proc/net/unix shows it ('@' for NULs), for netinfo_format. */
int netinfo_set_path(netinfo_t *ni, net_sock_t *s, const char *name, size_t len);
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
