/*
 * Socket tables from /proc/net.
 *
 * Why: a socket fd says only "socket:[inode]". Whether it listens (which makes
 * its owner a network service) and where it goes (the endpoints an alert
 * names) live in the per-protocol tables, keyed by the same inode. They are
 * read once per scan, sorted by inode, and searched per socket: O(S log S)
 * for S sockets instead of one table walk per fd.
 *
 * Limit: /proc/net shows the scanner's own network namespace; sockets of a
 * process in another namespace are found (it is the same inode space) but
 * their endpoints are "?" (docs/watch.md).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netinfo.h"
#include "hex.h"

int read_lines(int dirfd, const char *path, char *buf, size_t cap, lines_fn fn, void *arg)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t have = 0;
    int skipping = 0, r = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        size_t len = have + (size_t)n, start = 0;
        if (n == 0) {
            if (len && !skipping)
                r = fn(buf, len, arg);
            break;
        }
        for (;;) {
            char *nl = memchr(buf + start, '\n', len - start);
            if (!nl)
                break;
            size_t end = (size_t)(nl - buf);
            if (!skipping && (r = fn(buf + start, end - start, arg)) < 0)
                goto out;
            skipping = 0;
            start = end + 1;
        }
        have = len - start;
        if (have == cap) {
            skipping = 1;
            have = 0;
        } else if (have && start) {
            memmove(buf, buf + start, have);
        }
    }
out:
    close(fd);
    return r;
}

/* Splits a line into at most max whitespace-separated fields (zero-copy). */
static int fields(const char *line, size_t len, const char **f, size_t *fl, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len && n < max) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == len)
            break;
        size_t s = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        f[n] = line + s;
        fl[n] = i - s;
        n++;
    }
    return n;
}

static int parse_num(const char *s, size_t len, unsigned base, uint64_t *out)
{
    if (!len)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int d = base == 16 ? hex_digit(s[i]) : (s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : -1);
        if (d < 0 || v > (UINT64_MAX - (uint64_t)d) / base)
            return -1;
        v = v * base + (uint64_t)d;
    }
    *out = v;
    return 0;
}

net_sock_t *netinfo_push(netinfo_t *ni)
{
    if (ni->n == ni->cap) {
        size_t cap = ni->cap ? ni->cap * 2 : 256;
        net_sock_t *p = realloc(ni->socks, cap * sizeof *p);
        if (!p)
            return NULL;
        ni->socks = p;
        ni->cap = cap;
    }
    net_sock_t *s = &ni->socks[ni->n++];
    memset(s, 0, sizeof *s);
    return s;
}

struct inet_ctx {
    netinfo_t *ni;
    uint8_t proto, family;
};

/* "  0: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000 0 0 12345 ..." */
static int inet_line(const char *line, size_t len, void *arg)
{
    struct inet_ctx *c = arg;
    const char *f[10];
    size_t fl[10];
    if (fields(line, len, f, fl, 10) < 10 || fl[0] < 2 || f[0][fl[0] - 1] != ':')
        return 0; /* the header, or junk */
    size_t alen = c->family == 4 ? 8 : 32;
    uint64_t state, ino, port;
    if (fl[2] != alen + 5 || f[2][alen] != ':' || parse_num(f[2] + alen + 1, 4, 16, &port) < 0 ||
        parse_num(f[3], fl[3], 16, &state) < 0 || parse_num(f[9], fl[9], 10, &ino) < 0) {
        c->ni->bad_lines++;
        return 0;
    }
    net_sock_t *s = netinfo_push(c->ni);
    if (!s)
        return -ENOMEM;
    s->ino = ino;
    s->proto = c->proto;
    s->family = c->family;
    s->port = (uint16_t)port;
    s->listening = c->proto == NET_TCP && state == 0x0A;
    /* The kernel prints each 32-bit word of the address in host order. */
    for (size_t w = 0; w < alen / 8; w++) {
        uint32_t word = 0;
        for (int i = 0; i < 8; i++)
            word = (word << 4) | (uint32_t)hex_digit(f[2][w * 8 + (size_t)i]);
        memcpy(s->addr + w * 4, &word, 4);
    }
    return 0;
}

