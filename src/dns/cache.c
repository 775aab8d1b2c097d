/*
 * The answer cache: an LRU keyed by (lower-cased name, family).
 *
 * Why a cache of our own: c-ares 1.18 has none, and a server that opens a
 * connection per request to the same upstream would otherwise send two
 * queries (A and AAAA) per connection. An entry is kept for the smallest TTL
 * of its answer, capped by cache_max_ttl_s; an answer with TTL 0 (/etc/hosts
 * entries, or servers that ask not to be cached) is not kept. "No such name"
 * and "no address of this family" have no TTL we can see (c-ares does not
 * hand over the SOA's minimum), so they are kept for a short fixed time,
 * negative_ttl_s, enough to absorb a burst of retries against a typo.
 *
 * The table is a chained hash with a fixed bucket count (a power of two at
 * least the capacity) and an LRU list through the same entries; when full,
 * the least recently used entry goes. Expired entries are dropped when met.
 */
#include <stdlib.h>

#include "dns/internal.h"

struct entry {
    struct entry *hnext;               /* hash chain */
    struct entry *lru_prev, *lru_next; /* most recent at head */
    uint64_t expires;
    uint32_t hash;
    int family;
    int result;
    unsigned n, total;
    hk_dns_addr_t *addrs; /* inside the same block, after the name */
    char key[];
};

struct hk__dns_cache {
    struct entry **buckets;
    uint32_t mask;
    unsigned count, cap;
    uint64_t max_ttl_ns;
    struct entry *lru_head, *lru_tail;
};

static uint32_t hash_of(const char *key, int family)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

struct hk__dns_cache *hk__dns_cache_new(unsigned entries, uint64_t max_ttl_ns)
{
    struct hk__dns_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    uint32_t nb = 16;
    while (nb < entries && nb < (UINT32_C(1) << 24))
        nb <<= 1;
    c->buckets = calloc(nb, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->mask = nb - 1;
    c->cap = entries;
    c->max_ttl_ns = max_ttl_ns;
    return c;
}

static void lru_unlink(struct hk__dns_cache *c, struct entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
}

static void lru_push_head(struct hk__dns_cache *c, struct entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    else
        c->lru_tail = e;
    c->lru_head = e;
}

static void entry_remove(struct hk__dns_cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[e->hash & c->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->count--;
    free(e);
}

void hk__dns_cache_clear(struct hk__dns_cache *c)
{
    while (c->lru_head)
        entry_remove(c, c->lru_head);
}

void hk__dns_cache_free(struct hk__dns_cache *c)
{
    if (!c)
        return;
    hk__dns_cache_clear(c);
    free(c->buckets);
    free(c);
}

unsigned hk__dns_cache_count(const struct hk__dns_cache *c)
{
    return c ? c->count : 0;
}

static struct entry *find(struct hk__dns_cache *c, const char *key, int family, uint32_t h)
{
    for (struct entry *e = c->buckets[h & c->mask]; e; e = e->hnext)
        if (e->hash == h && e->family == family && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

void hk__dns_cache_put(struct hk__dns_cache *c, const char *key, int family, int result,
                       const hk_dns_addr_t *addrs, unsigned n, unsigned total, uint64_t ttl_ns,
                       uint64_t now)
{
    if (c->cap == 0 || (result == 0 && n == 0))
        return;
    if (result == 0 && ttl_ns > c->max_ttl_ns)
        ttl_ns = c->max_ttl_ns;
    uint32_t h = hash_of(key, family);
    struct entry *old = find(c, key, family, h);
    if (old)
        entry_remove(c, old);
    if (ttl_ns == 0)
        return;
    if (result != 0)
        n = 0;
    size_t klen = strlen(key) + 1;
    /* The addresses follow the name, aligned for hk_dns_addr_t. */
    size_t off = (sizeof(struct entry) + klen + _Alignof(hk_dns_addr_t) - 1) &
                 ~(size_t)(_Alignof(hk_dns_addr_t) - 1);
    struct entry *e = malloc(off + n * sizeof(hk_dns_addr_t));
    if (!e)
        return;
    memcpy(e->key, key, klen);
    e->addrs = (hk_dns_addr_t *)(void *)((char *)e + off);
    if (n)
        memcpy(e->addrs, addrs, n * sizeof(hk_dns_addr_t));
    e->n = n;
    e->total = result == 0 ? total : 0;
    e->result = result;
    e->family = family;
    e->hash = h;
    e->expires = now + ttl_ns;
    while (c->count >= c->cap && c->lru_tail)
        entry_remove(c, c->lru_tail);
    e->hnext = c->buckets[h & c->mask];
    c->buckets[h & c->mask] = e;
    lru_push_head(c, e);
    c->count++;
}

int hk__dns_cache_get(struct hk__dns_cache *c, const char *key, int family, uint64_t now,
                      hk_dns_req_t *req)
{
    struct entry *e = find(c, key, family, hash_of(key, family));
    if (!e)
        return 0;
    if (now >= e->expires) {
        entry_remove(c, e);
        return 0;
    }
    lru_unlink(c, e);
    lru_push_head(c, e);
    req->result = e->result;
    req->naddrs = e->n;
    req->total = e->total;
    if (e->n)
        memcpy(req->addrs, e->addrs, e->n * sizeof(hk_dns_addr_t));
    /* What is left of the TTL, rounded up: a live entry never reports 0. */
    req->ttl_s = (uint32_t)((e->expires - now + HK__NS_PER_S - 1) / HK__NS_PER_S);
    return 1;
}
