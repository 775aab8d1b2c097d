/*
 * Heads that arrive in pieces: fed one byte at a time, or split in two at
 * every point, a head parses exactly as it does whole; errors show as soon as
 * the prefix proves them; a resumed call reads no byte before the line it
 * stopped in; and no call reads a byte at or past len (a PROT_NONE page right
 * after the buffer turns such a read into a crash).
 */
#include "util.h"

#include <sys/mman.h>
#include <unistd.h>

static const char *const samples[] = {
    "GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    "\r\n\r\nPOST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
    "GET http://h:1/p?q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX: \t v \t\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    /* rejected ones */
    "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h\rX: a\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "G\x01T / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
};

/*
 * Feeds s[0..n) with the given cut points, resuming each time, with the same
 * struct or (fresh) a new one for every call; returns the last result.
 */
static int feed(struct parsed *p, const char *s, size_t n, const size_t *cuts, size_t ncuts,
                int fresh)
{
    parsed_init(p, NHDR);
    p->buf = malloc(n);
    memcpy(p->buf, s, n);
    p->len = n;
    size_t last = 0;
    int r = -EAGAIN;
    for (size_t i = 0; i <= ncuts && r == -EAGAIN; i++) {
        size_t len = i < ncuts ? cuts[i] : n;
        if (fresh)
            parsed_init(p, NHDR);
        r = hk_http_parse_request(&p->req, p->buf, len, last);
        last = len;
    }
    p->r = r;
    return r;
}

Test(incremental, one_byte_at_a_time)
{
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        size_t n = strlen(samples[i]);
        size_t cuts[512];
        for (size_t k = 0; k < n; k++)
            cuts[k] = k + 1;
        struct parsed whole, bytes;
        parse(&whole, samples[i]);
        for (int fresh = 0; fresh <= 1; fresh++) {
            feed(&bytes, samples[i], n, cuts, n - 1, fresh);
            same_result(&whole.req, whole.buf, whole.r, &bytes.req, bytes.buf, bytes.r);
            parsed_free(&bytes);
        }
        parsed_free(&whole);
    }
}

Test(incremental, every_split)
{
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        size_t n = strlen(samples[i]);
        struct parsed whole;
        parse(&whole, samples[i]);
        for (size_t k = 0; k <= n; k++) {
            for (int fresh = 0; fresh <= 1; fresh++) {
                struct parsed two;
                feed(&two, samples[i], n, &k, 1, fresh);
                same_result(&whole.req, whole.buf, whole.r, &two.req, two.buf, two.r);
                parsed_free(&two);
            }
        }
        parsed_free(&whole);
    }
}

Test(incremental, misuse_starts_over)
{
    /* A last_len that is not the previous len, or a moved buffer, parses again from 0. */
    const char *s = samples[0];
    size_t n = strlen(s);
    struct parsed p;
    parsed_init(&p, NHDR);
    char *a = malloc(n), *b = malloc(n);
    memcpy(a, s, n);
    memcpy(b, s, n);
    cr_assert_eq(hk_http_parse_request(&p.req, a, 20, 0), -EAGAIN);
    cr_assert_eq(hk_http_parse_request(&p.req, a, n, 7), (int)n);
    cr_assert_eq(hk_http_parse_request(&p.req, a, 20, 0), -EAGAIN);
    cr_assert_eq(hk_http_parse_request(&p.req, b, n, 20), (int)n);
    cr_assert_eq(p.req.method, b);
    cr_assert_eq(p.req.headers[0].name, b + strlen("GET /index.html?a=1 HTTP/1.1\r\n"));
    cr_assert_eq(hk_http_parse_request(&p.req, b, n, n), (int)n, "a finished head parses again");
    free(a);
    free(b);
}

/* Feeds s byte by byte; returns the length at which the result stopped being -EAGAIN. */
static size_t fails_at(const char *s, hk_http_limits_t limits, size_t max_headers, int *status)
{
    size_t n = strlen(s);
    hk_http_header_t hs[NHDR];
    hk_http_request_t req = {.headers = hs, .max_headers = max_headers, .limits = limits};
    for (size_t len = 1; len <= n; len++) {
        int r = hk_http_parse_request(&req, s, len, len - 1);
        if (r != -EAGAIN) {
            cr_assert_eq(r, -EBADMSG, "\"%s\" at %zu: %d", s, len, r);
            *status = req.status;
            return len;
        }
    }
    cr_assert_fail("\"%s\" never failed", s);
    return 0;
}

