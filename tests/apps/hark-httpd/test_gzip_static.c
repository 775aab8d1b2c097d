/*
 * hark-httpd's gzip_static end to end, with curl: path.gz sent, as path's
 * gzip-encoded representation, to clients whose Accept-Encoding takes gzip;
 * path itself to the others and when there is no usable .gz; Vary on both;
 * HEAD, 304 and ranges on the encoded one; a missing .gz remembered in the
 * open-file cache (counted through /metrics, not timed); off by default.
 */
#include "httpd_util.h"

static server_t srv;
static char out[1 << 16];

static const char css[] = "body { color: red; margin: 0 auto; padding: 1em; }\n";
static const char html[] = "<h1>hello, hello, hello</h1>\n";
/* Not a real gzip stream: the server sends the file's bytes as they are, which is what we check. */
static const char css_gz[] = "\x1f\x8b fake gzip bytes of style.css";

static void setup(void)
{
    make_tmpdir(&srv);
    write_file(srv.dir, "style.css", css, sizeof(css) - 1);
    write_file(srv.dir, "style.css.gz", css_gz, sizeof(css_gz) - 1);
    write_file(srv.dir, "plain.txt", "no gz here\n", 11);
    char p[300];
    snprintf(p, sizeof(p), "%s/www", srv.dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    write_file(p, "index.html", html, sizeof(html) - 1);
    snprintf(p, sizeof(p), "%s/www/index.html.gz", srv.dir);
    /* A real one for the index, made by gzip, so curl --compressed can decode it. */
    cr_assert_eq(run(NULL, 0, "gzip -9 -c '%s/www/index.html' > '%s'", srv.dir, p), 0);
    snprintf(p, sizeof(p), "%s/thing.gz", srv.dir);
    cr_assert_eq(mkdir(p, 0755), 0); /* a directory where a probe looks for a file */
    server_start_conf(&srv,
                      "listen 127.0.0.1:0;\nroot %s;\naccess_log off;\nopen_file_cache 4;\n"
                      "location / { gzip_static on; }\n"
                      "location /off/ { root %s; }\n",
                      srv.dir, srv.dir);
}

static void teardown(void)
{
    server_stop(&srv, SIGTERM);
    cleanup_dir(&srv);
}

TestSuite(httpd_gzip_static, .init = setup, .fini = teardown, .timeout = 60);

static long metric(const char *name)
{
    char buf[256];
    run(buf, sizeof(buf), "curl -s http://127.0.0.1:%d/metrics | grep '^%s '", srv.port, name);
    char *sp = strchr(buf, ' ');
    cr_assert_not_null(sp, "no %s in /metrics", name);
    return atol(sp + 1);
}

static void header_value(const char *resp, const char *name, char *val, size_t cap)
{
    const char *p = strstr(resp, name);
    cr_assert_not_null(p, "no %s in: %s", name, resp);
    p += strlen(name);
    size_t n = strcspn(p, "\r");
    cr_assert_lt(n, cap);
    memcpy(val, p, n);
    val[n] = '\0';
}

Test(httpd_gzip_static, gz_sent_to_a_client_that_takes_gzip)
{
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip, deflate' http://127.0.0.1:%d/style.css", srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert(strstr(out, "Content-Type: text/css; charset=utf-8\r\n"), "path's type: %s", out);
    cr_assert(strstr(out, "Content-Encoding: gzip\r\n"), "%s", out);
    cr_assert(strstr(out, "Vary: Accept-Encoding\r\n"), "%s", out);
    char len[32];
    snprintf(len, sizeof(len), "Content-Length: %zu\r\n", sizeof(css_gz) - 1);
    cr_assert(strstr(out, len), "the .gz file's length: %s", out);
    const char *body = strstr(out, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_assert_eq(memcmp(body + 4, css_gz, sizeof(css_gz) - 1), 0, "the .gz file's bytes");

    /* x-gzip is gzip (RFC 9110 section 8.4.1.3). */
    run(out, sizeof(out), "curl -s -i -H 'Accept-Encoding: x-gzip' http://127.0.0.1:%d/style.css",
        srv.port);
    cr_assert(strstr(out, "Content-Encoding: gzip\r\n"), "%s", out);
    /* A real gzip stream decodes to the file itself (the index of a directory too). */
    run(out, sizeof(out), "curl -s --compressed http://127.0.0.1:%d/www/", srv.port);
    cr_assert_str_eq(out, html);
}

Test(httpd_gzip_static, identity_for_the_others)
{
    const char *const refusing[] = {
        "", "-H 'Accept-Encoding: gzip;q=0, *'", "-H 'Accept-Encoding: br, x-gzipped'",
        "-H 'Accept-Encoding: *;q=0'", "-H 'Accept-Encoding: gzip;q=2'"};
    for (size_t i = 0; i < sizeof(refusing) / sizeof(refusing[0]); i++) {
        run(out, sizeof(out), "curl -s -i %s http://127.0.0.1:%d/style.css", refusing[i], srv.port);
        cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
        cr_assert_null(strstr(out, "Content-Encoding"), "%s: %s", refusing[i], out);
        cr_assert(strstr(out, "Vary: Accept-Encoding\r\n"), "%s", out);
        cr_assert(strstr(out, css), "%s: %s", refusing[i], out);
    }
    /* "*" takes gzip when gzip is not named. */
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: br;q=1, *;q=0.1' http://127.0.0.1:%d/style.css", srv.port);
    cr_assert(strstr(out, "Content-Encoding: gzip\r\n"), "%s", out);
    /* Two representations, two entity tags. */
    char e1[80], e2[80];
    run(out, sizeof(out), "curl -s -I http://127.0.0.1:%d/style.css", srv.port);
    header_value(out, "ETag: ", e1, sizeof(e1));
    run(out, sizeof(out), "curl -s -I -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/style.css",
        srv.port);
    header_value(out, "ETag: ", e2, sizeof(e2));
    cr_assert_str_neq(e1, e2);
}

Test(httpd_gzip_static, head_304_and_ranges_on_the_encoded_one)
{
    run(out, sizeof(out), "curl -s -I -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/style.css",
        srv.port);
    cr_assert(strstr(out, "Content-Encoding: gzip\r\n"), "%s", out);
    char etag[80];
    header_value(out, "ETag: ", etag, sizeof(etag));
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip' -H 'If-None-Match: %s' "
        "http://127.0.0.1:%d/style.css",
        etag, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 304"), "%s", out);
    cr_assert(strstr(out, "Vary: Accept-Encoding\r\n"), "a 304 carries Vary: %s", out);
    cr_assert_null(strstr(out, "Content-Encoding"), "%s", out);
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip' -H 'Range: bytes=0-1' http://127.0.0.1:%d/style.css",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 206"), "%s", out);
    char cr[64];
    snprintf(cr, sizeof(cr), "Content-Range: bytes 0-1/%zu\r\n", sizeof(css_gz) - 1);
    cr_assert(strstr(out, cr), "a range of the encoded bytes: %s", out);
    cr_assert(strstr(out, "\r\n\r\n\x1f\x8b"), "%s", out);
}

Test(httpd_gzip_static, a_missing_gz_is_remembered)
{
    run(out, sizeof(out), "curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/plain.txt",
        srv.port);
    cr_assert_str_eq(out, "no gz here\n");
    long misses = metric("hark_open_file_cache_misses_total");
    for (int i = 0; i < 5; i++) {
        run(out, sizeof(out), "curl -s -i -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/plain.txt",
            srv.port);
        cr_assert(strstr(out, "\r\n\r\nno gz here\n"), "%s", out);
        cr_assert_null(strstr(out, "Content-Encoding"), "%s", out);
    }
    cr_assert_eq(metric("hark_open_file_cache_misses_total"), misses,
                 "no open for plain.txt.gz (nor plain.txt) while the cache trusts its entries");
    /* The note that plain.txt.gz is missing does not answer for plain.txt.gz itself. */
    write_file(srv.dir, "plain.txt.gz", "now it exists", 13);
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/plain.txt.gz", srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert(strstr(out, "Content-Type: application/gzip\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\n\r\nnow it exists"), "%s", out);
}

Test(httpd_gzip_static, no_usable_gz_and_off_by_default)
{
    /* thing.gz is a directory: no file to send for "thing", which does not exist either. */
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{http_code}' -H 'Accept-Encoding: gzip' "
        "http://127.0.0.1:%d/thing",
        srv.port);
    cr_assert_str_eq(out, "404");
    /* The location without gzip_static: the file itself, and no Vary. */
    char d[300];
    snprintf(d, sizeof(d), "%s/off", srv.dir);
    cr_assert_eq(mkdir(d, 0755), 0);
    write_file(d, "a.css", css, sizeof(css) - 1);
    write_file(d, "a.css.gz", css_gz, sizeof(css_gz) - 1);
    run(out, sizeof(out), "curl -s -i -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/off/a.css",
        srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert_null(strstr(out, "Content-Encoding"), "%s", out);
    cr_assert_null(strstr(out, "Vary"), "%s", out);
    cr_assert(strstr(out, css), "%s", out);
}

/* Gives path (beneath the server's directory) the modification time t, to the nanosecond. */
static void set_mtime(const char *name, const struct timespec *t)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/%s", srv.dir, name);
    struct timespec ts[2] = {*t, *t};
    cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0, "utimensat %s: %s", p, strerror(errno));
}

