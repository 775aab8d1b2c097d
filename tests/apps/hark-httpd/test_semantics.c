/*
 * hark-httpd against RFC 9110/9112 details a review found wrong, end to end
 * with raw sockets and curl: request bodies that arrive after the head are
 * never read as requests (built-in pages, errors, 405s); the directory
 * redirect's Location stays percent-encoded (no header injection); the
 * preconditions If-Match and If-Unmodified-Since (412) and repeated
 * If-None-Match lines; methods (501 for unknown ones, 405 with Allow,
 * OPTIONS and OPTIONS *); a suffix range of an empty file; Host values
 * checked against RFC 3986; and a file rewritten in place within one second
 * at the same size is noticed by the open-file cache; a file modified in the
 * future never gets a Last-Modified later than Date; HTTP/1.0 keep-alive is
 * announced.
 */
#include "httpd_util.h"

#include <hark/http.h>
#include <time.h>

static server_t srv;
static server_t redir; /* a second server, for redirect_https; stopped by teardown too */
static char out[1 << 16];

static void setup(void)
{
    make_tmpdir(&srv);
    write_file(srv.dir, "small.txt", "hello world!", 12);
    write_file(srv.dir, "empty.txt", "", 0);
    const char *dirs[] = {"a b", "q?d", "e%41", "c\r\nX-Inj: 1"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char d[400];
        snprintf(d, sizeof(d), "%s/%s", srv.dir, dirs[i]);
        cr_assert_eq(mkdir(d, 0755), 0, "mkdir %s", d);
    }
    server_start_root(&srv, srv.dir);
}

static void teardown(void)
{
    if (redir.pid > 0) {
        server_stop(&redir, SIGTERM);
        cleanup_dir(&redir);
    }
    cr_assert_eq(server_stop(&srv, SIGTERM), 0, "clean exit");
    cleanup_dir(&srv);
}

TestSuite(httpd_semantics, .init = setup, .fini = teardown, .timeout = 60);

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/*
 * Sends head, waits 300 ms (so the body is not there when the head is
 * handled), sends body, and reads until the server closes or 1.5 s pass.
 * Returns the number of responses; *closed tells whether it closed.
 */
static int head_then_body(const char *head, const char *body, int *closed)
{
    int fd = connect_port(srv.port);
    cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    usleep(300 * 1000);
    (void)!write(fd, body, strlen(body)); /* EPIPE is fine: the server may have closed */
    ssize_t last;
    read_until_close(fd, out, 0, sizeof(out), 1500, &last);
    *closed = last <= 0;
    close(fd);
    return count(out, "HTTP/1.1 ");
}

#define SMUGGLED "GET /small.txt HTTP/1.1\r\nHost: evil\r\n\r\n"

Test(httpd_semantics, late_body_is_never_a_request)
{
    char head[256];
    const char *paths[] = {"/metrics", "/_hark/status", "/small.txt", "/%zz", "/missing"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                 paths[i], strlen(SMUGGLED));
        int closed;
        int n = head_then_body(head, SMUGGLED, &closed);
        cr_assert_eq(n, 1, "POST %s: %d responses, the body was read as a request:\n%s", paths[i],
                     n, out);
        cr_assert(closed, "POST %s: the connection stayed open with the body unread", paths[i]);
        cr_assert_null(strstr(out, "hello world!"), "POST %s served the smuggled GET", paths[i]);
    }
    /* A chunked body, all in one packet, to a page that does not read bodies. */
    const char chunked[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "27\r\n" SMUGGLED "\r\n0\r\n\r\n";
    int closed;
    raw_exchange(srv.port, chunked, strlen(chunked), out, sizeof(out), 1500, &closed);
    cr_assert_eq(count(out, "HTTP/1.1 "), 1, "%s", out);
    cr_assert(closed);
}

