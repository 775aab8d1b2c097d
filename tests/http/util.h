/*
 * Shared helpers of the http tests: requests parsed from a heap copy of
 * exactly their length (so ASan sees any read past it), and the comparison of
 * two parse results by offsets, for the incremental-equals-one-shot checks.
 */
#ifndef HK_TEST_HTTP_UTIL_H
#define HK_TEST_HTTP_UTIL_H

#include <criterion/criterion.h>
#include <hark.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NHDR 64

struct parsed {
    hk_http_request_t req;
    hk_http_header_t headers[NHDR];
    char *buf;
    size_t len;
    int r;
};

static inline void parsed_init(struct parsed *p, size_t max_headers)
{
    memset(&p->req, 0, sizeof p->req);
    p->req.headers = p->headers;
    p->req.max_headers = max_headers;
}

/* Parses s[0..len) in one call from a heap copy; free with parsed_free. */
static inline int parse_n(struct parsed *p, const char *s, size_t len)
{
    parsed_init(p, NHDR);
    p->buf = malloc(len ? len : 1);
    cr_assert(p->buf);
    memcpy(p->buf, s, len);
    p->len = len;
    p->r = hk_http_parse_request(&p->req, p->buf, len, 0);
    return p->r;
}

static inline int parse(struct parsed *p, const char *s)
{
    return parse_n(p, s, strlen(s));
}

static inline void parsed_free(struct parsed *p)
{
    free(p->buf);
    p->buf = NULL;
}

/* Parses s and expects a rejection with this status; returns nothing. */
static inline void expect_status(const char *s, int status)
{
    struct parsed p;
    int r = parse(&p, s);
    cr_assert_eq(r, -EBADMSG, "expected %d, got r=%d for \"%s\"", status, r, s);
    cr_assert_eq(p.req.status, status, "expected %d, got %d (%s) for \"%s\"", status, p.req.status,
                 p.req.error, s);
    cr_assert(p.req.error != NULL);
    parsed_free(&p);
}

static inline long off(const char *base, const char *p)
{
    return p ? (long)(p - base) : -1;
}

/* Equality of two parses of the same bytes (in buffers a and b) by offsets. */
static inline void same_result(const hk_http_request_t *x, const char *a, int ra,
                               const hk_http_request_t *y, const char *b, int rb)
{
    cr_assert_eq(ra, rb, "results %d and %d", ra, rb);
    if (ra == -EBADMSG) {
        cr_assert_eq(x->status, y->status, "statuses %d (%s) and %d (%s)", x->status, x->error,
                     y->status, y->error);
        return;
    }
    if (ra < 0)
        return;
    cr_assert_eq(x->method_id, y->method_id);
    cr_assert_eq(off(a, x->method), off(b, y->method));
    cr_assert_eq(x->method_len, y->method_len);
    cr_assert_eq(off(a, x->target), off(b, y->target));
    cr_assert_eq(x->target_len, y->target_len);
    cr_assert_eq(x->path_len, y->path_len);
    cr_assert_eq(off(a, x->query), off(b, y->query));
    cr_assert_eq(x->query_len, y->query_len);
    cr_assert_eq(x->minor_version, y->minor_version);
    cr_assert_eq(x->num_headers, y->num_headers);
    cr_assert_eq(off(a, x->host), off(b, y->host));
    cr_assert_eq(x->host_len, y->host_len);
    cr_assert_eq(x->content_length, y->content_length);
    cr_assert_eq(x->flags, y->flags);
    for (size_t i = 0; i < x->num_headers; i++) {
        cr_assert_eq(off(a, x->headers[i].name), off(b, y->headers[i].name));
        cr_assert_eq(x->headers[i].name_len, y->headers[i].name_len);
        cr_assert_eq(off(a, x->headers[i].value), off(b, y->headers[i].value));
        cr_assert_eq(x->headers[i].value_len, y->headers[i].value_len);
    }
}

static inline int eq(const char *p, size_t n, const char *s)
{
    return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

#endif
