/*
 * The open-file cache: a chained hash table plus an LRU list, one per worker
 * (no locks: only the worker's thread touches it).
 */
#include "fcache.h"

#include <hark.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"

struct httpd_fcache {
    unsigned cap, count, mask;
    uint64_t ttl;
    httpd_file_t **buckets;
    httpd_file_t *lru_head, *lru_tail;
};

static uint32_t fc_hash(uint64_t root, const char *path, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)(root ^ (root >> 32)); /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)path[i]) * 16777619u;
    return h;
}

void httpd_fcache_set_ttl(httpd_fcache_t *c, uint64_t ttl_ns)
{
    if (c)
        c->ttl = ttl_ns;
}

httpd_fcache_t *httpd_fcache_new(unsigned cap, uint64_t ttl_ns)
{
    httpd_fcache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    unsigned n = 16;
    while (n < cap * 2u && n < (1u << 20))
        n <<= 1;
    c->buckets = calloc(n, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->cap = cap;
    c->ttl = ttl_ns;
    return c;
}

static void fc_unlink(httpd_fcache_t *c, httpd_file_t *f)
{
    httpd_file_t **pp = &c->buckets[f->hash & c->mask];
    while (*pp != f)
        pp = &(*pp)->hnext;
    *pp = f->hnext;
    if (f->lprev)
        f->lprev->lnext = f->lnext;
    else
        c->lru_head = f->lnext;
    if (f->lnext)
        f->lnext->lprev = f->lprev;
    else
        c->lru_tail = f->lprev;
    f->hnext = f->lprev = f->lnext = NULL;
    f->cached = false;
    c->count--;
    httpd_file_unref(f);
}

void httpd_fcache_free(httpd_fcache_t *c)
{
    if (!c)
        return;
    while (c->lru_head)
        fc_unlink(c, c->lru_head);
    free(c->buckets);
    free(c);
}

static httpd_file_t *fc_find(const httpd_fcache_t *c, uint64_t root, uint32_t hash,
                             const char *path, size_t len)
{
    for (httpd_file_t *o = c->buckets[hash & c->mask]; o; o = o->hnext) {
        if (o->hash == hash && o->root == root && o->path_len == len &&
            memcmp(o->path, path, len) == 0)
            return o;
    }
    return NULL;
}

httpd_file_t *httpd_fcache_get(httpd_fcache_t *c, uint64_t root, const char *path, size_t len,
                               uint64_t now, bool *fresh)
{
    *fresh = false;
    if (!c->cap)
        return NULL;
    httpd_file_t *f = fc_find(c, root, fc_hash(root, path, len), path, len);
    if (f) {
        *fresh = now - f->validated <= c->ttl; /* stale: the caller revalidates */
        if (f != c->lru_head) {                /* move to the front */
            f->lprev->lnext = f->lnext;
            if (f->lnext)
                f->lnext->lprev = f->lprev;
            else
                c->lru_tail = f->lprev;
            f->lprev = NULL;
            f->lnext = c->lru_head;
            c->lru_head->lprev = f;
            c->lru_head = f;
        }
        return httpd_file_ref(f);
    }
    return NULL;
}

static void fc_etag(httpd_file_t *f, const struct stat *st)
{
    /*
     * Cheap and strong enough for a static file: mtime to the nanosecond and
     * size (nginx uses whole seconds, so two versions written within one
     * second at the same size share its tag).
     */
    int n = snprintf(f->etag, sizeof(f->etag), "\"%llx.%lx-%llx\"",
                     (unsigned long long)st->st_mtim.tv_sec, (unsigned long)st->st_mtim.tv_nsec,
                     (unsigned long long)st->st_size);
    f->etag_len = n > 0 && (size_t)n < sizeof(f->etag) ? (unsigned)n : 0;
    hk_http_date_format(st->st_mtime, f->lastmod);
}

httpd_file_t *httpd_file_new(uint64_t root, const char *path, size_t len, int fd,
                             const struct stat *st, uint64_t now)
{
    httpd_file_t *f = calloc(1, sizeof(*f) + len + 1);
    if (!f) {
        close(fd);
        return NULL;
    }
    f->refs = 1;
    f->root = root;
    f->hash = fc_hash(root, path, len);
    f->fd = fd;
    f->size = (uint64_t)st->st_size;
    f->mtime = st->st_mtime;
    f->mtim = st->st_mtim;
    f->ctim = st->st_ctim;
    f->ino = st->st_ino;
    f->dev = st->st_dev;
    f->validated = now;
    f->path_len = len;
    memcpy(f->path, path, len);
    f->mime = httpd_mime_type(path, len);
    fc_etag(f, st);
    return f;
}

httpd_file_t *httpd_file_absent(uint64_t root, const char *path, size_t len, uint64_t now)
{
    httpd_file_t *f = calloc(1, sizeof(*f) + len + 1);
    if (!f)
        return NULL;
    f->refs = 1;
    f->absent = true;
    f->root = root;
    f->hash = fc_hash(root, path, len);
    f->fd = -1;
    f->validated = now;
    f->path_len = len;
    memcpy(f->path, path, len);
    return f;
}

bool httpd_file_same(const httpd_file_t *f, const struct stat *st)
{
    if (f->absent)
        return false;
    return f->ino == st->st_ino && f->dev == st->st_dev && f->size == (uint64_t)st->st_size &&
           f->mtim.tv_sec == st->st_mtim.tv_sec && f->mtim.tv_nsec == st->st_mtim.tv_nsec &&
           f->ctim.tv_sec == st->st_ctim.tv_sec && f->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

static void fc_put(httpd_fcache_t *c, httpd_file_t *f, bool evict)
{
    if (!c->cap || f->cached)
        return;
    httpd_file_t *o = fc_find(c, f->root, f->hash, f->path, f->path_len);
    if (o)
        fc_unlink(c, o);
    else if (!evict && c->count >= c->cap)
        return;
    while (c->count >= c->cap && c->lru_tail)
        fc_unlink(c, c->lru_tail);
    f->refs++;
    f->cached = true;
    f->hnext = c->buckets[f->hash & c->mask];
    c->buckets[f->hash & c->mask] = f;
    f->lprev = NULL;
    f->lnext = c->lru_head;
    if (c->lru_head)
        c->lru_head->lprev = f;
    else
        c->lru_tail = f;
    c->lru_head = f;
    c->count++;
}

void httpd_fcache_put(httpd_fcache_t *c, httpd_file_t *f)
{
    fc_put(c, f, true);
}

void httpd_fcache_put_spare(httpd_fcache_t *c, httpd_file_t *f)
{
    fc_put(c, f, false);
}

void httpd_fcache_drop_absent(httpd_fcache_t *c, uint64_t root, const char *path, size_t len)
{
    if (!c->cap)
        return;
    httpd_file_t *o = fc_find(c, root, fc_hash(root, path, len), path, len);
    if (o && o->absent)
        fc_unlink(c, o);
}

void httpd_fcache_drop(httpd_fcache_t *c, httpd_file_t *f)
{
    if (f->cached)
        fc_unlink(c, f);
}

void httpd_fcache_touch(httpd_file_t *f, uint64_t now)
{
    f->validated = now;
}

httpd_file_t *httpd_file_ref(httpd_file_t *f)
{
    f->refs++;
    return f;
}

void httpd_file_unref(httpd_file_t *f)
{
    if (!f || --f->refs > 0)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->data);
    free(f);
}

unsigned httpd_fcache_count(const httpd_fcache_t *c)
{
    return c->count;
}
