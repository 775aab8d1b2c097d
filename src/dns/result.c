/*
 * What hark makes of an answer. c-ares parses the DNS wire format; what
 * reaches us is an ares_addrinfo whose every field still comes from a peer:
 * address families and lengths, TTLs (a 32-bit field read into an int, so
 * "negative" TTLs exist), duplicates (the same address through two CNAMEs),
 * any number of nodes. This file turns it into the bounded, checked array of
 * hk_dns_req_t, and is the code fuzz/dns_answer.c drives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/internal.h"

int hk__dns_status_errno(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
        return -ENOENT;
    case ARES_ENODATA:
        return -ENODATA;
    case ARES_ETIMEOUT:
        return -ETIMEDOUT;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return -ECANCELED;
    case ARES_ECONNREFUSED:
    case ARES_EREFUSED:
        return -ECONNREFUSED;
    case ARES_ESERVFAIL:
        return -EAGAIN;
    case ARES_EFORMERR:
    case ARES_EBADRESP:
    case ARES_ENOTIMP:
        return -EBADMSG;
    case ARES_EBADNAME:
    case ARES_EBADFAMILY:
    case ARES_EBADFLAGS:
    case ARES_EBADHINTS:
    case ARES_EBADQUERY:
    case ARES_EBADSTR:
    case ARES_ENONAME:
        return -EINVAL;
    case ARES_ENOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

int hk__dns_name_key(const char *name, char *key)
{
    size_t i = 0;
    for (; name[i]; i++) {
        if (i >= HK_DNS_NAME_MAX)
            return -EINVAL;
        /* ASCII only (RFC 4343), whatever the locale: tolower() may map 'I' elsewhere. */
        char ch = name[i];
        key[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    /* HK_DNS_NAME_MAX (254) leaves room for a final dot: 253 characters without one. */
    if (i == 0 || (i == HK_DNS_NAME_MAX && name[i - 1] != '.'))
        return -EINVAL;
    key[i] = '\0';
    return 0;
}

/*
 * An IPv6 literal with a zone, "fe80::1%eth0" or "fe80::1%2", as getaddrinfo
 * takes it: inet_pton refuses the zone, and c-ares 1.18 would send the whole
 * text to the servers as a name. The zone is an interface name or its index;
 * an interface that does not exist is a name that does not resolve (-ENOENT).
 */
static int numeric_zoned(const char *name, int family, hk_dns_addr_t *out)
{
    const char *pct = strchr(name, '%');
    char addr[INET6_ADDRSTRLEN];
    size_t alen = pct ? (size_t)(pct - name) : 0;
    if (!pct || alen == 0 || alen >= sizeof(addr) || pct[1] == '\0')
        return 0;
    memcpy(addr, name, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET6, addr, &out->in6.sin6_addr) != 1)
        return 0;
    const char *zone = pct + 1;
    unsigned long index = 0;
    if (zone[strspn(zone, "0123456789")] == '\0') {
        errno = 0;
        index = strtoul(zone, NULL, 10);
        if (errno || index == 0 || index > UINT32_MAX)
            index = 0;
    } else if (strlen(zone) < IF_NAMESIZE) {
        index = if_nametoindex(zone);
    }
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_scope_id = (uint32_t)index;
    if (index == 0)
        return -ENOENT;
    return family == AF_INET ? -ENODATA : 1;
}

int hk__dns_numeric(const char *name, int family, hk_dns_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, name, &out->in.sin_addr) == 1) {
        out->in.sin_family = AF_INET;
        return family == AF_INET6 ? -ENODATA : 1;
    }
    if (inet_pton(AF_INET6, name, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        return family == AF_INET ? -ENODATA : 1;
    }
    return numeric_zoned(name, family, out);
}

int hk__dns_is_localhost(const char *key)
{
    static const char lh[] = "localhost";
    size_t n = strlen(key), m = sizeof(lh) - 1;
    if (n && key[n - 1] == '.')
        n--;
    if (n < m || memcmp(key + n - m, lh, m) != 0)
        return 0;
    return n == m || key[n - m - 1] == '.';
}

