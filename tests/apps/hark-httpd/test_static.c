/*
 * hark-httpd static files end to end, with curl and raw sockets: headers,
 * index and directory redirect, 304 (ETag and date), ranges, HEAD, MIME
 * types, large files byte-exact (sendfile), pipelining in order, 404/405,
 * and a changed file noticed after the cache's TTL.
 */
#include "httpd_util.h"

static server_t srv;
static char big[1 << 20];

static void setup(void)
{
    make_tmpdir(&srv);
    write_file(srv.dir, "small.txt", "hello world!", 12);
    write_file(srv.dir, "index.html", "<h1>hi</h1>\n", 12);
    write_file(srv.dir, "style.css", "body{}", 6);
    write_file(srv.dir, "pic.png", "\x89PNG", 4);
    write_file(srv.dir, "blob.unknownext", "x", 1);
    srand(7);
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)rand();
    write_file(srv.dir, "big.bin", big, sizeof(big));
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/sub", srv.dir);
    mkdir(sub, 0755);
    write_file(sub, "index.html", "sub index", 9);
    server_start_root(&srv, srv.dir);
}

static void teardown(void)
{
    server_stop(&srv, SIGTERM);
    cleanup_dir(&srv);
}

TestSuite(httpd_static, .init = setup, .fini = teardown, .timeout = 60);

static char out[1 << 16];

Test(httpd_static, small_file_headers)
{
    cr_assert_eq(run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/small.txt", srv.port), 0);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert(strstr(out, "Content-Length: 12\r\n"));
    cr_assert(strstr(out, "Content-Type: text/plain; charset=utf-8\r\n"));
    cr_assert(strstr(out, "ETag: \""));
    cr_assert(strstr(out, "Last-Modified: "));
    cr_assert(strstr(out, "Accept-Ranges: bytes\r\n"));
    cr_assert(strstr(out, "Date: "));
    cr_assert(strstr(out, "\r\n\r\nhello world!"));
}

Test(httpd_static, index_and_directory_redirect)
{
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/", srv.port);
    cr_assert_str_eq(out, "<h1>hi</h1>\n");
    run(out, sizeof(out), "curl -s -i 'http://127.0.0.1:%d/sub?x=1'", srv.port);
    cr_assert(strstr(out, "HTTP/1.1 301"), "%s", out);
    cr_assert(strstr(out, "Location: /sub/?x=1\r\n"), "%s", out);
    run(out, sizeof(out), "curl -s -L http://127.0.0.1:%d/sub", srv.port);
    cr_assert_str_eq(out, "sub index");
}

Test(httpd_static, conditional_304)
{
    run(out, sizeof(out), "curl -s -o /dev/null -D - http://127.0.0.1:%d/small.txt", srv.port);
    char *e = strstr(out, "ETag: ");
    cr_assert_not_null(e);
    char etag[64];
    cr_assert_eq(sscanf(e, "ETag: %63s", etag), 1);
    run(out, sizeof(out), "curl -s -i -H 'If-None-Match: %s' http://127.0.0.1:%d/small.txt", etag,
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 304"), "%s", out);
    cr_assert(strstr(out, "hello") == NULL, "a 304 has no body");
    /* The validators, not the representation's metadata (RFC 9110 section 15.4.5). */
    cr_assert(strstr(out, "\r\nETag: ") && strstr(out, "\r\nLast-Modified: "), "%s", out);
    cr_assert(!strstr(out, "Content-Type:") && !strstr(out, "Content-Length:") &&
                  !strstr(out, "Accept-Ranges:"),
              "%s", out);
    run(out, sizeof(out),
        "curl -s -i -H 'If-None-Match: \"nope\", %s' http://127.0.0.1:%d/small.txt", etag,
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 304"), "a list with the tag matches");
    run(out, sizeof(out), "curl -s -i -H 'If-None-Match: \"nope\"' http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200"));
    run(out, sizeof(out),
        "curl -s -i -H 'If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT' "
        "http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 304"), "%s", out);
    run(out, sizeof(out),
        "curl -s -i -H 'If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT' "
        "http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200"));
}

