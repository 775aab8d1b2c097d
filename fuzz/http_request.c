/*
 * libFuzzer driver for the HTTP/1.x parsers (hark/http.h).
 *
 * Properties checked beyond "no crash, no sanitizer report" (abort() on a
 * violation):
 *  - a request head fed in pieces, with the same struct resumed, gives
 *    exactly the one-shot result: the same return, status, and every field
 *    at the same offset; an error on a prefix is the error of the whole.
 *    With a new struct for every call too, except that an error may still be
 *    pending (-EAGAIN) where the one-shot parse already saw it;
 *  - the same for response heads (both ways), and for the chunked decoder
 *    (payload, end) decoding in two pieces;
 *  - an accepted request has fields inside the buffer, a method of token
 *    characters, no Content-Length with chunked, at most max_headers headers;
 *  - a decoded path starts with '/', has no "//", "." or ".." segment and no
 *    NUL; a range satisfies first <= last < size; a coding weight is -1 or
 *    0..1000; a parsed date formats and parses back to itself.
 * The first input byte picks the limits, the header array size and the
 * splits; the rest is the input, copied to a block of exactly its size so
 * ASan sees any read past it. Built with -fsanitize=fuzzer under HK_FUZZ=ON
 * (fuzz/CMakeLists.txt), and run as a plain function over the seeds in
 * tests/http/corpus by tests/http/test_corpus.c.
 */
#include <errno.h>
#include <hark/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HDR 16

static void fail(const char *why)
{
    fprintf(stderr, "fuzz-http: %s\n", why);
    abort();
}

static void check(int ok, const char *why)
{
    if (!ok)
        fail(why);
}

static long off(const char *base, const char *p)
{
    return p ? (long)(p - base) : -1;
}

struct req {
    hk_http_request_t r;
    hk_http_header_t h[MAX_HDR];
    int ret;
};

static void req_init(struct req *q, const struct req *proto)
{
    memset(&q->r, 0, sizeof q->r);
    q->r.headers = q->h;
    q->r.max_headers = proto->r.max_headers;
    q->r.limits = proto->r.limits;
}

static void same_request(const struct req *a, const struct req *b, const char *buf)
{
    const hk_http_request_t *x = &a->r, *y = &b->r;
    check(a->ret == b->ret, "request: results differ");
    if (a->ret == -EBADMSG)
        check(x->status == y->status, "request: statuses differ");
    if (a->ret <= 0)
        return;
    check(x->method_id == y->method_id && off(buf, x->method) == off(buf, y->method) &&
              x->method_len == y->method_len && off(buf, x->target) == off(buf, y->target) &&
              x->target_len == y->target_len && x->path_len == y->path_len &&
              off(buf, x->query) == off(buf, y->query) && x->query_len == y->query_len &&
              x->minor_version == y->minor_version && x->num_headers == y->num_headers &&
              off(buf, x->host) == off(buf, y->host) && x->host_len == y->host_len &&
              x->content_length == y->content_length && x->flags == y->flags,
          "request: fields differ");
    for (size_t i = 0; i < x->num_headers; i++)
        check(x->headers[i].name == y->headers[i].name &&
                  x->headers[i].name_len == y->headers[i].name_len &&
                  x->headers[i].value == y->headers[i].value &&
                  x->headers[i].value_len == y->headers[i].value_len,
              "request: headers differ");
}

/* Next cut: steps of 1..16 bytes from a small generator seeded by the control byte. */
static size_t step(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return 1 + (*seed >> 16) % 16;
}

static void range_and_date(const char *s, size_t n)
{
    uint64_t first, last, size = n * 7 + 3;
    if (hk_http_range_parse(s, n, size, &first, &last) == 0)
        check(first <= last && last < size, "range out of bounds");
    int star;
    int w = hk_http_coding_weight(s, n, "gzip", &star);
    check(w >= -1 && w <= 1000 && star >= -1 && star <= 1000, "coding weight out of bounds");
    time_t t;
    if (hk_http_date_parse(s, n, &t) == 0 && t >= 0 && t <= (time_t)253402300799) {
        char d[HK_HTTP_DATE_LEN + 1];
        time_t back;
        hk_http_date_format(t, d);
        check(hk_http_date_parse(d, HK_HTTP_DATE_LEN, &back) == 0 && back == t,
              "date does not round-trip");
    }
}

static void path(const char *s, size_t n)
{
    char out[256];
    ssize_t r = hk_http_path_decode(s, n, out, sizeof out);
    if (r < 0)
        return;
    check((size_t)r <= n && out[r] == '\0' && out[0] == '/', "path: bad result");
    check(memchr(out, '\0', (size_t)r) == NULL, "path: NUL inside");
    for (ssize_t i = 0; i < r; i++) {
        if (out[i] != '/')
            continue;
        const char *seg = out + i + 1;
        size_t len = strcspn(seg, "/");
        check(!(len == 0 && seg[0] == '/'), "path: empty segment");
        check(!(len == 1 && seg[0] == '.') && !(len == 2 && seg[0] == '.' && seg[1] == '.'),
              "path: dot segment left");
    }
}