/* Copies one node's address into *out if it is a well-formed one of family. */
static int addr_take(const struct ares_addrinfo_node *n, int family, hk_dns_addr_t *out)
{
    if (!n->ai_addr || (family != AF_UNSPEC && n->ai_family != family))
        return 0;
    memset(out, 0, sizeof(*out));
    if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(struct sockaddr_in) &&
        n->ai_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)n->ai_addr;
        out->in.sin_family = AF_INET;
        out->in.sin_addr = in->sin_addr;
        return 1;
    }
    if (n->ai_family == AF_INET6 && n->ai_addrlen >= sizeof(struct sockaddr_in6) &&
        n->ai_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)n->ai_addr;
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_addr = in6->sin6_addr;
        out->in6.sin6_scope_id = in6->sin6_scope_id;
        return 1;
    }
    return 0;
}

static int addr_equal(const hk_dns_addr_t *a, const hk_dns_addr_t *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(struct in6_addr)) == 0 &&
           a->in6.sin6_scope_id == b->in6.sin6_scope_id;
}

static uint32_t ttl_of(int ttl)
{
    return ttl < 0 ? 0 : (uint32_t)ttl;
}

/*
 * One pass over the nodes, keeping those of the family wanted first (want),
 * or every family (want == AF_UNSPEC). Duplicates of addresses already kept,
 * or already counted, are skipped.
 */
static void collect(const struct ares_addrinfo *ai, int family, int want, hk_dns_addr_t *out,
                    unsigned max, unsigned *kept, unsigned *total, uint32_t *ttl)
{
    for (const struct ares_addrinfo_node *n = ai->nodes; n; n = n->ai_next) {
        hk_dns_addr_t a;
        if (!addr_take(n, family, &a) || (want != AF_UNSPEC && a.sa.sa_family != want))
            continue;
        int dup = 0;
        for (unsigned i = 0; i < *kept && !dup; i++)
            dup = addr_equal(&out[i], &a);
        if (dup)
            continue;
        /*
         * Past max, a duplicate cannot be recognised any more without keeping
         * what was dropped; total is then an upper bound, which is what it is
         * for: "more than naddrs".
         */
        (*total)++;
        if (*kept < max) {
            out[(*kept)++] = a;
            if (ttl_of(n->ai_ttl) < *ttl)
                *ttl = ttl_of(n->ai_ttl);
        }
    }
}

unsigned hk__dns_addrs_from_ai(const struct ares_addrinfo *ai, int family, hk_dns_order_t order,
                               hk_dns_addr_t *out, unsigned max, unsigned *total, uint32_t *ttl_s)
{
    unsigned kept = 0;
    uint32_t ttl = UINT32_MAX;
    *total = 0;
    if (ai) {
        if (family != AF_UNSPEC || order == HK_DNS_ORDER_RFC6724) {
            collect(ai, family, AF_UNSPEC, out, max, &kept, total, &ttl);
        } else {
            int first = order == HK_DNS_ORDER_IPV4_FIRST ? AF_INET : AF_INET6;
            collect(ai, family, first, out, max, &kept, total, &ttl);
            collect(ai, family, first == AF_INET ? AF_INET6 : AF_INET, out, max, &kept, total,
                    &ttl);
        }
        /* The CNAME chain is part of the answer: it expires as soon as any link does. */
        for (const struct ares_addrinfo_cname *c = ai->cnames; c && kept > 0; c = c->next)
            if (ttl_of(c->ttl) < ttl)
                ttl = ttl_of(c->ttl);
    }
    *ttl_s = kept > 0 ? ttl : 0;
    return kept;
}

socklen_t hk_dns_addr_len(const hk_dns_addr_t *addr)
{
    if (addr && addr->sa.sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (addr && addr->sa.sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}
