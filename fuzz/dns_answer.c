/*
 * libFuzzer driver for hark's handling of DNS answers (src/dns/result.c and
 * src/dns/cache.c).
 *
 * c-ares parses the wire format; it has its own fuzzers (OSS-Fuzz). What
 * reaches hark's code is an ares_addrinfo whose every field still comes from
 * a peer: node families and address lengths, TTLs (negative ones included),
 * duplicates, CNAME TTLs, the number of nodes. This driver builds such a
 * structure from the input, with each address in a block of exactly its
 * declared length (so ASan sees any read past it), runs it through the code
 * that copies it into a request and through the cache, and checks the
 * invariants the rest of hark relies on. The name is fuzzed too, through the
 * key normalisation, the literal-address parser and the cache's hash.
 *
 * Build and run (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *     fuzz/dns_answer.c src/dns/result.c src/dns/cache.c -lcares -o dns_answer_fuzz
 *   ./dns_answer_fuzz -max_total_time=60
 * ctest runs the same function over generated inputs (tests/dns/test_dns_fuzz.c).
 *
 * Input layout: family selector, order selector, status byte, name length,
 * the name, then records until the input ends: a kind byte (low bits: node
 * family, high bit: a CNAME record instead), a 32-bit TTL, a length byte and
 * that many address bytes.
 */
#undef NDEBUG /* the checks below are the point, in every build type */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *p;
    size_t left;
};

static int take(struct input *in, void *out, size_t n)
{
    if (in->left < n)
        return 0;
    memcpy(out, in->p, n);
    in->p += n;
    in->left -= n;
    return 1;
}

static void free_ai(struct ares_addrinfo *ai)
{
    while (ai->nodes) {
        struct ares_addrinfo_node *n = ai->nodes;
        ai->nodes = n->ai_next;
        free(n->ai_addr);
        free(n);
    }
    while (ai->cnames) {
        struct ares_addrinfo_cname *c = ai->cnames;
        ai->cnames = c->next;
        free(c);
    }
}

/* Builds the answer; nodes keep the input's order. */
static void build(struct input *in, struct ares_addrinfo *ai)
{
    struct ares_addrinfo_node **tail = &ai->nodes;
    uint8_t kind, len;
    int32_t ttl;
    while (take(in, &kind, 1) && take(in, &ttl, 4) && take(in, &len, 1)) {
        if (kind & 0x80) {
            struct ares_addrinfo_cname *c = calloc(1, sizeof(*c));
            if (!c)
                return;
            c->ttl = ttl;
            c->next = ai->cnames;
            ai->cnames = c;
            continue;
        }
        static const int families[4] = {AF_INET, AF_INET6, AF_UNSPEC, AF_UNIX};
        size_t alen = len % 40;
        struct ares_addrinfo_node *n = calloc(1, sizeof(*n));
        uint8_t *addr = malloc(alen ? alen : 1);
        if (!n || !addr) {
            free(n);
            free(addr);
            return;
        }
        memset(addr, 0, alen ? alen : 1);
        take(in, addr, alen < in->left ? alen : in->left);
        n->ai_family = families[kind & 3];
        n->ai_ttl = ttl;
        n->ai_addrlen = (ares_socklen_t)alen;
        n->ai_addr = (struct sockaddr *)(void *)addr;
        /* Mostly well-formed: the sockaddr's own family agrees with the node's. */
        if ((kind & 4) == 0 && alen >= sizeof(sa_family_t))
            n->ai_addr->sa_family = (sa_family_t)n->ai_family;
        *tail = n;
        tail = &n->ai_next;
    }
}

static int same_addr(const hk_dns_addr_t *a, const hk_dns_addr_t *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0 &&
           a->in6.sin6_scope_id == b->in6.sin6_scope_id;
}

