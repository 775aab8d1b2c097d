/*
 * Numeric addresses and socket set-up.
 *
 * Why a hand-written parser: inet_pton does not take a port, getaddrinfo
 * may block on a resolver (names belong to hark/dns.h), and the forms we
 * accept must be exact: "host:port" for IPv4, "[v6%scope]:port" for IPv6.
 * Every byte is checked, lengths are bounded before copying, and the port
 * must be 0..65535 in decimal without sign or spaces; tests/net fuzzes it.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

static int hk__parse_port(const char *p, uint16_t *port)
{
    if (!*p)
        return -EINVAL;
    unsigned v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 65535)
            return -EINVAL;
    }
    *port = (uint16_t)v;
    return 0;
}

static int hk__parse_scope(const char *p, uint32_t *scope)
{
    if (!*p)
        return -EINVAL;
    uint64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
    }
    *scope = (uint32_t)v;
    return 0;
}

static int hk__parse_v6(const char *str, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *close = strchr(str, ']');
    if (!close || close[1] != ':')
        return -EINVAL;
    size_t n = (size_t)(close - (str + 1));
    char host[INET6_ADDRSTRLEN + 16];
    if (n == 0 || n >= sizeof host)
        return -EINVAL;
    memcpy(host, str + 1, n);
    host[n] = '\0';
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    char *pct = strchr(host, '%');
    if (pct) {
        *pct = '\0';
        if (hk__parse_scope(pct + 1, &sin6.sin6_scope_id) < 0)
            return -EINVAL;
    }
    if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
        return -EINVAL;
    uint16_t port;
    if (hk__parse_port(close + 2, &port) < 0)
        return -EINVAL;
    sin6.sin6_port = htons(port);
    memcpy(ss, &sin6, sizeof sin6);
    *len = sizeof sin6;
    return 0;
}

int hk_addr_parse(const char *str, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!str || !ss || !len)
        return -EINVAL;
    if (str[0] == '[')
        return hk__parse_v6(str, ss, len);
    const char *colon = strrchr(str, ':');
    if (!colon || memchr(str, ':', (size_t)(colon - str)))
        return -EINVAL;
    size_t n = (size_t)(colon - str);
    char host[INET_ADDRSTRLEN];
    if (n >= sizeof host)
        return -EINVAL;
    memcpy(host, str, n);
    host[n] = '\0';
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    if (n == 0 || strcmp(host, "*") == 0)
        sin.sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return -EINVAL;
    uint16_t port;
    if (hk__parse_port(colon + 1, &port) < 0)
        return -EINVAL;
    sin.sin_port = htons(port);
    memcpy(ss, &sin, sizeof sin);
    *len = sizeof sin;
    return 0;
}

int hk_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    if (!sa || !buf)
        return -EINVAL;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        n = snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        if (sin6->sin6_scope_id)
            n = snprintf(buf, size, "[%s%%%u]:%u", host, sin6->sin6_scope_id,
                         ntohs(sin6->sin6_port));
        else
            n = snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = len > off ? (size_t)len - off : 0;
        if (plen > sizeof sun->sun_path)
            plen = sizeof sun->sun_path;
        if (plen > 0 && sun->sun_path[0] == '\0') /* abstract: shown with '@' */
            n = snprintf(buf, size, "@%.*s", (int)(plen - 1), sun->sun_path + 1);
        else
            n = snprintf(buf, size, "%.*s", (int)strnlen(sun->sun_path, plen), sun->sun_path);
    } else {
        return -EAFNOSUPPORT;
    }
    if (n < 0 || (size_t)n >= size)
        return -ENOSPC;
    return n;
}

int hk__unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof sun->sun_path)
        return -ENAMETOOLONG;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') {
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

int hk__set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int hk__listen_socket(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (sa->sa_family != AF_UNIX)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & HK_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (sa->sa_family == AF_INET6) {
        int v6only = (flags & HK_LISTEN_V6ONLY) ? 1 : 0;
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (bind(fd, sa, len) < 0 || listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

int hk_tcp_nodelay(int fd, int on)
{
    on = !!on;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0 ? -errno : 0;
}

int hk_tcp_keepalive(int fd, int idle_s)
{
    int on = idle_s > 0;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0)
        return -errno;
    if (!on)
        return 0;
    int intvl = idle_s / 3 > 0 ? idle_s / 3 : 1, cnt = 3;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
        return -errno;
    return 0;
}

void hk__conn_options(int fd, int nodelay, int keepalive)
{
    if (nodelay)
        (void)hk_tcp_nodelay(fd, 1);
    if (keepalive)
        (void)hk_tcp_keepalive(fd, 60);
}