Test(incremental, errors_show_early)
{
    hk_http_limits_t none = {0, 0};
    int st;
    cr_assert_eq(fails_at("G(T / HTTP/1.1", none, NHDR, &st), 2);
    cr_assert_eq(st, 400);
    cr_assert_eq(fails_at("GET /a\x01", none, NHDR, &st), 7);
    cr_assert_eq(fails_at("GET / HTTP/1.1\r\nHost: a\r\n b", none, NHDR, &st), 26);
    cr_assert_eq(st, 400);
    cr_assert_eq(fails_at("GET / HTTP/1.1\r\nHost : a", none, NHDR, &st), 21);
    cr_assert_eq(fails_at("GET / HTTP/1.1\r\nHost: a\rX", none, NHDR, &st), 25);
    cr_assert_eq(fails_at("GET / HTTP/1.1\nHost", none, NHDR, &st), 15);
    cr_assert_eq(fails_at("GET / HTTP/2.0\r\nHost", none, NHDR, &st), 16);
    cr_assert_eq(st, 505);
    cr_assert_eq(fails_at("GET / HTTP/1.1\r\nContent-Length: x\r\nHost", none, NHDR, &st), 35);

    /* The request line over its limit, no CRLF yet: 414 when the limit is passed. */
    char line[200];
    memset(line, 'a', sizeof line);
    memcpy(line, "GET /", 5);
    line[sizeof line - 1] = '\0';
    hk_http_limits_t lim = {.max_request_line = 100};
    cr_assert_eq(fails_at(line, lim, NHDR, &st), 102);
    cr_assert_eq(st, 414);
    /* A head over max_head, not complete: 431 when the limit is passed. */
    char head[300] = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    memset(head + strlen(head), 'v', 200);
    lim = (hk_http_limits_t){.max_head = 100};
    cr_assert_eq(fails_at(head, lim, NHDR, &st), 100);
    cr_assert_eq(st, 431);
    /* One header line too many: 431 at its first byte. */
    cr_assert_eq(fails_at("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB", none, 2, &st), 32);
    cr_assert_eq(st, 431);
}

/* With a new struct for every call, errors that any byte proves still show at once. */
Test(incremental, fresh_struct_errors)
{
    static const struct {
        const char *s;
        size_t at;
        int status;
    } cases[] = {
        {"GET /a HTTP/1.1\r\nHost: h\r\nX: a\x01", 31, 400},
        {"GET /a HTTP/1.1\r\nHost: h\nX", 25, 400},
        {"GET /a HTTP/1.1\r\nHost: h\rX", 26, 400},
        {"GET /a HTTP/2.0\r\nHost: h\r\nX: \x7f", 30, 505}, /* the first error wins */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = strlen(cases[i].s);
        hk_http_header_t hs[8];
        size_t len = 1;
        int r = -EAGAIN;
        hk_http_request_t req;
        for (; len <= n; len++) {
            req = (hk_http_request_t){.headers = hs, .max_headers = 8};
            r = hk_http_parse_request(&req, cases[i].s, len, len - 1);
            if (r != -EAGAIN)
                break;
        }
        cr_assert_eq(r, -EBADMSG, "%zu", i);
        cr_assert_eq(len, cases[i].at, "%zu: at %zu", i, len);
        cr_assert_eq(req.status, cases[i].status);
    }
    /* Limits too: 431 as soon as max_head bytes are there without an end. */
    char head[300] = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    memset(head + strlen(head), 'v', 200);
    hk_http_header_t hs[8];
    hk_http_request_t req = {.headers = hs, .max_headers = 8, .limits = {.max_head = 100}};
    cr_assert_eq(hk_http_parse_request(&req, head, 99, 0), -EAGAIN);
    req = (hk_http_request_t){.headers = hs, .max_headers = 8, .limits = {.max_head = 100}};
    cr_assert_eq(hk_http_parse_request(&req, head, 100, 99), -EBADMSG);
    cr_assert_eq(req.status, 431);

    /*
     * A request line after empty lines (which RFC 9112 lets a server skip):
     * its limit counts from where it starts, whatever the split. A call at
     * 103 bytes once answered -EAGAIN and later calls never checked the line
     * again, so the 414 waited for max_head.
     */
    char line[300];
    memcpy(line, "\r\n\r\nGET /", 9);
    memset(line + 9, 'a', sizeof line - 9);
    hk_http_request_t one = {.headers = hs, .max_headers = 8, .limits = {.max_request_line = 100}};
    cr_assert_eq(hk_http_parse_request(&one, line, sizeof line, 0), -EBADMSG);
    cr_assert_eq(one.status, 414);
    for (size_t split = 1; split < sizeof line; split++) {
        req = (hk_http_request_t){
            .headers = hs, .max_headers = 8, .limits = {.max_request_line = 100}};
        int first = hk_http_parse_request(&req, line, split, 0);
        if (first != -EAGAIN)
            continue; /* the 414 already came from the first part */
        req = (hk_http_request_t){
            .headers = hs, .max_headers = 8, .limits = {.max_request_line = 100}};
        cr_assert_eq(hk_http_parse_request(&req, line, sizeof line, split), -EBADMSG,
                     "split at %zu", split);
        cr_assert_eq(req.status, 414, "split at %zu", split);
    }
}