Test(httpd_static, ranges)
{
    run(out, sizeof(out), "curl -s -i -H 'Range: bytes=6-10' http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 206"), "%s", out);
    cr_assert(strstr(out, "Content-Range: bytes 6-10/12\r\n"));
    cr_assert(strstr(out, "Content-Length: 5\r\n"));
    cr_assert(strstr(out, "\r\n\r\nworld"));
    run(out, sizeof(out), "curl -s -i -H 'Range: bytes=-3' http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "\r\n\r\nld!"), "%s", out);
    run(out, sizeof(out), "curl -s -i -H 'Range: bytes=50-' http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 416"), "%s", out);
    cr_assert(strstr(out, "Content-Range: bytes */12\r\n"));
    run(out, sizeof(out), "curl -s -i -H 'Range: bytes=0-1,4-5' http://127.0.0.1:%d/small.txt",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200"), "several ranges: the whole file");
    /* A range of the large file goes through sendfile with an offset. */
    run(out, sizeof(out),
        "curl -s -H 'Range: bytes=1000-1999' http://127.0.0.1:%d/big.bin | od -An -tx1 | head -c "
        "0; "
        "curl -s -H 'Range: bytes=1000-1999' http://127.0.0.1:%d/big.bin | wc -c",
        srv.port, srv.port);
    cr_assert_eq(atoi(out), 1000);
}

Test(httpd_static, head_and_mime)
{
    run(out, sizeof(out), "curl -s -I http://127.0.0.1:%d/big.bin", srv.port);
    cr_assert(strstr(out, "Content-Length: 1048576\r\n"), "%s", out);
    cr_assert(strstr(out, "Content-Type: application/octet-stream"));
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{content_type}' http://127.0.0.1:%d/style.css", srv.port);
    cr_assert_str_eq(out, "text/css; charset=utf-8");
    run(out, sizeof(out), "curl -s -o /dev/null -w '%%{content_type}' http://127.0.0.1:%d/pic.png",
        srv.port);
    cr_assert_str_eq(out, "image/png");
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{content_type}' http://127.0.0.1:%d/blob.unknownext", srv.port);
    cr_assert_str_eq(out, "application/octet-stream");
}

Test(httpd_static, large_file_exact)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/got.bin", srv.dir);
    cr_assert_eq(run(NULL, 0, "curl -s -o %s http://127.0.0.1:%d/big.bin", path, srv.port), 0);
    cr_assert_eq(run(NULL, 0, "cmp -s %s %s/big.bin", path, srv.dir), 0, "body differs");
}

Test(httpd_static, errors_404_405)
{
    run(out, sizeof(out), "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/missing",
        srv.port);
    cr_assert_str_eq(out, "404");
    run(out, sizeof(out), "curl -s -i -X DELETE http://127.0.0.1:%d/small.txt", srv.port);
    cr_assert(strstr(out, "HTTP/1.1 405"), "%s", out);
    cr_assert(strstr(out, "Allow: GET, HEAD, OPTIONS\r\n"));
}

Test(httpd_static, pipelined_in_order)
{
    const char req[] = "GET /small.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                       "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n"
                       "GET /style.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    int closed;
    raw_exchange(srv.port, req, sizeof(req) - 1, out, sizeof(out), 3000, &closed);
    char *a = strstr(out, "HTTP/1.1 200");
    char *b = strstr(out, "HTTP/1.1 404");
    char *c = a ? strstr(a + 1, "HTTP/1.1 200") : NULL;
    cr_assert(a && b && c && a < b && b < c, "three responses in order: %s", out);
    cr_assert(strstr(out, "body{}"));
    cr_assert(closed, "Connection: close honoured");
}

Test(httpd_static, changed_file_seen_after_ttl)
{
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/small.txt", srv.port);
    cr_assert_str_eq(out, "hello world!");
    /* Replace the file (new inode), as a deploy does; the cache TTL is 1 s by default. */
    write_file(srv.dir, "small.tmp", "new content", 11);
    char a[300], b[300];
    snprintf(a, sizeof(a), "%s/small.tmp", srv.dir);
    snprintf(b, sizeof(b), "%s/small.txt", srv.dir);
    cr_assert_eq(rename(a, b), 0);
    usleep(1200 * 1000);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/small.txt", srv.port);
    cr_assert_str_eq(out, "new content");
}

Test(httpd_static, metrics_and_status)
{
    run(NULL, 0, "curl -s http://127.0.0.1:%d/small.txt", srv.port);
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/metrics", srv.port);
    cr_assert(strstr(out, "Content-Type: text/plain; version=0.0.4"), "%s", out);
    cr_assert(strstr(out, "# TYPE hark_http_requests_total counter"));
    char *l = strstr(out, "hark_http_requests_total{code=\"200\"} ");
    cr_assert_not_null(l);
    cr_assert_geq(atoi(l + strlen("hark_http_requests_total{code=\"200\"} ")), 1);
    cr_assert(strstr(out, "hark_loop_lag_seconds_bucket{worker=\"0\",le=\"+Inf\"}"));
    cr_assert(strstr(out, "hark_http_connections_open 1"), "this connection is open");
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/_hark/status", srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200"));
    cr_assert(strstr(out, "<title>hark-httpd status</title>"));
}