/*
 * "gzip -k" gives the .gz its file's mtime to the nanosecond, so an ETag made
 * of mtime and size told the two apart only by their sizes: when a file
 * and its .gz had the same length (a small file gzip cannot shrink by its
 * header) both representations carried one strong tag, and a cache that
 * revalidates with the identity's tag got a 304 for the gzip one (or a 206
 * of the encoded bytes through If-Range).
 */
Test(httpd_gzip_static, same_size_and_mtime_still_two_tags)
{
    static const char js[] = "0123456789abcdefghij", js_gz[] = "\x1f\x8b same length as same.js";
    write_file(srv.dir, "same.js", js, sizeof(js) - 1);
    write_file(srv.dir, "same.js.gz", js_gz, sizeof(js) - 1);
    struct timespec t = {.tv_sec = 1700000000, .tv_nsec = 123456789};
    set_mtime("same.js", &t);
    set_mtime("same.js.gz", &t);
    char e1[80], e2[80];
    run(out, sizeof(out), "curl -s -I http://127.0.0.1:%d/same.js", srv.port);
    header_value(out, "ETag: ", e1, sizeof(e1));
    run(out, sizeof(out), "curl -s -I -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/same.js",
        srv.port);
    cr_assert(strstr(out, "Content-Encoding: gzip\r\n"), "%s", out);
    header_value(out, "ETag: ", e2, sizeof(e2));
    cr_assert_str_neq(e1, e2, "one tag for both representations");
    /* The identity's tag does not validate the encoded representation ... */
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip' -H 'If-None-Match: %s' "
        "http://127.0.0.1:%d/same.js",
        e1, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip' -H 'Range: bytes=0-1' -H 'If-Range: %s' "
        "http://127.0.0.1:%d/same.js",
        e1, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "If-Range of the other tag: %s", out);
    /* ... and the encoded one's own tag does, for a 304 and for If-Range. */
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip' -H 'If-None-Match: %s' "
        "http://127.0.0.1:%d/same.js",
        e2, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 304"), "%s", out);
    cr_assert(strstr(out, e2), "%s", out);
    run(out, sizeof(out),
        "curl -s -i -H 'Accept-Encoding: gzip' -H 'Range: bytes=0-1' -H 'If-Range: %s' "
        "http://127.0.0.1:%d/same.js",
        e2, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 206"), "%s", out);
    run(out, sizeof(out), "curl -s -i -H 'If-Match: %s' http://127.0.0.1:%d/same.js", e2, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 412"), "the identity does not match the encoded tag: %s", out);
}

/*
 * With one date for path and path.gz ("gzip -k" keeps the mtime), an
 * If-Range date cannot say which representation a client's partial copy is
 * of: a client that fetched part of the encoded one and resumes without
 * gzip (or the other way round) would splice a range of one onto the other.
 * So in a gzip_static location a date never matches (the whole
 * representation, 200), while the same date still gives a range elsewhere.
 */
Test(httpd_gzip_static, if_range_date_never_matches_where_gzip_static_is_on)
{
    static const char js[] = "0123456789abcdefghij", js_gz[] = "\x1f\x8b not the same length";
    write_file(srv.dir, "resume.js", js, sizeof(js) - 1);
    write_file(srv.dir, "resume.js.gz", js_gz, sizeof(js_gz) - 1);
    struct timespec t = {.tv_sec = 1700000000, .tv_nsec = 0};
    set_mtime("resume.js", &t);
    set_mtime("resume.js.gz", &t);
    char date[80];
    run(out, sizeof(out), "curl -s -I http://127.0.0.1:%d/resume.js", srv.port);
    header_value(out, "Last-Modified: ", date, sizeof(date));
    static const char *const accept[] = {"gzip", "identity"};
    for (int i = 0; i < 2; i++) {
        run(out, sizeof(out),
            "curl -s -i -H 'Accept-Encoding: %s' -H 'Range: bytes=0-1' -H 'If-Range: %s' "
            "http://127.0.0.1:%d/resume.js",
            accept[i], date, srv.port);
        cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "Accept-Encoding %s: %s", accept[i], out);
    }
    /* A copy where gzip_static is off, with the same date: a strong validator there. */
    char d[300];
    snprintf(d, sizeof(d), "%s/off", srv.dir);
    cr_assert_eq(mkdir(d, 0755), 0);
    write_file(d, "resume.js", js, sizeof(js) - 1);
    set_mtime("off/resume.js", &t);
    run(out, sizeof(out),
        "curl -s -i -H 'Range: bytes=0-1' -H 'If-Range: %s' http://127.0.0.1:%d/off/resume.js",
        date, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 206"), "%s", out);
}

/*
 * Requests for paths that do not exist (a scanner's 404s) must leave the
 * open-file cache as it was: the probe's notes that their .gz files are
 * missing only take spare room and are dropped with the 404, so they never
 * push a served file out. Counted through the cache's miss counter.
 */
Test(httpd_gzip_static, missing_paths_leave_the_cache_alone)
{
    run(out, sizeof(out), "curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/plain.txt",
        srv.port);
    cr_assert_str_eq(out, "no gz here\n");
    for (int i = 0; i < 12; i++) {
        run(out, sizeof(out),
            "curl -s -o /dev/null -w '%%{http_code}' -H 'Accept-Encoding: gzip' "
            "http://127.0.0.1:%d/nope-%d.html",
            srv.port, i);
        cr_assert_str_eq(out, "404");
    }
    long misses = metric("hark_open_file_cache_misses_total");
    run(out, sizeof(out), "curl -s -H 'Accept-Encoding: gzip' http://127.0.0.1:%d/plain.txt",
        srv.port);
    cr_assert_str_eq(out, "no gz here\n");
    cr_assert_eq(metric("hark_open_file_cache_misses_total"), misses,
                 "plain.txt (or the note on plain.txt.gz) was pushed out by 404s");
}
