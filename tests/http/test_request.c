/*
 * Request heads: what is accepted and what each field holds, pipelining,
 * the target forms, the derived flags, and every rejection with its status.
 */
#include "util.h"

Test(request, get_with_many_headers)
{
    const char *s = "GET /index.html?a=1&b=2 HTTP/1.1\r\n"
                    "Host: example.com:8080\r\n"
                    "User-Agent: test/1.0\r\n"
                    "Accept: */*\r\n"
                    "Accept-Encoding: gzip, br\r\n"
                    "X-Spaces: \t  padded value \t \r\n"
                    "X-Empty:\r\n"
                    "X-Obs-Text: caf\xc3\xa9\r\n"
                    "Cookie: a=b; c=d\r\n"
                    "X-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-E: 5\r\nX-F: 6\r\n"
                    "\r\n";
    struct parsed p;
    int r = parse(&p, s);
    cr_assert_eq(r, (int)strlen(s), "r=%d (%s)", r, p.req.error);
    hk_http_request_t *q = &p.req;
    cr_assert_eq(q->method_id, HK_HTTP_GET);
    cr_assert(eq(q->method, q->method_len, "GET"));
    cr_assert(eq(q->target, q->target_len, "/index.html?a=1&b=2"));
    cr_assert(eq(q->path, q->path_len, "/index.html"));
    cr_assert(eq(q->query, q->query_len, "a=1&b=2"));
    cr_assert_eq(q->minor_version, 1);
    cr_assert(eq(q->host, q->host_len, "example.com:8080"));
    cr_assert_eq(q->content_length, -1);
    cr_assert_eq(q->flags, HK_HTTP_KEEP_ALIVE);
    cr_assert_eq(q->num_headers, 14);
    cr_assert(eq(q->headers[0].name, q->headers[0].name_len, "Host"));
    cr_assert(eq(q->headers[4].value, q->headers[4].value_len, "padded value"));
    cr_assert(eq(q->headers[5].name, q->headers[5].name_len, "X-Empty"));
    cr_assert_eq(q->headers[5].value_len, 0);
    cr_assert(eq(q->headers[6].value, q->headers[6].value_len, "caf\xc3\xa9"));
    cr_assert(eq(q->headers[13].value, q->headers[13].value_len, "6"));
    const hk_http_header_t *h = hk_http_find_header(q->headers, q->num_headers, "user-AGENT");
    cr_assert(h && eq(h->value, h->value_len, "test/1.0"));
    cr_assert_null(hk_http_find_header(q->headers, q->num_headers, "User-Agen"));
    cr_assert_null(hk_http_find_header(q->headers, q->num_headers, "Missing"));
    /* Only letters fold: '\r' | 0x20 is '-', yet "X\rA" is not "X-A". */
    cr_assert_null(hk_http_find_header(q->headers, q->num_headers, "X\rA"));
    cr_assert_not_null(hk_http_find_header(q->headers, q->num_headers, "x-a"));
    parsed_free(&p);
}