int netinfo_set_path(netinfo_t *ni, net_sock_t *s, const char *name, size_t len)
{
    if (ni->slen + len + 1 > ni->scap) {
        size_t cap = (ni->scap ? ni->scap * 2 : 4096) + len + 1;
        char *p = realloc(ni->strings, cap);
        if (!p)
            return -ENOMEM;
        ni->strings = p;
        ni->scap = cap;
    }
    for (size_t i = 0; i < len; i++)
        ni->strings[ni->slen + i] = name[i] ? name[i] : '@';
    ni->strings[ni->slen + len] = '\0';
    s->path = (uint32_t)ni->slen;
    ni->slen += len + 1;
    return 0;
}

/*
 * The most bytes of name a /proc/net/unix line shows: the kernel prints a
 * bound socket's sun_path, at most 108 bytes ('@' and 107 for an abstract
 * name, 107 for a path), after one space, raw but for NUL ('@'). Raw means
 * '\n' too: a name "x\n<a whole line>" adds a line of its binder's choosing
 * (that somebody else's socket listens, making its owner a network service;
 * or that one's own does not). No field tells a forged line from a real one,
 * but a forged one lies within the 108 bytes after the start of a real
 * line's name. So each line is checked against the room left by the names
 * above it: one that could lie in a name is in doubt, and a line in doubt
 * is believed only to be a unix socket, never about listening or its name.
 * An inode listed twice keeps a line not in doubt (netinfo_load). The price:
 * a real listener whose whole line would fit in the rest of the name above
 * (both names short) is not seen as listening by this fallback; sock_diag,
 * used whenever the kernel offers it, has no such doubt.
 */
#define UNIX_NAME_MAX 108

struct unix_ctx {
    netinfo_t *ni;
    size_t room; /* bytes of an earlier line's name that may still follow */
    int header;  /* the first line is the header */
};

/* Exactly n hex digits. */
static int hex_field(const char *f, size_t fl, size_t n, uint64_t *out)
{
    return fl == n ? parse_num(f, fl, 16, out) : -1;
}

/*
 * "%pK: %08X %08X %08X %04X %02X %5lu[ name]": Num, RefCount, Protocol,
 * Flags, Type, St, Inode, then the name: the fields by their fixed widths,
 * the name only by its length.
 */
static int unix_line(const char *line, size_t len, void *arg)
{
    struct unix_ctx *c = arg;
    netinfo_t *ni = c->ni;
    int doubt = c->room >= len + 1; /* this line, and the '\n' before it, fit in that name */
    size_t room = doubt ? c->room - (len + 1) : 0;
    const char *f[7];
    size_t fl[7];
    uint64_t v, flags, ino;
    int n = fields(line, len, f, fl, 7);
    if (c->header) {
        c->header = 0;
        c->room = 0;
        return 0;
    }
    c->room = room;
    if (n < 7 || fl[0] < 2 || f[0][fl[0] - 1] != ':' || parse_num(f[0], fl[0] - 1, 16, &v) < 0 ||
        hex_field(f[1], fl[1], 8, &v) < 0 || hex_field(f[2], fl[2], 8, &v) < 0 ||
        hex_field(f[3], fl[3], 8, &flags) < 0 || hex_field(f[4], fl[4], 4, &v) < 0 ||
        hex_field(f[5], fl[5], 2, &v) < 0 || parse_num(f[6], fl[6], 10, &ino) < 0) {
        if (!doubt)
            ni->bad_lines++; /* a line in doubt may be any part of a name */
        return 0;
    }
    /* The name: after the one space that follows the inode, to the end of the line. */
    size_t end = (size_t)(f[6] + fl[6] - line), plen = end < len ? len - end - 1 : 0;
    if ((end < len && line[end] != ' ') || plen > UNIX_NAME_MAX) {
        if (!doubt)
            ni->bad_lines++;
        return 0;
    }
    /* A real line leaves the rest of its name's room to the lines below. */
    if (plen && UNIX_NAME_MAX - plen > c->room)
        c->room = UNIX_NAME_MAX - plen;
    net_sock_t *s = netinfo_push(ni);
    if (!s)
        return -ENOMEM;
    s->ino = ino;
    s->proto = NET_UNIX;
    s->doubt = (uint8_t)doubt;
    if (doubt)
        return 0;
    s->listening = (flags & 0x10000) != 0; /* __SO_ACCEPTCON */
    if (plen)
        return netinfo_set_path(ni, s, line + end + 1, plen);
    return 0;
}

static int cmp_ino(const void *a, const void *b)
{
    uint64_t x = ((const net_sock_t *)a)->ino, y = ((const net_sock_t *)b)->ino;
    return x < y ? -1 : x > y;
}