/*
 * A resumed call does not look back: the first page holds complete lines and
 * is made unreadable before the head is finished.
 */
Test(incremental, resume_reads_only_new_bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    char *mem =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(mem != MAP_FAILED);
    const char *start = "GET /x HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    size_t at = strlen(start);
    memcpy(mem, start, at);
    memset(mem + at, 'p', (size_t)page - at - 2);
    memcpy(mem + page - 2, "\r\n", 2);
    const char *rest = "X-Later: value\r\nConnection: close\r\n\r\n";
    memcpy(mem + page, rest, strlen(rest));
    size_t n = (size_t)page + strlen(rest);

    hk_http_header_t hs[8];
    hk_http_request_t req = {.headers = hs, .max_headers = 8};
    cr_assert_eq(hk_http_parse_request(&req, mem, (size_t)page + 4, 0), -EAGAIN);
    cr_assert_eq(mprotect(mem, (size_t)page, PROT_NONE), 0);
    size_t last = (size_t)page + 4;
    int r = -EAGAIN;
    for (size_t len = last + 1; len <= n && r == -EAGAIN; len++) {
        r = hk_http_parse_request(&req, mem, len, last);
        last = len;
    }
    cr_assert_eq(r, (int)n);
    cr_assert_eq(mprotect(mem, (size_t)page, PROT_READ | PROT_WRITE), 0);
    cr_assert_eq(req.num_headers, 4);
    cr_assert(eq(req.headers[2].value, req.headers[2].value_len, "value"));
    cr_assert_eq(req.flags, 0);
    cr_assert(eq(req.path, req.path_len, "/x"));

    /* A new struct for every call: no look back either, until the head ends. */
    cr_assert_eq(mprotect(mem, (size_t)page, PROT_NONE), 0);
    last = (size_t)page + 4;
    for (size_t len = last + 1; len < n; len++) {
        req = (hk_http_request_t){.headers = hs, .max_headers = 8};
        cr_assert_eq(hk_http_parse_request(&req, mem, len, last), -EAGAIN);
        last = len;
    }
    cr_assert_eq(mprotect(mem, (size_t)page, PROT_READ | PROT_WRITE), 0);
    req = (hk_http_request_t){.headers = hs, .max_headers = 8};
    cr_assert_eq(hk_http_parse_request(&req, mem, n, last), (int)n);
    cr_assert_eq(req.num_headers, 4);
    munmap(mem, (size_t)page * 2);
}

/* Every prefix of each sample, placed so that its last byte is the last readable one. */
Test(incremental, guard_page)
{
    long page = sysconf(_SC_PAGESIZE);
    char *mem =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(mem != MAP_FAILED);
    cr_assert_eq(mprotect(mem + page, (size_t)page, PROT_NONE), 0);
    char *end = mem + page;
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        size_t n = strlen(samples[i]);
        struct parsed whole;
        parse(&whole, samples[i]);
        for (size_t k = 0; k <= n; k++) {
            memcpy(end - k, samples[i], k);
            hk_http_header_t hs[NHDR];
            hk_http_request_t req = {.headers = hs, .max_headers = NHDR};
            int r = hk_http_parse_request(&req, end - k, k, 0);
            if (k < n)
                cr_assert(r == -EAGAIN || (r == -EBADMSG && whole.r == -EBADMSG),
                          "prefix %zu of sample %zu: %d", k, i, r);
            else
                same_result(&whole.req, whole.buf, whole.r, &req, end - k, r);
        }
        parsed_free(&whole);
    }
    /* Chunked, response and path parsers at the edge too. */
    const char body[] = "5;x=1\r\nhello\r\n0\r\nT: v\r\n\r\n";
    for (size_t k = 0; k < sizeof body; k++) {
        memcpy(end - k, body, k);
        hk_http_chunked_t dec = {0};
        size_t len = k;
        cr_assert_geq(hk_http_chunked_decode(&dec, end - k, &len), 0);
    }
    const char res[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    for (size_t k = 0; k < sizeof res; k++) {
        memcpy(end - k, res, k);
        hk_http_header_t hs[4];
        hk_http_response_t rs = {.headers = hs, .max_headers = 4};
        int r = hk_http_parse_response(&rs, end - k, k, 0);
        cr_assert(k < sizeof res - 1 ? r == -EAGAIN : r == (int)k);
    }
    const char path[] = "/a/%2e%2E/b%20c/./d%";
    char out[64];
    for (size_t k = 1; k < sizeof path; k++) {
        memcpy(end - k, path, k);
        hk_http_path_decode(end - k, k, out, sizeof out);
    }
    munmap(mem, (size_t)page * 2);
}