Test(httpd_semantics, directory_redirect_location_stays_encoded)
{
    struct {
        const char *target, *location;
    } cases[] = {
        {"/a%20b", "Location: /a%20b/\r\n"},
        {"/q%3Fd", "Location: /q%3Fd/\r\n"},
        {"/e%2541", "Location: /e%2541/\r\n"},
        {"/c%0d%0aX-Inj:%201", "Location: /c%0d%0aX-Inj:%201/\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 cases[i].target);
        int closed;
        raw_exchange(srv.port, req, strlen(req), out, sizeof(out), 2000, &closed);
        cr_assert(strstr(out, "HTTP/1.1 301"), "%s: %s", cases[i].target, out);
        cr_assert(strstr(out, cases[i].location), "%s: %s", cases[i].target, out);
        cr_assert_null(strstr(out, "\r\nX-Inj"), "header injected: %s", out);
    }
}

/* The ETag of /small.txt. */
static void small_etag(char *etag, size_t cap)
{
    run(out, sizeof(out), "curl -s -I http://127.0.0.1:%d/small.txt", srv.port);
    const char *e = strstr(out, "ETag: ");
    cr_assert_not_null(e, "%s", out);
    e += 6;
    size_t n = strcspn(e, "\r");
    cr_assert_lt(n, cap);
    memcpy(etag, e, n);
    etag[n] = '\0';
}

static int status(const char *fmt, const char *arg)
{
    char hdr[512];
    snprintf(hdr, sizeof(hdr), fmt, arg);
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{http_code}' -H '%s' http://127.0.0.1:%d/small.txt", hdr,
        srv.port);
    return atoi(out);
}

Test(httpd_semantics, preconditions)
{
    char etag[128], weak[140], list[300];
    small_etag(etag, sizeof(etag));
    snprintf(weak, sizeof(weak), "W/%s", etag);
    snprintf(list, sizeof(list), "\"nope\", %s", etag);
    cr_assert_eq(status("If-Match: %s", "\"nope\""), 412);
    cr_assert_eq(status("If-Match: %s", etag), 200);
    cr_assert_eq(status("If-Match: %s", list), 200);
    cr_assert_eq(status("If-Match: %s", "*"), 200);
    cr_assert_eq(status("If-Match: %s", weak), 412, "If-Match compares strongly");
    cr_assert_eq(status("If-Unmodified-Since: %s", "Sun, 06 Nov 1994 08:49:37 GMT"), 412);
    cr_assert_eq(status("If-Unmodified-Since: %s", "Fri, 01 Jan 2100 00:00:00 GMT"), 200);
    cr_assert_eq(status("If-Unmodified-Since: %s", "not a date"), 200);
    cr_assert_eq(status("If-None-Match: %s", weak), 304, "If-None-Match compares weakly");

    /* If-Match wins over If-Unmodified-Since (RFC 9110 section 13.2.2). */
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{http_code}' -H 'If-Match: %s' "
        "-H 'If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT' http://127.0.0.1:%d/small.txt",
        etag, srv.port);
    cr_assert_str_eq(out, "200");
    /* A list header in two lines is one list: the second line's tag matches. */
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{http_code}' -H 'If-None-Match: \"nope\"' "
        "-H 'If-None-Match: %s' http://127.0.0.1:%d/small.txt",
        etag, srv.port);
    cr_assert_str_eq(out, "304");
}

static int raw_status(const char *req, char *allow, size_t cap)
{
    int closed;
    raw_exchange(srv.port, req, strlen(req), out, sizeof(out), 2000, &closed);
    int st = -1;
    if (sscanf(out, "HTTP/1.1 %d", &st) != 1)
        return -1;
    const char *a = strstr(out, "\r\nAllow: ");
    if (allow) {
        allow[0] = '\0';
        if (a) {
            a += 9;
            size_t n = strcspn(a, "\r");
            snprintf(allow, cap, "%.*s", (int)n, a);
        }
    }
    return st;
}