Test(request, methods)
{
    static const struct {
        const char *m;
        hk_http_method_t id;
    } cases[] = {
        {"GET", HK_HTTP_GET},     {"HEAD", HK_HTTP_HEAD},      {"POST", HK_HTTP_POST},
        {"PUT", HK_HTTP_PUT},     {"DELETE", HK_HTTP_DELETE},  {"OPTIONS", HK_HTTP_OPTIONS},
        {"PATCH", HK_HTTP_PATCH}, {"TRACE", HK_HTTP_TRACE},    {"PROPFIND", HK_HTTP_OTHER},
        {"get", HK_HTTP_OTHER},   {"M-SEARCH", HK_HTTP_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char s[128];
        snprintf(s, sizeof s, "%s /x HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].m);
        struct parsed p;
        cr_assert_gt(parse(&p, s), 0, "%s: %s", cases[i].m, p.req.error);
        cr_assert_eq(p.req.method_id, cases[i].id, "%s", cases[i].m);
        cr_assert(eq(p.req.method, p.req.method_len, cases[i].m));
        parsed_free(&p);
    }
}

Test(request, pipelined)
{
    const char *s = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                    "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
                    "GET /c HTTP/1.0\r\n\r\n";
    size_t len = strlen(s);
    char *buf = malloc(len);
    memcpy(buf, s, len);
    hk_http_header_t hs[8];
    hk_http_request_t req = {.headers = hs, .max_headers = 8};
    int r = hk_http_parse_request(&req, buf, len, 0);
    cr_assert_gt(r, 0);
    cr_assert_eq(req.content_length, 5);
    cr_assert(eq(req.path, req.path_len, "/a"));
    size_t at = (size_t)r + 5;
    r = hk_http_parse_request(&req, buf + at, len - at, 0);
    cr_assert_gt(r, 0);
    cr_assert(eq(req.path, req.path_len, "/b"));
    cr_assert_eq(req.content_length, -1);
    cr_assert_eq(req.num_headers, 1);
    at += (size_t)r;
    r = hk_http_parse_request(&req, buf + at, len - at, 0);
    cr_assert_eq((size_t)r, len - at);
    cr_assert(eq(req.path, req.path_len, "/c"));
    cr_assert_eq(req.minor_version, 0);
    cr_assert_null(req.host);
    cr_assert_eq(req.flags, 0, "HTTP/1.0 closes by default");
    free(buf);
}

Test(request, leading_empty_lines)
{
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    struct parsed p;
    cr_assert_eq(parse(&p, s), (int)strlen(s), "skipped lines count in the result");
    cr_assert_eq(p.req.method, p.buf + 4);
    parsed_free(&p);
    expect_status("\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

Test(request, absolute_form)
{
    struct parsed p;
    cr_assert_gt(parse(&p, "GET http://Example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n"),
                 0);
    cr_assert(eq(p.req.host, p.req.host_len, "Example.com:8080"), "the target's authority wins");
    cr_assert(eq(p.req.path, p.req.path_len, "/a/b"));
    cr_assert(eq(p.req.query, p.req.query_len, "x=1"));
    cr_assert(eq(p.req.target, p.req.target_len, "http://Example.com:8080/a/b?x=1"));
    parsed_free(&p);
    cr_assert_gt(parse(&p, "GET HTTPS://h?q HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert(eq(p.req.path, p.req.path_len, "/"));
    cr_assert(eq(p.req.query, p.req.query_len, "q"));
    parsed_free(&p);
    expect_status("GET http://h/ HTTP/1.1\r\n\r\n", 400);           /* Host still required */
    expect_status("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", 400); /* empty authority */
    expect_status("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

Test(request, options_star_and_connect)
{
    struct parsed p;
    cr_assert_gt(parse(&p, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(p.req.method_id, HK_HTTP_OPTIONS);
    cr_assert(eq(p.req.path, p.req.path_len, "*"));
    cr_assert_null(p.req.query);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 0);
    cr_assert(eq(p.req.target, p.req.target_len, "example.com:443"));
    cr_assert_eq(p.req.path_len, 0);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), 0);
    parsed_free(&p);
    expect_status("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

/*
 * CONNECT's authority-form is uri-host ":" port (RFC 9112 section 3.2.3): one
 * host, which holds no ':' outside an IP literal's brackets, and an http(s) URI
 * or authority with an empty host is invalid (RFC 9110 section 4.2.1: a
 * recipient must reject it). A proxy that tunnels to what it was given must not
 * be handed "h:80:443" or ":443".
 */
Test(request, authority_form_and_absolute_form_need_one_non_empty_host)
{
    struct parsed p;
    cr_assert_gt(parse(&p, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"), 0);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "CONNECT [v1.x:y]:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "GET http://[::1]:8080/ HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    cr_assert(eq(p.req.host, p.req.host_len, "[::1]:8080"));
    parsed_free(&p);
    expect_status("CONNECT h:80:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT ::443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT :80:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("CONNECT [::1]:80:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET http://:8080/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET https://:443?q HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

Test(request, versions)
{
    struct parsed p;
    cr_assert_gt(parse(&p, "GET / HTTP/1.0\r\n\r\n"), 0);
    cr_assert_eq(p.req.minor_version, 0);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 0);
    cr_assert_eq(p.req.minor_version, 1, "a later 1.x is answered as 1.1");
    parsed_free(&p);
    expect_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    expect_status("GET / HTTP/0.9\r\n\r\n", 505);
    expect_status("GET / HTTP/3.1\r\n\r\n", 505);
    expect_status("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    expect_status("GET /\r\n\r\n", 400);
    expect_status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

Test(request, framing_rejections)
{
#define H "POST / HTTP/1.1\r\nHost: h\r\n"
    expect_status(H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_status(H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
    expect_status(H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400);
    expect_status(H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    static const char *const bad_lengths[] = {
        "abc",
        "-1",
        "+1",
        "",
        "1,1",
        "1, 1",
        "1 1",
        "0x10",
        "99999999999999999999",
        "9223372036854775808",
        "1.0",
        "\xd9\xa1",
    };
    for (size_t i = 0; i < sizeof bad_lengths / sizeof *bad_lengths; i++) {
        char s[256];
        snprintf(s, sizeof s, H "Content-Length: %s\r\n\r\n", bad_lengths[i]);
        expect_status(s, 400);
    }
    expect_status(H "Transfer-Encoding: chunked, identity\r\n\r\n", 501);
    expect_status(H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_status(H "Transfer-Encoding: identity\r\n\r\n", 501);
    expect_status(H "Transfer-Encoding: gzip\r\n\r\n", 501);
    expect_status(H "Transfer-Encoding: chunked;q=1\r\n\r\n", 501);
    expect_status(H "Transfer-Encoding:\r\n\r\n", 400);
    expect_status(H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_status("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
#undef H
    struct parsed p;
    cr_assert_gt(parse(&p, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0042\r\n\r\n"), 0);
    cr_assert_eq(p.req.content_length, 42);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "POST / HTTP/1.1\r\nHost: h\r\ncontent-length:  9223372036854775807 "
                           "\r\n\r\n"),
                 0);
    cr_assert_eq(p.req.content_length, INT64_MAX);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"), 0);
    cr_assert_eq(p.req.flags, HK_HTTP_KEEP_ALIVE | HK_HTTP_CHUNKED);
    cr_assert_eq(p.req.content_length, -1);
    parsed_free(&p);
}

Test(request, host_rules)
{
    expect_status("GET / HTTP/1.1\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400); /* a port, no host */
    expect_status("GET / HTTP/1.1\r\nHost: :\r\n\r\n", 400);
    struct parsed p;
    cr_assert_gt(parse(&p, "GET / HTTP/1.1\r\nHost:\r\n\r\n"), 0, "an empty Host is allowed");
    cr_assert_not_null(p.req.host);
    cr_assert_eq(p.req.host_len, 0);
    parsed_free(&p);
    cr_assert_gt(parse(&p, "GET / HTTP/1.1\r\nHOST: [::1]:80\r\n\r\n"), 0);
    cr_assert(eq(p.req.host, p.req.host_len, "[::1]:80"));
    parsed_free(&p);
}

Test(request, syntax_rejections)
{
    static const char *const cases[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",  /* obs-fold */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", /* obs-fold, HTAB */
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",               /* first line folded */
        "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",          /* bare CR in a value */
        "GET / HTTP/1.1\rHost: a\r\n\r\n",                  /* bare CR after the version */
        "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",              /* bare CR at the end */
        "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",            /* CR in the target */
        "GET / HTTP/1.1\nHost: a\n\n",                      /* bare LF */
        "GET / HTTP/1.1\r\nHost: a\n\r\n",                  /* bare LF after a field */
        "GET / HTTP/1.1\r\nHost: a\r\n\n",                  /* bare LF at the end */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",               /* space before colon */
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",              /* HTAB before colon */
        "GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n",      /* space in a name */
        "GET / HTTP/1.1\r\nHost: a\r\nX@Y: b\r\n\r\n",      /* '@' in a name */
        "GET / HTTP/1.1\r\nHost: a\r\nX\"Y: b\r\n\r\n",     /* '"' in a name */
        "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",         /* empty name */
        "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",     /* no colon */
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                /* '(' in the method */
        "GE@ / HTTP/1.1\r\nHost: a\r\n\r\n",                /* '@' in the method */
        " GET / HTTP/1.1\r\nHost: a\r\n\r\n",               /* no method */
        "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",               /* HTAB separator */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
        "b\r\n\r\n",                                        /* control char in a value */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n",    /* DEL in a value */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", /* ESC in a value */
        "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n",           /* control char in the target */
        "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n",           /* DEL in the target */
        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",            /* HTAB in the target */
        "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",          /* fragment */
        "GET foo HTTP/1.1\r\nHost: a\r\n\r\n",              /* not a target form */
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + 14,           /* starts with CRLF then 'H' */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_status(cases[i], 400);
    /* A NUL, which strlen would cut. */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    struct parsed p;
    cr_assert_eq(parse_n(&p, nul, sizeof nul - 1), -EBADMSG);
    cr_assert_eq(p.req.status, 400);
    parsed_free(&p);
}

Test(request, keep_alive_and_flags)
{
    static const struct {
        const char *s;
        unsigned flags;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo,,close ,bar\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.0\r\nConnection: TE, Keep-Alive\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0},
        {"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
         HK_HTTP_KEEP_ALIVE | HK_HTTP_EXPECT_CONTINUE},
        {"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
         HK_HTTP_KEEP_ALIVE | HK_HTTP_UPGRADE},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", HK_HTTP_KEEP_ALIVE},
        {"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct parsed p;
        cr_assert_gt(parse(&p, cases[i].s), 0, "%s: %s", cases[i].s, p.req.error);
        cr_assert_eq(p.req.flags, cases[i].flags, "%s: flags %#x", cases[i].s, p.req.flags);
        parsed_free(&p);
    }
}

Test(request, limits)
{
    /* The request line may hold max_request_line bytes before its CRLF. */
    char s[512];
    hk_http_header_t hs[4];
    for (int extra = 0; extra <= 1; extra++) {
        hk_http_request_t req = {.headers = hs, .max_headers = 4};
        req.limits.max_request_line = 64;
        memset(s, 0, sizeof s);
        memcpy(s, "GET /", 5);
        memset(s + 5, 'a', 64 - 5 - 9 + (size_t)extra);
        strcat(s, " HTTP/1.1\r\nHost: h\r\n\r\n");
        int r = hk_http_parse_request(&req, s, strlen(s), 0);
        if (extra)
            cr_assert(r == -EBADMSG && req.status == 414, "r=%d status=%d", r, req.status);
        else
            cr_assert_eq(r, (int)strlen(s), "64 bytes are allowed: %s", req.error);
    }
    /* The whole head may hold max_head bytes. */
    const char *head = "GET / HTTP/1.1\r\nHost: h\r\nX: 12345\r\n\r\n";
    hk_http_request_t req = {.headers = hs, .max_headers = 4};
    req.limits.max_head = strlen(head);
    cr_assert_eq(hk_http_parse_request(&req, head, strlen(head), 0), (int)strlen(head));
    req.limits.max_head = strlen(head) - 1;
    cr_assert_eq(hk_http_parse_request(&req, head, strlen(head), 0), -EBADMSG);
    cr_assert_eq(req.status, 431);
    /* Header count: max_headers fit, one more is 431. */
    req.limits.max_head = 0;
    req.max_headers = 2;
    cr_assert_eq(hk_http_parse_request(&req, head, strlen(head), 0), (int)strlen(head));
    req.max_headers = 1;
    cr_assert_eq(hk_http_parse_request(&req, head, strlen(head), 0), -EBADMSG);
    cr_assert_eq(req.status, 431);
    req.headers = NULL;
    req.max_headers = 0;
    cr_assert_eq(hk_http_parse_request(&req, "GET / HTTP/1.0\r\n\r\n", 18, 0), 18);
    cr_assert_eq(hk_http_parse_request(&req, head, strlen(head), 0), -EBADMSG);
    cr_assert_eq(req.status, 431);
}

Test(request, defaults_apply)
{
    /* A request line of 8192 bytes is accepted by default, 8193 is 414. */
    size_t n = HK_HTTP_MAX_REQUEST_LINE_DEFAULT;
    char *s = malloc(n + 64);
    for (int extra = 0; extra <= 1; extra++) {
        memcpy(s, "GET /", 5);
        memset(s + 5, 'a', n - 5 - 9 + (size_t)extra);
        strcpy(s + n - 9 + extra, " HTTP/1.1\r\nHost: h\r\n\r\n");
        struct parsed p;
        int r = parse(&p, s);
        if (extra)
            cr_assert(r == -EBADMSG && p.req.status == 414);
        else
            cr_assert_eq(r, (int)strlen(s));
        parsed_free(&p);
    }
    free(s);
    /* A head over 32 KiB is 431. */
    s = malloc(40000);
    strcpy(s, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    size_t at = strlen(s);
    memset(s + at, 'v', 33000);
    strcpy(s + at + 33000, "\r\n\r\n");
    struct parsed p;
    cr_assert_eq(parse(&p, s), -EBADMSG);
    cr_assert_eq(p.req.status, 431);
    parsed_free(&p);
    free(s);
}