static void check(const struct ares_addrinfo *ai, int family, hk_dns_order_t order)
{
    hk_dns_addr_t out[HK_DNS_MAX_ADDRS + 1];
    memset(&out[HK_DNS_MAX_ADDRS], 0xa5, sizeof(out[0]));
    unsigned total;
    uint32_t ttl;
    unsigned n = hk__dns_addrs_from_ai(ai, family, order, out, HK_DNS_MAX_ADDRS, &total, &ttl);
    hk_dns_addr_t canary;
    memset(&canary, 0xa5, sizeof(canary));
    assert(memcmp(&out[HK_DNS_MAX_ADDRS], &canary, sizeof(canary)) == 0);
    assert(n <= HK_DNS_MAX_ADDRS && n <= total);
    assert(n > 0 || ttl == 0);
    int seen4 = 0, seen6 = 0;
    for (unsigned i = 0; i < n; i++) {
        int f = out[i].sa.sa_family;
        assert(f == AF_INET || f == AF_INET6);
        assert(family == AF_UNSPEC || f == family);
        assert(hk_dns_addr_len(&out[i]) > 0);
        assert(f == AF_INET ? out[i].in.sin_port == 0 : out[i].in6.sin6_port == 0);
        if (family == AF_UNSPEC && order == HK_DNS_ORDER_IPV4_FIRST)
            assert(!(seen6 && f == AF_INET));
        if (family == AF_UNSPEC && order == HK_DNS_ORDER_IPV6_FIRST)
            assert(!(seen4 && f == AF_INET6));
        seen4 |= f == AF_INET;
        seen6 |= f == AF_INET6;
        for (unsigned j = 0; j < i; j++)
            assert(!same_addr(&out[i], &out[j]));
    }
    /* The TTL is never above any kept node's or any CNAME's. */
    if (n > 0)
        for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
            assert(ttl <= (c->ttl < 0 ? 0u : (uint32_t)c->ttl));

    /* Through the cache and back. */
    struct hk__dns_cache *cache = hk__dns_cache_new(2, 10 * HK__NS_PER_S);
    if (!cache)
        return;
    hk__dns_cache_put(cache, "k", family, 0, out, n, total, (uint64_t)ttl * HK__NS_PER_S, 1);
    hk__dns_cache_put(cache, "neg", family, -ENOENT, NULL, 0, 0, HK__NS_PER_S, 1);
    hk_dns_req_t req;
    memset(&req, 0, sizeof(req));
    int hit = hk__dns_cache_get(cache, "k", family, 2, &req);
    assert(hit == (n > 0 && ttl > 0));
    if (hit) {
        assert(req.result == 0 && req.naddrs == n && req.total == total);
        assert(memcmp(req.addrs, out, n * sizeof(out[0])) == 0);
        assert(req.ttl_s >= 1 && req.ttl_s <= (ttl < 10 ? ttl : 10));
    }
    assert(hk__dns_cache_get(cache, "neg", family, 2, &req) == 1 && req.result == -ENOENT);
    assert(hk__dns_cache_get(cache, "neg", family, 2 + HK__NS_PER_S, &req) == 0);
    hk__dns_cache_free(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    uint8_t fsel = 0, osel = 0, status = 0, nlen = 0;
    take(&in, &fsel, 1);
    take(&in, &osel, 1);
    take(&in, &status, 1);
    take(&in, &nlen, 1);
    static const int families[3] = {AF_UNSPEC, AF_INET, AF_INET6};
    int family = families[fsel % 3];
    hk_dns_order_t order = (hk_dns_order_t)(osel % 3);

    int e = hk__dns_status_errno(status);
    assert(e <= 0 && (status == ARES_SUCCESS) == (e == 0));

    char name[256], key[HK_DNS_NAME_MAX + 1];
    size_t n = nlen < in.left ? nlen : in.left;
    take(&in, name, n);
    name[n] = '\0';
    if (hk__dns_name_key(name, key) == 0) {
        assert(strlen(key) == strlen(name) && strlen(key) <= HK_DNS_NAME_MAX);
        hk_dns_addr_t a;
        int num = hk__dns_numeric(name, family, &a);
        assert(num == 0 || num == 1 || num == -ENODATA);
        if (num == 1)
            assert(family == AF_UNSPEC || a.sa.sa_family == family);
    }

    struct ares_addrinfo ai;
    memset(&ai, 0, sizeof(ai));
    build(&in, &ai);
    check(&ai, family, order);
    free_ai(&ai);
    return 0;
}

#if defined(HK_FUZZ_STANDALONE) && !defined(HK_FUZZ_NO_MAIN)
#include <stdio.h>

/* Without libFuzzer: runs each file named on the command line once. */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            return 1;
        static uint8_t buf[1 << 16];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
    }
    return 0;
}
#endif