static void requests(const char *buf, size_t n, unsigned ctl)
{
    struct req whole, inc, fresh;
    memset(&whole, 0, sizeof whole);
    whole.r.max_headers = ctl & 2 ? 3 : MAX_HDR;
    if (ctl & 1) {
        whole.r.limits.max_request_line = 16 + (ctl >> 4) * 8;
        whole.r.limits.max_head = 48 + (ctl >> 4) * 24;
    }
    req_init(&whole, &whole);
    whole.ret = hk_http_parse_request(&whole.r, buf, n, 0);
    req_init(&inc, &whole);
    req_init(&fresh, &whole);
    inc.ret = fresh.ret = -EAGAIN;
    unsigned seed = ctl;
    size_t last = 0;
    while (inc.ret == -EAGAIN || fresh.ret == -EAGAIN) {
        size_t len = ctl & 4 ? last + 1 : last + step(&seed);
        if (len > n)
            len = n;
        if (inc.ret == -EAGAIN)
            inc.ret = hk_http_parse_request(&inc.r, buf, len, last);
        if (fresh.ret == -EAGAIN) {
            req_init(&fresh, &whole);
            fresh.ret = hk_http_parse_request(&fresh.r, buf, len, last);
        }
        if (len == n)
            break;
        last = len;
    }
    same_request(&whole, &inc, buf);
    /* A new struct per call may see an error only when the head ends (or a limit). */
    if (!(fresh.ret == -EAGAIN && whole.ret == -EBADMSG))
        same_request(&whole, &fresh, buf);

    if (whole.ret <= 0)
        return;
    const hk_http_request_t *q = &whole.r;
    check((size_t)whole.ret <= n && q->num_headers <= q->max_headers, "request: bounds");
    check(q->method >= buf && q->method + q->method_len <= buf + whole.ret, "request: method");
    check(q->target > q->method && q->target + q->target_len <= buf + whole.ret, "target");
    check(!(q->flags & HK_HTTP_CHUNKED) || q->content_length == -1, "request: CL with chunked");
    check(q->minor_version == 1 || q->host || !q->host_len, "request: host");
    if (q->minor_version == 1)
        check(q->host != NULL, "request: HTTP/1.1 without Host");
    for (size_t i = 0; i < q->num_headers; i++)
        range_and_date(q->headers[i].value, q->headers[i].value_len);
    if (q->path && q->path_len)
        path(q->path, q->path_len);
}

static void responses(const char *buf, size_t n, unsigned ctl)
{
    hk_http_header_t h1[MAX_HDR], h2[MAX_HDR];
    hk_http_response_t a = {.headers = h1, .max_headers = MAX_HDR};
    hk_http_response_t b = {.headers = h2, .max_headers = MAX_HDR};
    int ra = hk_http_parse_response(&a, buf, n, 0), rb = -EAGAIN;
    unsigned seed = ctl ^ 0x5a;
    for (size_t last = 0, len; rb == -EAGAIN && last < n; last = len) {
        len = last + step(&seed);
        if (len > n)
            len = n;
        rb = hk_http_parse_response(&b, buf, len, last);
    }
    if (n == 0)
        rb = hk_http_parse_response(&b, buf, 0, 0);
    check(ra == rb, "response: results differ");
    /* A new struct for every call: the same answer once the head ends. */
    int rc = -EAGAIN;
    for (size_t last = 0, len; rc == -EAGAIN && last < n; last = len) {
        len = last + step(&seed);
        if (len > n)
            len = n;
        hk_http_response_t c = {.headers = h2, .max_headers = MAX_HDR};
        rc = hk_http_parse_response(&c, buf, len, last);
    }
    check(rc == ra || (rc == -EAGAIN && ra == -EBADMSG) || n == 0, "response: fresh differs");
    if (ra <= 0)
        return;
    check(a.status == b.status && a.content_length == b.content_length && a.flags == b.flags &&
              a.num_headers == b.num_headers && a.reason == b.reason &&
              a.reason_len == b.reason_len && a.status >= 100 && a.status <= 599,
          "response: fields differ");
}

/* The input decoded whole, then in two pieces at a point the control byte picks. */
static void chunked(const char *in, size_t n, unsigned ctl)
{
    char *a = malloc(n + 1), *b = malloc(n + 1);
    memcpy(a, in, n);
    memcpy(b, in, n);
    hk_http_chunked_t da = {0}, db = {0};
    size_t la = n;
    int ra = hk_http_chunked_decode(&da, a, &la);
    size_t cut = n ? (ctl * 37u) % (n + 1) : 0, l1 = cut, l2 = n - cut;
    int rb = hk_http_chunked_decode(&db, b, &l1);
    size_t total = l1, end = db.end_offset;
    if (rb == 0) {
        memmove(b + l1, b + cut, l2);
        rb = hk_http_chunked_decode(&db, b + l1, &l2);
        total += l2;
        end = cut + db.end_offset;
    }
    check(ra == rb, "chunked: results differ");
    if (ra >= 0) {
        check(la == total && memcmp(a, b, la) == 0, "chunked: payloads differ");
        check(ra == 0 || da.end_offset == end, "chunked: ends differ");
        check(ra == 0 || memcmp(a + da.end_offset, in + da.end_offset, n - da.end_offset) == 0,
              "chunked: bytes after the end were touched");
    }
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned ctl = data[0];
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    memcpy(buf, data + 1, n);
    requests(buf, n, ctl);
    responses(buf, n, ctl);
    chunked(buf, n, ctl);
    path(buf, n);
    range_and_date(buf, n);
    free(buf);
    return 0;
}
