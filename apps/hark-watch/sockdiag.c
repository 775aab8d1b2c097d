/*
 * Listening sockets through sock_diag netlink, not /proc/net/tcp.
 *
 * Why: reading /proc/net/tcp walks every bucket of the TCP established hash,
 * which the kernel sizes by RAM, not by sockets: on a 24 GiB machine with a
 * handful of connections that walk was 45 % of a whole 1,000-process scan
 * (perf, bench/watch). A scan only needs to know which sockets listen, and
 * sock_diag with a LISTEN-only state filter visits only the listening hash
 * (inet_diag_dump_icsk skips the established walk), the way `ss -l` does.
 * The remote endpoints an alert names still come from /proc/net (netinfo.c),
 * read only when there is an alert to report.
 *
 * When sock_diag is not available (a kernel without inet_diag, or a seccomp
 * filter), we fall back to /proc/net. The full unix table (the names an
 * alert shows) comes from here too, not from /proc/net/unix, whose lines a
 * socket's name can forge (netinfo.c).
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netinfo.h"

static int add_listening(netinfo_t *ni, uint64_t ino, uint8_t proto)
{
    net_sock_t *s = netinfo_push(ni);
    if (!s)
        return -ENOMEM;
    s->ino = ino;
    s->proto = proto;
    s->listening = 1;
    return 0;
}

/* A unix socket of a full dump: its state, and its name from UNIX_DIAG_NAME (exact length). */
static int add_unix(netinfo_t *ni, const struct nlmsghdr *h)
{
    struct unix_diag_msg m;
    memcpy(&m, NLMSG_DATA(h), sizeof m);
    net_sock_t *s = netinfo_push(ni);
    if (!s)
        return -ENOMEM;
    s->ino = m.udiag_ino;
    s->proto = NET_UNIX;
    s->listening = m.udiag_state == TCP_LISTEN;
    size_t off = NLMSG_ALIGN(sizeof m), len = h->nlmsg_len - NLMSG_LENGTH(0);
    while (off + sizeof(struct rtattr) <= len) {
        struct rtattr a;
        memcpy(&a, (const char *)NLMSG_DATA(h) + off, sizeof a);
        if (a.rta_len < sizeof a || off + a.rta_len > len)
            break;
        if (a.rta_type == UNIX_DIAG_NAME && a.rta_len > RTA_LENGTH(0))
            return netinfo_set_path(ni, s, (const char *)NLMSG_DATA(h) + off + RTA_LENGTH(0),
                                    a.rta_len - RTA_LENGTH(0));
        off += RTA_ALIGN(a.rta_len);
    }
    return 0;
}

enum dump_what { DUMP_INET_LISTEN, DUMP_UNIX_LISTEN, DUMP_UNIX_ALL };

/* Sends one dump request and collects the answers. */
static int dump(int fd, const void *req, size_t len, enum dump_what what, netinfo_t *ni)
{
    if (send(fd, req, len, 0) < 0)
        return -errno;
    for (;;) {
        _Alignas(struct nlmsghdr) char buf[16384];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr e;
                memcpy(&e, NLMSG_DATA(h), sizeof e);
                return e.error ? e.error : -EIO;
            }
            int r;
            if (what == DUMP_UNIX_ALL) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg)))
                    continue;
                r = add_unix(ni, h);
            } else if (what == DUMP_UNIX_LISTEN) {
                struct unix_diag_msg m;
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof m))
                    continue;
                memcpy(&m, NLMSG_DATA(h), sizeof m);
                r = add_listening(ni, m.udiag_ino, NET_UNIX);
            } else {
                struct inet_diag_msg m;
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof m))
                    continue;
                memcpy(&m, NLMSG_DATA(h), sizeof m);
                r = add_listening(ni, m.idiag_inode, NET_TCP);
            }
            if (r < 0)
                return r;
        }
    }
}

/* Dumps the unix sockets in states (a mask of 1 << TCP_*), with the attributes show asks for. */
static int dump_unix(int fd, uint32_t states, uint32_t show, enum dump_what what, netinfo_t *ni)
{
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = AF_UNIX;
    req.r.udiag_states = states;
    req.r.udiag_show = show;
    return dump(fd, &req, sizeof req, what, ni);
}

static int cmp_ino(const void *a, const void *b)
{
    uint64_t x = ((const net_sock_t *)a)->ino, y = ((const net_sock_t *)b)->ino;
    return x < y ? -1 : x > y;
}

static int load_diag(netinfo_t *ni)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    int r = 0;
    for (int fam = 0; fam < 2 && r >= 0; fam++) {
        struct {
            struct nlmsghdr h;
            struct inet_diag_req_v2 r;
        } req;
        memset(&req, 0, sizeof req);
        req.h.nlmsg_len = sizeof req;
        req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.r.sdiag_family = fam ? AF_INET6 : AF_INET;
        req.r.sdiag_protocol = IPPROTO_TCP;
        req.r.idiag_states = 1u << TCP_LISTEN;
        r = dump(fd, &req, sizeof req, DUMP_INET_LISTEN, ni);
        if (fam == 1 && (r == -EAFNOSUPPORT || r == -ENOENT))
            r = 0; /* no IPv6 */
    }
    if (r >= 0)
        r = dump_unix(fd, 1u << TCP_LISTEN, 0, DUMP_UNIX_LISTEN, ni);
    close(fd);
    return r;
}

int netinfo_unix_diag(netinfo_t *ni)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    size_t n = ni->n, slen = ni->slen;
    int r = dump_unix(fd, ~0u, UDIAG_SHOW_NAME, DUMP_UNIX_ALL, ni);
    close(fd);
    if (r < 0 && r != -ENOMEM) {
        ni->n = n; /* nothing half-read: the caller falls back to /proc/net/unix */
        ni->slen = slen;
    }
    return r;
}

int netinfo_load_listening(netinfo_t *ni, const char *proc_root)
{
    ni->n = 0;
    ni->bad_lines = 0;
    int r = load_diag(ni);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return netinfo_load(ni, proc_root); /* no sock_diag: the slow, complete way */
    if (ni->n)
        qsort(ni->socks, ni->n, sizeof *ni->socks, cmp_ino);
    return 0;
}