Test(httpd_semantics, methods)
{
    char allow[128];
    cr_assert_eq(raw_status("DELETE /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            allow, sizeof(allow)),
                 405);
    cr_assert_str_eq(allow, "GET, HEAD, OPTIONS");
    cr_assert_eq(raw_status("FOO /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            allow, sizeof(allow)),
                 501);
    cr_assert_eq(
        raw_status("get /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", NULL, 0), 501,
        "methods are case-sensitive");
    cr_assert_eq(raw_status("OPTIONS /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            allow, sizeof(allow)),
                 200);
    cr_assert_str_eq(allow, "GET, HEAD, OPTIONS");
    cr_assert(strstr(out, "Content-Length: 0\r\n"), "%s", out);
    cr_assert_eq(raw_status("OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", allow,
                            sizeof(allow)),
                 200);
    cr_assert_str_eq(allow, "GET, HEAD, OPTIONS");
    cr_assert_eq(
        raw_status("DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", NULL, 0),
        405);
    cr_assert_eq(raw_status("POST /_hark/status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                            "Connection: close\r\n\r\n",
                            NULL, 0),
                 405);
}

Test(httpd_semantics, empty_file_ranges)
{
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{http_code}' -H 'Range: bytes=-1' "
        "http://127.0.0.1:%d/empty.txt",
        srv.port);
    cr_assert_str_eq(out, "200", "a suffix range of an empty file is satisfiable: whole file");
    run(out, sizeof(out),
        "curl -s -o /dev/null -w '%%{http_code}' -H 'Range: bytes=0-' "
        "http://127.0.0.1:%d/empty.txt",
        srv.port);
    cr_assert_str_eq(out, "416");
}

Test(httpd_semantics, host_values)
{
    const char *bad[] = {"x:abc", "[::1", "a b", "[::1]x", "ex%zzample", "[]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req),
                 "GET /small.txt HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", bad[i]);
        cr_assert_eq(raw_status(req, NULL, 0), 400, "Host: %s", bad[i]);
    }
    const char *good[] = {"x", "x:8080", "[::1]", "[::1]:80", "127.0.0.1:1", "ex%41mple", "x:"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req),
                 "GET /small.txt HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", good[i]);
        cr_assert_eq(raw_status(req, NULL, 0), 200, "Host: %s", good[i]);
    }
}

/* Rewrites name in place (same inode, same size) and sets its mtime to sec.nsec. */
static void rewrite_at(const char *name, const char *data, time_t sec, long nsec)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", srv.dir, name);
    int fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    struct timespec ts[2] = {{.tv_sec = sec, .tv_nsec = nsec}, {.tv_sec = sec, .tv_nsec = nsec}};
    cr_assert_eq(futimens(fd, ts), 0);
    close(fd);
}

Test(httpd_semantics, rewrite_in_place_within_a_second_is_seen)
{
    time_t t = time(NULL) - 10;
    write_file(srv.dir, "t.txt", "v1\n", 3);
    rewrite_at("t.txt", "v1\n", t, 100);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/t.txt", srv.port);
    cr_assert_str_eq(out, "v1\n");
    /* Same inode, same size, same second: only the nanoseconds (and ctime) differ. */
    rewrite_at("t.txt", "v2\n", t, 200);
    usleep(1200 * 1000); /* past the cache's default TTL of 1 s */
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/t.txt", srv.port);
    cr_assert_str_eq(out, "v2\n", "the open-file cache kept the old bytes");
}

/* The value of header name (with its ": ") in out, parsed as an HTTP date. */
static time_t header_date(const char *name)
{
    const char *v = strstr(out, name);
    cr_assert_not_null(v, "no %s in %s", name, out);
    v += strlen(name);
    time_t t = 0;
    cr_assert_eq(hk_http_date_parse(v, strcspn(v, "\r"), &t), 0, "%s", out);
    return t;
}

/*
 * A file whose mtime lies in the future (clock skew, an archive from another
 * machine): Last-Modified must not be later than Date, the server's time
 * (RFC 9110 section 8.8.2.1: MUST replace it with the message's date).
 */