/*
 * One entry per inode. Two lines for one inode mean a forged one, which is
 * in doubt by construction (unix_line): keep a line not in doubt (TCP and
 * UDP lines have no free text and never are), else one that says nothing.
 */
static void dedup(netinfo_t *ni)
{
    size_t o = 0;
    for (size_t i = 0; i < ni->n;) {
        size_t j = i, keep = i;
        while (j < ni->n && ni->socks[j].ino == ni->socks[i].ino) {
            if (ni->socks[keep].doubt && !ni->socks[j].doubt)
                keep = j;
            j++;
        }
        ni->socks[o] = ni->socks[keep];
        if (ni->socks[o].doubt) {
            ni->socks[o].listening = 0;
            ni->socks[o].path = 0;
        }
        o++;
        i = j;
    }
    ni->n = o;
}

/* Empties ni for a new load, keeping its memory; the string arena starts with "" at offset 0. */
static int reset(netinfo_t *ni)
{
    ni->n = 0;
    ni->bad_lines = 0;
    if (!ni->strings) {
        ni->strings = malloc(4096);
        if (!ni->strings)
            return -ENOMEM;
        ni->scap = 4096;
    }
    ni->strings[0] = '\0';
    ni->slen = 1;
    return 0;
}

/* Sorted by inode, one entry per inode, as netinfo_find needs. */
static void sort_unique(netinfo_t *ni)
{
    if (ni->n) {
        qsort(ni->socks, ni->n, sizeof *ni->socks, cmp_ino);
        dedup(ni);
    }
}

int netinfo_load(netinfo_t *ni, const char *proc_root)
{
    if (reset(ni) < 0)
        return -ENOMEM;
    int dfd = open(proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    static const struct {
        const char *path;
        uint8_t proto, family;
    } tables[] = {{"net/tcp", NET_TCP, 4},
                  {"net/tcp6", NET_TCP, 6},
                  {"net/udp", NET_UDP, 4},
                  {"net/udp6", NET_UDP, 6}};
    char buf[8192];
    int r = 0;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0] && r >= 0; i++) {
        struct inet_ctx c = {ni, tables[i].proto, tables[i].family};
        r = read_lines(dfd, tables[i].path, buf, sizeof buf, inet_line, &c);
        if (r == -ENOENT || r == -EACCES)
            r = 0;
    }
    if (r >= 0) {
        size_t n = ni->n, slen = ni->slen;
        r = netinfo_unix_diag(ni);
        if (r < 0 && r != -ENOMEM) {
            ni->n = n; /* no sock_diag: the text, read with care */
            ni->slen = slen;
            struct unix_ctx c = {ni, 0, 1};
            r = read_lines(dfd, "net/unix", buf, sizeof buf, unix_line, &c);
            if (r == -ENOENT || r == -EACCES)
                r = 0;
        }
    }
    close(dfd);
    sort_unique(ni);
    return r < 0 ? r : 0;
}

int netinfo_parse_unix(netinfo_t *ni, const char *text, size_t len)
{
    if (reset(ni) < 0)
        return -ENOMEM;
    struct unix_ctx c = {ni, 0, 1};
    for (size_t start = 0; start < len;) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (unix_line(text + start, end - start, &c) < 0)
            return -ENOMEM;
        start = end + 1;
    }
    sort_unique(ni);
    return 0;
}

void netinfo_free(netinfo_t *ni)
{
    free(ni->socks);
    free(ni->strings);
    memset(ni, 0, sizeof *ni);
}

const net_sock_t *netinfo_find(const netinfo_t *ni, uint64_t ino)
{
    size_t lo = 0, hi = ni->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ni->socks[mid].ino < ino)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ni->n && ni->socks[lo].ino == ino ? &ni->socks[lo] : NULL;
}

void netinfo_format(const netinfo_t *ni, const net_sock_t *s, char *out, size_t cap)
{
    if (!s) {
        snprintf(out, cap, "?");
        return;
    }
    if (s->proto == NET_UNIX) {
        snprintf(out, cap, "unix:%s", s->path ? ni->strings + s->path : "?");
        return;
    }
    const char *p = s->proto == NET_TCP ? "tcp" : "udp";
    char a[INET6_ADDRSTRLEN] = "?";
    inet_ntop(s->family == 4 ? AF_INET : AF_INET6, s->addr, a, sizeof a);
    if (s->family == 4)
        snprintf(out, cap, "%s:%s:%u", p, a, s->port);
    else
        snprintf(out, cap, "%s:[%s]:%u", p, a, s->port);
}
