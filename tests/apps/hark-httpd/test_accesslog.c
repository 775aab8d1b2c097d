/*
 * hark-httpd's access log (apps/hark-httpd/accesslog.c, compiled into this
 * test): each format line by line, read back from the access file after
 * hk_log_flush; escaping that no request can get round (quotes, control
 * bytes, invalid UTF-8, fields long enough to overflow a record); the format
 * read per line; the sink opened, moved or left off as the config says. The
 * connection is a fake: only the fields the logger reads (peer, gen->cfg).
 */
#include "../../log/util.h"

#include "accesslog.h"

LOG_TMPDIR_SUITE(httpd_accesslog, 30);

typedef struct fake {
    httpd_config_t cfg;
    httpd_gen_t gen;
    httpd_conn_t conn;
    char main_path[128];
    char access_path[128];
} fake_t;

/*
 * A logger on main.log, the access log on access.log in fmt (off when fmt is
 * negative), a client at peer.
 */
static void fake_open(fake_t *f, int fmt, const char *peer)
{
    memset(f, 0, sizeof *f);
    snprintf(f->main_path, sizeof f->main_path, "%s", tmpdir_path(&td, "main.log"));
    snprintf(f->access_path, sizeof f->access_path, "%s", tmpdir_path(&td, "access.log"));
    f->cfg.access_log = fmt < 0 ? NULL : f->access_path;
    f->cfg.access_format = fmt < 0 ? HTTPD_LOG_COMMON : (httpd_log_format_t)fmt;
    f->gen.cfg = &f->cfg;
    f->conn.gen = &f->gen;
    socklen_t len;
    cr_assert_eq(hk_addr_parse(peer, &f->conn.peer, &len), 0);
    hk_log_options_t o = opts_path(f->main_path, HK_LOG_TEXT);
    cr_assert_eq(hk_log_open(&o), 0);
    cr_assert_eq(httpd_access_open(&f->cfg), 0);
}

/* Flushes and returns the access file's lines (caller frees lines[0]); asserts their count. */
static char *read_lines(const fake_t *f, char **lines, size_t want)
{
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    char *s = slurp(f->access_path, NULL);
    size_t n = 0;
    for (char *l = s, *nl; (nl = strchr(l, '\n')) != NULL; l = nl + 1) {
        *nl = '\0';
        for (char *p = l; *p; p++)
            cr_assert((unsigned char)*p >= 0x20 && *p != 0x7f, "a raw control byte in line %zu: %s",
                      n, l);
        if (n < want)
            lines[n] = l;
        n++;
    }
    cr_assert_eq(n, want, "%zu lines: %s", n, s);
    return s;
}

static hk_http_header_t hdrs[16];

static void parse(hk_http_request_t *req, const char *head)
{
    memset(req, 0, sizeof *req);
    req->headers = hdrs;
    req->max_headers = 16;
    cr_assert_gt(hk_http_parse_request(req, head, strlen(head), 0), 0, "%s", head);
}

/* Checks "[27/Nov/2026:13:15:39 +0000]" at the start of s is the time around the call. */
static const char *check_clf_time(const char *s, time_t before, time_t after)
{
    struct tm tm = {0};
    cr_assert_eq(*s, '[', "%s", s);
    const char *e = strptime(s + 1, "%d/%b/%Y:%H:%M:%S +0000]", &tm);
    cr_assert_not_null(e, "bad time in %s", s);
    time_t t = timegm(&tm);
    cr_assert(t >= before - 1 && t <= after + 1, "time %lld not in [%lld, %lld]", (long long)t,
              (long long)before, (long long)after);
    return e;
}

Test(httpd_accesslog, common_then_combined_per_line)
{
    fake_t f;
    fake_open(&f, HTTPD_LOG_COMMON, "127.0.0.1:5555");
    hk_http_request_t req;
    parse(&req, "GET /path/a.html?q=1&r=%20 HTTP/1.1\r\nHost: x\r\nReferer: http://r.example/p"
                "\r\nUser-Agent: curl/8.5.0\r\n\r\n");
    time_t before = time(NULL);
    httpd_access_log(&f.conn, &req, 200, 12);
    f.cfg.access_format = HTTPD_LOG_COMBINED; /* a reload: the next line follows it */
    httpd_access_log(&f.conn, &req, 404, 0);
    httpd_access_log(&f.conn, NULL, 400, 150); /* nothing parsed */
    parse(&req, "HEAD / HTTP/1.0\r\n\r\n");
    httpd_access_log(&f.conn, &req, 304, 0);
    time_t after = time(NULL);

    char *l[4];
    char *s = read_lines(&f, l, 4);
    static const char *const rest[4] = {
        " \"GET /path/a.html?q=1&r=%20 HTTP/1.1\" 200 12",
        " \"GET /path/a.html?q=1&r=%20 HTTP/1.1\" 404 0 \"http://r.example/p\" \"curl/8.5.0\"",
        " \"-\" 400 150 \"-\" \"-\"",
        " \"HEAD / HTTP/1.0\" 304 0 \"-\" \"-\"",
    };
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(strncmp(l[i], "127.0.0.1 - - ", 14), 0, "%s", l[i]);
        const char *e = check_clf_time(l[i] + 14, before, after);
        cr_assert_str_eq(e, rest[i]);
    }
    free(s);
    s = slurp(f.main_path, NULL);
    cr_assert(!strstr(s, "GET"), "an access line in the main log: %s", s);
    free(s);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
}

