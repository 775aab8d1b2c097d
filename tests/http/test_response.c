/*
 * Response heads from an upstream: the status line, framing headers, the
 * keep-alive rules, rejections, and incremental parsing.
 */
#include "util.h"

struct resp {
    hk_http_response_t res;
    hk_http_header_t headers[16];
    char *buf;
    int r;
};

static int parse_res(struct resp *p, const char *s)
{
    size_t n = strlen(s);
    memset(&p->res, 0, sizeof p->res);
    p->res.headers = p->headers;
    p->res.max_headers = 16;
    p->buf = malloc(n ? n : 1);
    memcpy(p->buf, s, n);
    p->r = hk_http_parse_response(&p->res, p->buf, n, 0);
    return p->r;
}

static void expect_bad(const char *s)
{
    struct resp p;
    cr_assert_eq(parse_res(&p, s), -EBADMSG, "accepted: %s", s);
    cr_assert_not_null(p.res.error);
    free(p.buf);
}

Test(response, status_line_and_headers)
{
    const char *s = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nServer: up\r\n\r\nnot found";
    struct resp p;
    cr_assert_eq(parse_res(&p, s), (int)strlen(s) - 9);
    cr_assert_eq(p.res.status, 404);
    cr_assert_eq(p.res.minor_version, 1);
    cr_assert(eq(p.res.reason, p.res.reason_len, "Not Found"));
    cr_assert_eq(p.res.content_length, 9);
    cr_assert_eq(p.res.num_headers, 2);
    cr_assert(eq(p.res.headers[1].value, p.res.headers[1].value_len, "up"));
    cr_assert_eq(p.res.flags, HK_HTTP_KEEP_ALIVE);
    free(p.buf);

    cr_assert_gt(parse_res(&p, "HTTP/1.1 204\r\n\r\n"), 0, "no reason, no SP");
    cr_assert_eq(p.res.status, 204);
    cr_assert_eq(p.res.reason_len, 0);
    free(p.buf);
    cr_assert_gt(parse_res(&p, "HTTP/1.1 200 \r\n\r\n"), 0, "empty reason");
    cr_assert_eq(p.res.reason_len, 0);
    free(p.buf);
    cr_assert_gt(parse_res(&p, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), 0);
    cr_assert_eq(p.res.minor_version, 0);
    cr_assert_eq(p.res.flags, HK_HTTP_KEEP_ALIVE);
    cr_assert_eq(p.res.content_length, -1);
    free(p.buf);
    cr_assert_gt(parse_res(&p, "HTTP/1.0 200 OK\r\n\r\n"), 0);
    cr_assert_eq(p.res.flags, 0);
    free(p.buf);
    cr_assert_gt(parse_res(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                               "Connection: close\r\n\r\n"),
                 0);
    cr_assert_eq(p.res.flags, HK_HTTP_CHUNKED);
    free(p.buf);
    cr_assert_gt(parse_res(&p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
                 0, "equal duplicates are one length");
    cr_assert_eq(p.res.content_length, 5);
    free(p.buf);
    cr_assert_gt(parse_res(&p, "HTTP/1.1 599 Whatever \t\xff\r\n\r\n"), 0);
    free(p.buf);
}

Test(response, rejections)
{
    expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    expect_bad("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n");
    expect_bad("HTTP/2.0 200 OK\r\n\r\n");
    expect_bad("HTTP/1.1 099 Low\r\n\r\n");
    expect_bad("HTTP/1.1 600 High\r\n\r\n");
    expect_bad("HTTP/1.1 20 OK\r\n\r\n");
    expect_bad("HTTP/1.1 2000 OK\r\n\r\n");
    expect_bad("HTTP/1.1  200 OK\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\nServer: x\n\n");
    expect_bad("HTTP/1.1 200 OK\r\nServer: x\r\n y\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nServer : x\r\n\r\n");
    expect_bad("HTTP/1.1 200 O\x01K\r\n\r\n");
    expect_bad("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n");
    expect_bad("\r\nHTTP/1.1 200 OK\r\n\r\n");
    expect_bad("ICY 200 OK\r\n\r\n");
}

Test(response, limits_and_pieces)
{
    const char *s = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n";
    size_t n = strlen(s);
    hk_http_header_t hs[3];
    hk_http_response_t res = {.headers = hs, .max_headers = 3};
    cr_assert_eq(hk_http_parse_response(&res, s, n, 0), (int)n);
    res.max_headers = 2;
    cr_assert_eq(hk_http_parse_response(&res, s, n, 0), -EBADMSG);
    res.max_headers = 3;
    res.max_head = n - 1;
    cr_assert_eq(hk_http_parse_response(&res, s, n, 0), -EBADMSG);
    res.max_head = 0;
    /* One byte at a time, then every split: same fields as whole. */
    for (size_t k = 0; k <= n; k++) {
        hk_http_response_t a = {.headers = hs, .max_headers = 3};
        int r;
        if (k == 0) { /* one byte at a time */
            r = -EAGAIN;
            for (size_t len = 1; len <= n && r == -EAGAIN; len++)
                r = hk_http_parse_response(&a, s, len, len - 1);
        } else { /* in two pieces */
            r = hk_http_parse_response(&a, s, k, 0);
            if (r == -EAGAIN)
                r = hk_http_parse_response(&a, s, n, k);
        }
        cr_assert_eq(r, (int)n, "split %zu: %d", k, r);
        cr_assert_eq(a.status, 200);
        cr_assert_eq(a.num_headers, 3);
        cr_assert_eq(a.content_length, 0);
        cr_assert_eq(a.reason, s + 13);
        cr_assert_eq(hs[1].value, s + 26);
    }
}