Test(httpd_semantics, last_modified_never_after_date)
{
    write_file(srv.dir, "future.txt", "later", 5);
    char path[400];
    snprintf(path, sizeof(path), "%s/future.txt", srv.dir);
    time_t later = time(NULL) + 2 * 86400;
    struct timespec ts[2] = {{.tv_sec = later}, {.tv_sec = later}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
    const char *how[] = {"-I", "-i", "-i -H 'Range: bytes=0-1'"};
    for (size_t i = 0; i < sizeof(how) / sizeof(how[0]); i++) {
        run(out, sizeof(out), "curl -s %s http://127.0.0.1:%d/future.txt", how[i], srv.port);
        cr_assert(strstr(out, "HTTP/1.1 20"), "%s", out);
        time_t date = header_date("\r\nDate: ");
        time_t lastmod = header_date("\r\nLast-Modified: ");
        cr_assert_leq(lastmod, date, "curl %s: Last-Modified after Date:\n%s", how[i], out);
    }
}

/*
 * A redirect_https listener builds Location from the origin form: an
 * absolute-form target ("GET http://a/p") once gave
 * "https://a:8443http://a/p".
 */
Test(httpd_semantics, redirect_https_location_from_absolute_form)
{
    server_t *r = &redir;
    make_tmpdir(r);
    server_start_conf(r, "listen 127.0.0.1:0 { redirect_https on; https_port 8443; }\nroot %s;\n",
                      r->dir);
    const char *reqs[][2] = {
        {"GET http://other.example/p?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         "Location: https://other.example:8443/p?q=1\r\n"},
        {"GET /p?q=1 HTTP/1.1\r\nHost: good.example:80\r\nConnection: close\r\n\r\n",
         "Location: https://good.example:8443/p?q=1\r\n"},
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        int closed;
        raw_exchange(r->port, reqs[i][0], strlen(reqs[i][0]), out, sizeof(out), 2000, &closed);
        cr_assert(strstr(out, "HTTP/1.1 301"), "%s", out);
        cr_assert(strstr(out, reqs[i][1]), "case %zu: %s", i, out);
    }
    cr_assert_eq(server_stop(r, SIGTERM), 0);
    r->pid = 0;
    cleanup_dir(r);
}

/* Reads one response of small.txt (head and its 12-byte body) from fd into out. */
static void read_small(int fd)
{
    size_t len = 0;
    out[0] = '\0';
    while (len < sizeof(out) - 1) {
        char *end = strstr(out, "\r\n\r\n");
        if (end && strlen(end + 4) >= 12)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_gt(poll(&p, 1, 3000), 0, "no response: %s", out);
        ssize_t n = read(fd, out + len, sizeof(out) - 1 - len);
        cr_assert_gt(n, 0, "closed after: %s", out);
        len += (size_t)n;
        out[len] = '\0';
    }
}

/*
 * HTTP/1.0 keep-alive: a 1.0 connection closes after each response unless
 * the response says "Connection: keep-alive" (RFC 9112 appendix C.2.2), so
 * a 1.0 client that asked for it (ab -k) used to close and reconnect each
 * time although the server kept the connection. Now it is told, and a
 * second request on the same connection is answered.
 */
Test(httpd_semantics, http10_keep_alive_is_announced)
{
    int fd = connect_port(srv.port);
    const char *req = "GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        read_small(fd);
        cr_assert(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", out);
        cr_assert(strstr(out, "\r\nConnection: keep-alive\r\n"), "request %d:\n%s", i, out);
    }
    close(fd);
    /* Without it, a 1.0 request still ends with the connection closed, and says so. */
    int closed = 0;
    raw_exchange(srv.port, "GET /small.txt HTTP/1.0\r\n\r\n", 27, out, sizeof(out), 2000, &closed);
    cr_assert(strstr(out, "\r\nConnection: close\r\n") && closed, "%s", out);
    /* HTTP/1.1 keeps the connection without saying so. */
    raw_exchange(srv.port, "GET /small.txt HTTP/1.1\r\nHost: a\r\n\r\n", 36, out, sizeof(out), 1000,
                 &closed);
    cr_assert(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", out);
    cr_assert(!strstr(out, "Connection:") && !closed, "%s", out);
}