Test(httpd_accesslog, json_fields)
{
    fake_t f;
    fake_open(&f, HTTPD_LOG_JSON, "[::1]:40000");
    hk_http_request_t req;
    parse(&req, "POST /api/v1?x=%22y%22 HTTP/1.0\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11)\r\n"
                "Content-Length: 0\r\n\r\n");
    time_t before = time(NULL);
    httpd_access_log(&f.conn, &req, 201, 1234567890123ull);
    httpd_access_log(&f.conn, NULL, 400, 0);
    time_t after = time(NULL);

    char *l[2];
    char *s = read_lines(&f, l, 2);
    parsed_t p;
    cr_assert_eq(parse_json(l[0], strlen(l[0]), &p), 0, "not JSON: %s", l[0]);
    static const char *const keys[] = {"time",   "remote", "method",  "target", "proto",
                                       "status", "bytes",  "referer", "ua"};
    cr_assert_eq(p.n, 9);
    for (int i = 0; i < 9; i++)
        cr_assert_str_eq(p.kv[i].key, keys[i]);
    struct tm tm = {0};
    const char *e = strptime(pget(&p, "time")->val, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cr_assert(e && !*e, "time %s", pget(&p, "time")->val);
    time_t t = timegm(&tm);
    cr_assert(t >= before - 1 && t <= after + 1);
    cr_assert_str_eq(pget(&p, "remote")->val, "::1");
    cr_assert_str_eq(pget(&p, "method")->val, "POST");
    cr_assert_str_eq(pget(&p, "target")->val, "/api/v1?x=%22y%22");
    cr_assert_str_eq(pget(&p, "proto")->val, "HTTP/1.0");
    cr_assert(!pget(&p, "status")->quoted && !pget(&p, "bytes")->quoted, "numbers are bare");
    cr_assert_str_eq(pget(&p, "status")->val, "201");
    cr_assert_str_eq(pget(&p, "bytes")->val, "1234567890123");
    cr_assert_str_eq(pget(&p, "referer")->val, "");
    cr_assert_str_eq(pget(&p, "ua")->val, "Mozilla/5.0 (X11)");

    cr_assert_eq(parse_json(l[1], strlen(l[1]), &p), 0, "not JSON: %s", l[1]);
    cr_assert_str_eq(pget(&p, "method")->val, "");
    cr_assert_str_eq(pget(&p, "status")->val, "400");
    free(s);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
}

/* A request the parser would refuse, as a server may still log it (status 400). */
static void hostile(hk_http_request_t *req, const char *target, size_t tlen, const char *ua,
                    size_t ualen)
{
    memset(req, 0, sizeof *req);
    req->method = "G\"ET";
    req->method_len = 4;
    req->target = target;
    req->target_len = tlen;
    req->minor_version = 1;
    hdrs[0] = (hk_http_header_t){"Referer", 7, "\\", 1};
    hdrs[1] = (hk_http_header_t){"User-Agent", 10, ua, ualen};
    req->headers = hdrs;
    req->num_headers = 2;
}

static const char bad_target[] = "/a\"b\\c\x01\n\r\t\x7f\xff caf\xc3\xa9 \xe0\x80\x80\" 200 0";
static const char bad_ua[] = "x\" \"forged\n127.0.0.1 - - [01/Jan/2000:00:00:00 +0000]";

Test(httpd_accesslog, escaping_keeps_one_line)
{
    fake_t f;
    fake_open(&f, HTTPD_LOG_COMBINED, "10.1.2.3:80");
    hk_http_request_t req;
    hostile(&req, bad_target, sizeof bad_target - 1, bad_ua, sizeof bad_ua - 1);
    httpd_access_log(&f.conn, &req, 400, 0);
    f.cfg.access_format = HTTPD_LOG_JSON;
    httpd_access_log(&f.conn, &req, 400, 0);

    char *l[2];
    char *s = read_lines(&f, l, 2);
    const char *q = strchr(l[0], ']');
    cr_assert_not_null(q);
    cr_assert_str_eq(q, "] \"G\\x22ET /a\\x22b\\x5Cc\\x01\\x0A\\x0D\\x09\\x7F\\xFF caf\\xC3\\xA9 "
                        "\\xE0\\x80\\x80\\x22 200 0 HTTP/1.1\" 400 0 \"\\x5C\" \"x\\x22 "
                        "\\x22forged\\x0A127.0.0.1 - - [01/Jan/2000:00:00:00 +0000]\"");

    /* JSON decodes back to the bytes, but for the invalid ones: U+FFFD each. */
    parsed_t p;
    cr_assert_eq(parse_json(l[1], strlen(l[1]), &p), 0, "not JSON: %s", l[1]);
    cr_assert_str_eq(pget(&p, "method")->val, "G\"ET");
    cr_assert_str_eq(pget(&p, "target")->val, "/a\"b\\c\x01\n\r\t\x7f\xef\xbf\xbd caf\xc3\xa9 "
                                              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\" 200 0");
    cr_assert_str_eq(pget(&p, "referer")->val, "\\");
    cr_assert_str_eq(pget(&p, "ua")->val, bad_ua);
    free(s);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
}

Test(httpd_accesslog, long_fields_are_cut_at_an_escape)
{
    fake_t f;
    fake_open(&f, HTTPD_LOG_COMMON, "127.0.0.1:1");
    static char target[8192], ua[32768];
    memset(target, '"', sizeof target);
    memset(ua, 0x01, sizeof ua);
    hk_http_request_t req;
    hostile(&req, target, sizeof target, ua, sizeof ua);
    for (int fmt = HTTPD_LOG_COMMON; fmt <= HTTPD_LOG_JSON; fmt++) {
        f.cfg.access_format = (httpd_log_format_t)fmt;
        httpd_access_log(&f.conn, &req, 414, 0);
    }
    char *l[3];
    char *s = read_lines(&f, l, 3);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.access_dropped, 0, "a line was too long for the logger");
    for (int i = 0; i < 2; i++) {
        /* The target: whole \x22 escapes only, then the protocol. */
        const char *t = strstr(l[i], "G\\x22ET ");
        cr_assert_not_null(t);
        t += 8;
        size_t n = 0;
        while (strncmp(t + n, "\\x22", 4) == 0)
            n += 4;
        cr_assert_gt(n, 1000);
        cr_assert_eq(strncmp(t + n, " HTTP/1.1\" 414 0", 16), 0, "%.40s", t + n);
    }
    cr_assert(strstr(l[1], "414 0 \"\\x5C\" \"\\x01\\x01"), "combined keeps the headers");
    parsed_t p;
    cr_assert_eq(parse_json(l[2], strlen(l[2]), &p), 0, "not JSON");
    cr_assert_gt(pget(&p, "target")->vlen, 1000);
    cr_assert_gt(pget(&p, "ua")->vlen, 100);
    cr_assert_str_eq(pget(&p, "status")->val, "414");
    free(s);
    cr_assert_eq(hk_log_close(5 * SEC), 0);
}

