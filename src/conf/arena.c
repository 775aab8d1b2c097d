/*
 * The arena of a parsed tree: chunks of at least 16 KiB that are only
 * appended to, so that a tree of thousands of strings and arrays is freed
 * with one walk over a few chunks, and the caller has one call to make.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "conf/internal.h"

#define HK__ARENA_CHUNK (16u * 1024u)

struct hk__arena {
    hk__arena_t *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

void *hk__arena_alloc(hk__arena_t **a, size_t n)
{
    const size_t align = alignof(max_align_t);
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    hk__arena_t *c = *a;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > HK__ARENA_CHUNK ? n : HK__ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = *a;
        *a = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *hk__arena_strndup(hk__arena_t **a, const char *s, size_t len)
{
    char *d = hk__arena_alloc(a, len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void hk__arena_free(hk__arena_t *a)
{
    while (a) {
        hk__arena_t *next = a->next;
        free(a);
        a = next;
    }
}