Test(httpd_accesslog, off_reload_and_unix_peer)
{
    fake_t f;
    /* Off: nothing is opened, nothing is logged. */
    fake_open(&f, -1, "127.0.0.1:1");
    cr_assert_eq(hk_log_access("x", 1), -EBADF);
    f.conn.peer.ss_family = AF_UNIX;
    httpd_access_log(&f.conn, NULL, 200, 1);
    hk_log_stats_t st;
    hk_log_stats(&st);
    cr_assert_eq(st.access_lines + st.access_dropped, 0);

    /* A reload turns it on, then moves it; standard output needs a restart. */
    char other[128];
    snprintf(other, sizeof other, "%s", tmpdir_path(&td, "other.log"));
    f.cfg.access_log = f.access_path;
    cr_assert_eq(httpd_access_reload(&f.cfg), 0);
    httpd_access_log(&f.conn, NULL, 200, 1);
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    f.cfg.access_log = other;
    cr_assert_eq(httpd_access_reload(&f.cfg), 0);
    cr_assert_eq(httpd_access_reload(&f.cfg), 0, "the same path: nothing to do");
    cr_assert_eq(hk_log_flush(5 * SEC), 0);
    httpd_access_log(&f.conn, NULL, 200, 2);
    f.cfg.access_log = "-";
    cr_assert_eq(httpd_access_reload(&f.cfg), -ENOTSUP);
    cr_assert_eq(hk_log_close(5 * SEC), 0);

    char *s = slurp(f.access_path, NULL);
    cr_assert_eq(strncmp(s, "unix: - - [", 11), 0, "%s", s);
    cr_assert(strstr(s, "] \"-\" 200 1\n") && count_lines_in(s) == 1, "%s", s);
    free(s);
    s = slurp(other, NULL);
    cr_assert(strstr(s, "] \"-\" 200 2\n") && count_lines_in(s) == 1, "%s", s);
    free(s);
}
