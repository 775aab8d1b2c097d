/*
 * hark-httpd's reverse proxy end to end: the real binary (built with the
 * sanitizers in that build, and required to exit 0 after SIGTERM) in front
 * of real upstreams: nginx, a second hark-httpd, the small Python upstream
 * proxy_upstream.py, and host names answered by a dnsmasq of the test.
 * curl and raw sockets are the clients. Upstream connections are counted
 * in nginx's access log ($connection), forwarded headers read there too.
 */
#include "dnsmasq.h"
#include "proxy_fixture.h"

static server_t front, back;   /* the proxy; a hark-httpd upstream */
static proc_t ngx, app, extra; /* nginx, the Python app, one more helper */
static struct dnsmasq dns = {.pid = -1};
static char out[1 << 16], ups[2048];
static const char small[] = "hello proxy\n";

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* a proxy that hangs up must fail an assertion, not kill us */
    make_tmpdir(&front);
    char path[512];
    snprintf(path, sizeof(path), "%s/www", front.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/www/api", front.dir);
    mkdir(path, 0755);
    write_file(path, "small.txt", small, strlen(small));
    snprintf(path, sizeof(path), "%s/www", front.dir);
    write_file(path, "health", "ok", 2); /* nginx's answer to the active checks */
    snprintf(path, sizeof(path), "%s/www/api", front.dir);
    static char big[1 << 20];
    srand(11);
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)rand();
    write_file(path, "big.bin", big, sizeof(big));
    nginx_start(&ngx, front.dir);
    snprintf(path, sizeof(path), "%s/sick", front.dir);
    helper_start(&app, "app", path);
}

static void teardown(void)
{
    server_stop(&front, SIGKILL);
    server_stop(&back, SIGKILL);
    proc_stop(&ngx);
    proc_stop(&app);
    proc_stop(&extra);
    dnsmasq_stop(&dns);
    cleanup_dir(&front);
    cleanup_dir(&back);
}

TestSuite(httpd_proxy, .init = setup, .fini = teardown, .timeout = 90);

/* The proxy with this upstream block (named app) for /api/. */
__attribute__((format(printf, 1, 2))) static void front_start(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ups, sizeof(ups), fmt, ap);
    va_end(ap);
    server_start_conf(&front,
                      "threads 1;\nlisten 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n"
                      "max_body 256m;\nupstream app {\n%s\n}\nlocation /api/ { proxy_pass app; }\n",
                      front.dir, ups);
}

/* SIGTERM: the proxy drains, frees everything and exits 0 (ASan would say otherwise). */
static void front_stop(void)
{
    cr_assert_eq(server_stop(&front, SIGTERM), 0, "hark-httpd did not exit cleanly");
}

/* Stops the front server (which flushes its log) and reads its access.log into out. */
static void front_stop_read_access_log(void)
{
    front_stop();
    char path[512];
    snprintf(path, sizeof(path), "%s/access.log", front.dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
}

static int status_of(const char *path)
{
    run(out, sizeof(out), "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d%s",
        front.port, path);
    return atoi(out);
}

Test(httpd_proxy, get_small_and_large_byte_exact)
{
    front_start("server 127.0.0.1:%d;", ngx.port);
    cr_assert_eq(run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/small.txt", front.port),
                 0);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert(strstr(out, "Server: nginx"), "%s", out);
    cr_assert(strstr(out, "Content-Length: 12\r\n"), "%s", out);
    cr_assert(strstr(out, "Via: 1.1 hark\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\n\r\nhello proxy\n"), "%s", out);
    cr_assert_eq(run(NULL, 0,
                     "curl -sf -o %s/got.bin http://127.0.0.1:%d/api/big.bin && cmp -s "
                     "%s/got.bin %s/www/api/big.bin",
                     front.dir, front.port, front.dir, front.dir),
                 0, "1 MiB through the proxy differs");
    cr_assert_eq(status_of("/api/missing"), 404);
    front_stop();
}

Test(httpd_proxy, keepalive_reuses_upstream_connections)
{
    front_start("server 127.0.0.1:%d;\nkeepalive 4;", ngx.port);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(status_of("/api/small.txt?ka=1"), 200);
    /* Ten client connections, one after the other: one upstream connection served them all. */
    int distinct = 0;
    cr_assert_eq(log_lines(front.dir, "access.log", "ka=1", &distinct), 10);
    cr_assert_eq(distinct, 1, "%d upstream connections for 10 requests", distinct);
    /* The client's own connection is kept alive too. */
    run(out, sizeof(out),
        "curl -s -o /dev/null -o /dev/null -w '%%{num_connects}.' "
        "http://127.0.0.1:%d/api/small.txt "
        "http://127.0.0.1:%d/api/big.bin",
        front.port, front.port);
    cr_assert_str_eq(out, "1.0.");
    front_stop();
}

Test(httpd_proxy, post_body_streamed)
{
    front_start("server 127.0.0.1:%d;", app.port);
    cr_assert_eq(run(NULL, 0, "head -c 5242880 /dev/urandom > %s/up.bin", front.dir), 0);
    char md5[64];
    run(md5, sizeof(md5), "md5sum < %s/up.bin | cut -d' ' -f1 | tr -d '\\n'", front.dir);
    char want[128];
    snprintf(want, sizeof(want), "len=5242880 md5=%s", md5);
    run(out, sizeof(out), "curl -s --data-binary @%s/up.bin http://127.0.0.1:%d/api/echo",
        front.dir, front.port);
    cr_assert_str_eq(out, want);
    /* A chunked upload arrives re-chunked, the same bytes. */
    run(out, sizeof(out),
        "curl -s -H 'Transfer-Encoding: chunked' --data-binary @%s/up.bin "
        "http://127.0.0.1:%d/api/echo",
        front.dir, front.port);
    cr_assert_str_eq(out, want);
    front_stop();
}

Test(httpd_proxy, upstream_down_is_502_and_slow_is_504)
{
    helper_start(&extra, "slow", "5");
    int dead = free_tcp_port();
    front_start("server 127.0.0.1:%d;\nconnect_timeout 1s;\nread_timeout 1s;", dead);
    cr_assert_eq(status_of("/api/x"), 502);
    cr_assert_eq(status_of("/api/x"), 502);
    front_stop();
    front_start("server 127.0.0.1:%d;\nread_timeout 1s;", extra.port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(status_of("/api/slow"), 504);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(s > 0.9 && s < 3.5, "504 after %.2f s (read_timeout 1s)", s);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/metrics", front.port);
    cr_assert(strstr(out, "code=\"504\"} 1"), "%s", out);
    front_stop();
}

/*
 * Proxied requests are in the access log like the others: request line,
 * the status the client got (the upstream's, or the proxy's own 502) and
 * the body bytes sent; Referer and User-Agent survive until the response
 * ends, long after the request head's buffer was reused. They used to be
 * missing from the log.
 */
Test(httpd_proxy, proxied_requests_are_logged)
{
    int dead = free_tcp_port();
    server_start_conf(&front,
                      "threads 1;\nlisten 127.0.0.1:0;\naccess_log %s/access.log combined;\n"
                      "root %s/www;\nupstream app {\nserver 127.0.0.1:%d;\n}\n"
                      "upstream gone {\nserver 127.0.0.1:%d;\nconnect_timeout 1s;\n}\n"
                      "location /api/ { proxy_pass app; }\nlocation /down/ { proxy_pass gone; }\n",
                      front.dir, front.dir, app.port, dead);
    run(out, sizeof(out),
        "curl -s -o /dev/null -H 'Referer: http://r.example/' -A 'agent/1' "
        "http://127.0.0.1:%d/api/chunked http://127.0.0.1:%d/down/x",
        front.port, front.port);
    front_stop_read_access_log();
    /* The chunked body of ten 8-byte lines: 80 bytes of body, re-chunked to the client. */
    cr_assert(
        strstr(out, "\"GET /api/chunked HTTP/1.1\" 200 80 \"http://r.example/\" \"agent/1\"\n"),
        "%s", out);
    cr_assert(strstr(out, "\"GET /down/x HTTP/1.1\" 502 "), "%s", out);
}

Test(httpd_proxy, forwarded_headers_and_hop_by_hop)
{
    front_start("server 127.0.0.1:%d;\nserver 127.0.0.1:%d;", ngx.port, app.port);
    /* Request direction, seen in nginx's log (the first pick is nginx). */
    run(out, sizeof(out),
        "curl -s -o /dev/null -H 'X-Forwarded-For: 10.1.2.3' -H 'Connection: X-Hop' "
        "-H 'X-Hop: secret' -H 'Keep-Alive: timeout=5' -H 'TE: trailers' -H 'Upgrade: h2c' "
        "-H 'Proxy-Connection: keep-alive' http://127.0.0.1:%d/api/small.txt?hop=1",
        front.port);
    char line[4096], want[512];
    cr_assert(log_last(front.dir, "access.log", "hop=1", line, sizeof(line)));
    snprintf(want, sizeof(want),
             "|/api/small.txt?hop=1|10.1.2.3, 127.0.0.1|http|1.1 hark|-|-|-|-|-|-|127.0.0.1:%d\n",
             front.port);
    cr_assert(strstr(line, want), "nginx saw: %s", line);
    /* Response direction: the app's hop-by-hop headers stop at the proxy. */
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/hop", front.port);
    cr_assert(strstr(out, "X-Kept: yes\r\n") && strstr(out, "Via: 1.1 hark\r\n"), "%s", out);
    const char *gone[] = {"X-Secret", "Keep-Alive", "Upgrade", "Proxy-Connection", "Connection:"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        cr_assert(!strstr(out, gone[i]), "%s reached the client:\n%s", gone[i], out);
    front_stop();
}

/*
 * An interim response the proxy did not ask for is forwarded (RFC 9110
 * section 15.2), rewritten like a final head (hop-by-hop fields out, Via in),
 * before the final one; an HTTP/1.0 client must not get it. It used to be
 * dropped.
 */
Test(httpd_proxy, interim_responses_forwarded)
{
    front_start("server 127.0.0.1:%d;", app.port);
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/hints", front.port);
    const char *hint = strstr(out, "HTTP/1.1 103 Early Hints\r\n");
    const char *final = strstr(out, "HTTP/1.1 200 OK\r\n");
    cr_assert(hint && final && hint < final, "no 103 before the 200:\n%s", out);
    cr_assert(strstr(out, "Link: </style.css>; rel=preload\r\n") && strstr(out, "hinted"), "%s",
              out);
    cr_assert(!strstr(out, "X-Hop"), "a hop-by-hop header of the 103 went through:\n%s", out);
    run(out, sizeof(out), "curl -s -i --http1.0 http://127.0.0.1:%d/api/hints", front.port);
    cr_assert(!strstr(out, " 103 ") && strstr(out, "hinted"), "HTTP/1.0:\n%s", out);
    front_stop();
}

/*
 * A response head with many fields: 200 of them pass (they used to be a 502
 * past 64, which also counted against the server's health); past 256 the
 * response is refused with a 502.
 */
Test(httpd_proxy, many_response_header_fields)
{
    front_start("server 127.0.0.1:%d;", app.port);
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/many/200", front.port);
    cr_assert(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "%.300s", out);
    int n = 0;
    for (const char *q = out; (q = strstr(q, "\r\nX-H-")) != NULL; q += 6)
        n++;
    cr_assert_eq(n, 200, "%d of 200 fields reached the client", n);
    cr_assert(strstr(out, "\r\nX-H-199: 199\r\n") && strstr(out, "\r\n\r\nmany"), "%s", out);
    cr_assert_eq(status_of("/api/many/300"), 502);
    cr_assert_eq(status_of("/api/many/3"), 200);
    front_stop();
}

Test(httpd_proxy, response_framing)
{
    front_start("server 127.0.0.1:%d;", app.port);
    const char *ten = "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
                      "chunk 5\nchunk 6\nchunk 7\nchunk 8\nchunk 9\n";
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/chunked", front.port);
    cr_assert(strstr(out, "Transfer-Encoding: chunked\r\n"), "%s", out);
    cr_assert(strstr(out, ten) && !strstr(out, "X-Trailer"), "%s", out);
    run(out, sizeof(out), "curl -s -i --http1.0 http://127.0.0.1:%d/api/chunked", front.port);
    cr_assert(!strstr(out, "Transfer-Encoding") && strstr(out, "Connection: close\r\n"), "%s", out);
    cr_assert(strstr(out, ten), "%s", out);
    /* Read-until-close upstream: chunked (and kept alive) for 1.1, close-delimited for 1.0. */
    run(out, sizeof(out),
        "curl -s -i -w '[%%{num_connects}]' http://127.0.0.1:%d/api/untilclose "
        "http://127.0.0.1:%d/api/untilclose",
        front.port, front.port);
    cr_assert(strstr(out, "Transfer-Encoding: chunked\r\n"), "%s", out);
    cr_assert(strstr(out, "line 4\n[1]") && strstr(out, "line 4\n[0]"), "%s", out);
    run(out, sizeof(out), "curl -s -i --http1.0 http://127.0.0.1:%d/api/untilclose", front.port);
    cr_assert(!strstr(out, "Transfer-Encoding") && strstr(out, "line 0\nline 1\n"), "%s", out);
    /* An upstream that dies mid-body: the client sees the connection close early. */
    cr_assert_eq(run(NULL, 0, "curl -s -o /dev/null http://127.0.0.1:%d/api/truncated", front.port),
                 18, "curl should report a partial transfer");
    /* No body for 204 and HEAD; the connection goes on with the next request. */
    const char req[] = "HEAD /api/big HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /api/nocontent HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int closed;
    raw_exchange(front.port, req, sizeof(req) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(closed, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n") && strstr(out, "HTTP/1.1 204 No Content\r\n"),
              "%s", out);
    char *last = strstr(out, "app /api/last");
    cr_assert(last && !strstr(out, "app /api/big") && last[strlen("app /api/last")] == '\0', "%s",
              out);
    front_stop();
}

/*
 * What a review found: a connection option naming Content-Length dropped the
 * framing (request: the body was read upstream as the next request; response:
 * the client got no length), an HTTP/1.0 request without Host went up with
 * "Host: app:0", an absolute-form target went up with a contradicting Host,
 * and a response without Date was forwarded without one.
 */
Test(httpd_proxy, framing_host_and_date_survive_hostile_heads)
{
    front_start("server 127.0.0.1:%d;", app.port);
    const char smuggled[] = "GET /api/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n";
    char req[512];
    snprintf(req, sizeof(req),
             "POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\n"
             "Content-Length: %zu\r\n\r\n%s"
             "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             strlen(smuggled), smuggled);
    int closed;
    raw_exchange(front.port, req, strlen(req), out, sizeof(out), 5000, &closed);
    char want[64];
    snprintf(want, sizeof(want), "len=%zu md5=", strlen(smuggled));
    cr_assert(strstr(out, want), "the upstream did not get the body as a body:\n%s", out);
    cr_assert_null(strstr(out, "SMUGGLED"), "the body was read as a request:\n%s", out);
    cr_assert(strstr(out, "app /api/last"), "%s", out);

    const char res[] = "GET /api/connlen HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    raw_exchange(front.port, res, sizeof(res) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "Content-Length: 5\r\n"), "the response lost its length:\n%s", out);
    cr_assert(strstr(out, "\r\n\r\nhelloHTTP/1.1 200 OK\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\nDate: "), "no Date added:\n%s", out);

    const char old[] = "GET /api/headers HTTP/1.0\r\n\r\n";
    raw_exchange(front.port, old, sizeof(old) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nHost: app\n"), "HTTP/1.0 without Host:\n%s", out);

    const char absolute[] = "GET http://good.example/api/headers HTTP/1.1\r\n"
                            "Host: evil.example\r\nConnection: close\r\n\r\n";
    raw_exchange(front.port, absolute, sizeof(absolute) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "GET /api/headers HTTP/1.1\n"), "%s", out);
    cr_assert(strstr(out, "\nHost: good.example\n"), "%s", out);
    cr_assert_null(strstr(out, "evil.example"), "the upstream saw a second host:\n%s", out);
    front_stop();
}

Test(httpd_proxy, balancing_weights_and_least_conn)
{
    make_tmpdir(&back);
    char path[512];
    snprintf(path, sizeof(path), "%s/api", back.dir);
    mkdir(path, 0755);
    write_file(path, "small.txt", small, strlen(small));
    server_start_root(&back, back.dir);
    front_start("server 127.0.0.1:%d weight=2;\nserver 127.0.0.1:%d;", ngx.port, back.port);
    int from_nginx = 0, from_hark = 0;
    for (int i = 0; i < 9; i++) {
        run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/small.txt", front.port);
        cr_assert(strstr(out, "hello proxy"), "%s", out);
        from_nginx += strstr(out, "Server: nginx") != NULL;
        from_hark += strstr(out, "Server: hark") != NULL;
    }
    cr_assert(from_nginx == 6 && from_hark == 3, "nginx %d, hark %d", from_nginx, from_hark);
    front_stop();
    front_start("balance least_conn;\nserver 127.0.0.1:%d;\nserver 127.0.0.1:%d;", ngx.port,
                back.port);
    from_nginx = from_hark = 0;
    for (int i = 0; i < 6; i++) {
        run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/api/small.txt", front.port);
        from_nginx += strstr(out, "Server: nginx") != NULL;
        from_hark += strstr(out, "Server: hark") != NULL;
    }
    cr_assert(from_nginx == 3 && from_hark == 3, "nginx %d, hark %d", from_nginx, from_hark);
    front_stop();
    server_stop(&back, SIGTERM);
    cleanup_dir(&back);
}

Test(httpd_proxy, passive_health_marks_a_dead_server_down)
{
    char count[512];
    snprintf(count, sizeof(count), "%s/closecount", front.dir);
    helper_start(&extra, "close", count);
    front_start("server 127.0.0.1:%d;\nserver 127.0.0.1:%d;\nmax_fails 1;\nfail_window 10s;\n"
                "fail_timeout 10s;",
                extra.port, ngx.port);
    /* The first request meets the server that hangs up, and goes on to nginx. */
    for (int i = 0; i < 8; i++)
        cr_assert_eq(status_of("/api/small.txt"), 200);
    FILE *f = fopen(count, "r");
    cr_assert_not_null(f, "the dead server was never tried");
    int n = 0;
    cr_assert_eq(fscanf(f, "%d", &n), 1);
    fclose(f);
    cr_assert_eq(n, 1, "a server marked down was tried %d times", n);
    front_stop();
}

/* The value of the /metrics line that starts with prefix (-1: no such line). */
static long long metric(const char *prefix)
{
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/metrics", front.port);
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, prefix, strlen(prefix)) == 0)
            return atoll(l + strlen(prefix));
    }
    return -1;
}

/* The value of family{labels more} on /metrics. */
static long long um(const char *family, const char *labels, const char *more)
{
    char k[256];
    snprintf(k, sizeof(k), "%s%s%s} ", family, labels, more);
    return metric(k);
}

/*
 * Upstream counters by upstream and server: the dead server listed first is
 * tried once, fails, is marked down and reported down; nginx takes every
 * request on one pooled connection. A reload keeps the counters (a
 * Prometheus counter must not go back), and the new generation's first
 * request to nginx opens its own connection.
 */
Test(httpd_proxy, upstream_metrics_count_exchanges)
{
    int dead = free_tcp_port();
    front_start("server 127.0.0.1:%d;\nserver 127.0.0.1:%d;\nkeepalive 4;\nmax_fails 1;\n"
                "fail_window 60s;\nfail_timeout 60s;\nconnect_timeout 1s;",
                dead, ngx.port);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(status_of("/api/small.txt"), 200);
    char d[128], n[128];
    snprintf(d, sizeof(d), "{upstream=\"app\",server=\"127.0.0.1:%d\"", dead);
    snprintf(n, sizeof(n), "{upstream=\"app\",server=\"127.0.0.1:%d\"", ngx.port);
    cr_assert_eq(um("hark_upstream_requests_total", d, ""), 1, "%s", out);
    cr_assert_eq(um("hark_upstream_failures_total", d, ""), 1, "%s", out);
    cr_assert_eq(um("hark_upstream_marked_down_total", d, ""), 1, "%s", out);
    cr_assert_eq(um("hark_upstream_down", d, ""), 1, "%s", out);
    cr_assert_eq(um("hark_upstream_requests_total", n, ""), 5, "%s", out);
    cr_assert_eq(um("hark_upstream_connections_total", n, ""), 1, "%s", out);
    cr_assert_eq(um("hark_upstream_reused_total", n, ""), 4, "%s", out);
    cr_assert_eq(um("hark_upstream_failures_total", n, ""), 0, "%s", out);
    cr_assert_eq(um("hark_upstream_down", n, ""), 0, "%s", out);
    cr_assert_eq(um("hark_upstream_responses_total", n, ",code=\"2xx\""), 5, "%s", out);
    cr_assert_eq(um("hark_upstream_responses_total", n, ",code=\"5xx\""), 0, "%s", out);
    cr_assert_eq(um("hark_upstream_active", n, ""), 0, "%s", out);
    cr_assert_eq(um("hark_upstream_idle_connections", n, ""), 1, "%s", out);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/_hark/status", front.port);
    cr_assert(strstr(out, "<h2>Upstreams</h2>"), "%s", out);

    kill(front.pid, SIGHUP);
    for (int i = 0; i < 200 && metric("hark_config_generation ") != 2; i++)
        usleep(20 * 1000);
    cr_assert_eq(metric("hark_config_generation "), 2, "the reload did not happen");
    /* The old generation's pooled connection closes once it is retired. */
    for (int i = 0; i < 200 && um("hark_upstream_idle_connections", n, "") != 0; i++)
        usleep(20 * 1000);
    cr_assert_eq(um("hark_upstream_idle_connections", n, ""), 0, "%s", out);
    /* The new generation starts with every server up: the dead one is tried again. */
    cr_assert_eq(um("hark_upstream_down", d, ""), 0, "%s", out);
    cr_assert_eq(status_of("/api/small.txt"), 200);
    cr_assert_eq(um("hark_upstream_requests_total", d, ""), 2, "%s", out);
    cr_assert_eq(um("hark_upstream_requests_total", n, ""), 6, "%s", out);
    cr_assert_eq(um("hark_upstream_connections_total", n, ""), 2, "%s", out);
    cr_assert_eq(um("hark_upstream_responses_total", n, ",code=\"2xx\""), 6, "%s", out);
    front_stop();
}

Test(httpd_proxy, active_health_check)
{
    char sick[512];
    snprintf(sick, sizeof(sick), "%s/sick", front.dir);
    front_start("server 127.0.0.1:%d;\nserver 127.0.0.1:%d;\nhealth_check /health 1s;", app.port,
                ngx.port);
    /* Until worker.c calls httpd_upstreams_start, checks begin with the first request. */
    cr_assert_eq(status_of("/api/small.txt"), 200);
    write_file(front.dir, "sick", "1", 1);
    usleep(2500 * 1000);
    for (int i = 0; i < 6; i++) {
        run(out, sizeof(out), "curl -s http://127.0.0.1:%d/api/small.txt", front.port);
        cr_assert_str_eq(out, small, "a server failing its checks got a request");
    }
    unlink(sick);
    usleep(2500 * 1000);
    int from_app = 0;
    for (int i = 0; i < 6; i++) {
        run(out, sizeof(out), "curl -s http://127.0.0.1:%d/api/small.txt", front.port);
        from_app += strncmp(out, "app ", 4) == 0;
    }
    cr_assert_gt(from_app, 0, "a server passing its checks again got nothing");
    front_stop();
}

/* The test's dnsmasq hosts file becomes text. */
static void set_hosts(const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/hosts", dns.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    kill(dns.pid, SIGHUP); /* dnsmasq reads its hosts files again */
}

static void set_backend(const char *addr)
{
    char line[128];
    snprintf(line, sizeof(line), "%s backend.hark.test\n", addr);
    set_hosts(line);
}

static bool wait_status(const char *path, int want, int seconds)
{
    for (int i = 0; i < seconds * 5; i++) {
        if (status_of(path) == want)
            return true;
        usleep(200 * 1000);
    }
    return false;
}

Test(httpd_proxy, host_names_resolved_and_re_resolved_on_ttl)
{
    cr_assert_eq(dnsmasq_start(&dns, "127.0.0.1 backend.hark.test\n", 1), 0);
    setenv("HARK_HTTPD_RESOLVER", dns.servers, 1);
    front_start("server backend.hark.test:%d;\nmax_fails 0;\nresolve_interval 30s;", ngx.port);
    cr_assert_eq(status_of("/api/small.txt"), 200);
    /* The name moves to an address where nothing listens: after its TTL (1 s), 502. */
    set_backend("127.0.0.3");
    cr_assert(wait_status("/api/small.txt", 502, 6), "the new address was never used");
    set_backend("127.0.0.1");
    cr_assert(wait_status("/api/small.txt", 200, 6), "the name's return was never seen");
    int queries = log_lines(dns.dir, "log", "query[A] backend.hark.test", NULL);
    cr_assert_geq(queries, 3, "%d queries", queries);
    front_stop();
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    }
    if (f)
        fclose(f);
    return kib;
}

Test(httpd_proxy, backpressure_both_ways)
{
    /* Download: a 64 MiB body to a client that stops reading. */
    char path[512];
    snprintf(path, sizeof(path), "%s/www/api/huge.bin", front.dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0 && ftruncate(fd, 64 << 20) == 0);
    close(fd);
    helper_start(&extra, "stall", "3");
    front_start("server 127.0.0.1:%d;", ngx.port);
    long before = rss_kib(front.pid);
    int c = connect_port(front.port);
    const char get[] = "GET /api/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(write(c, get, sizeof(get) - 1), (ssize_t)sizeof(get) - 1);
    usleep(1500 * 1000);
    long during = rss_kib(front.pid);
    cr_log_info("proxy RSS growth with a stalled 64 MiB download: %ld KiB", during - before);
    cr_assert_lt(during - before, 16 * 1024, "the proxy grew by %ld KiB", during - before);
    size_t total = 0;
    ssize_t n;
    while (total < (64u << 20) + 100 && (n = read(c, out, sizeof(out))) > 0)
        total += (size_t)n;
    close(c);
    cr_assert_gt(total, (size_t)64 << 20, "got %zu bytes", total);
    /* A client that leaves mid-response: the exchange is torn down (checked at exit). */
    c = connect_port(front.port);
    cr_assert_eq(write(c, get, sizeof(get) - 1), (ssize_t)sizeof(get) - 1);
    cr_assert_gt(read(c, out, sizeof(out)), 0);
    close(c);
    usleep(200 * 1000);
    cr_assert_eq(status_of("/api/small.txt"), 200);
    front_stop();
    /* Upload: 128 MiB to an upstream that reads nothing for 3 s; the client is held back. */
    front_start("server 127.0.0.1:%d;", extra.port);
    c = connect_port(front.port);
    const char post[] = "POST /api/up HTTP/1.1\r\nHost: x\r\nContent-Length: 134217728\r\n\r\n";
    cr_assert_eq(write(c, post, sizeof(post) - 1), (ssize_t)sizeof(post) - 1);
    fcntl(c, F_SETFL, O_NONBLOCK);
    size_t sent = 0;
    memset(out, 'u', sizeof(out));
    for (int i = 0; i < 150; i++) {
        while ((n = write(c, out, sizeof(out))) > 0)
            sent += (size_t)n;
        usleep(10 * 1000);
    }
    cr_log_info("bytes a client got in while the upstream read nothing: %zu", sent);
    cr_assert_lt(sent, (size_t)32 << 20, "the proxy took %zu bytes from the client", sent);
    close(c); /* the client goes away mid-body: everything must still be freed */
    usleep(200 * 1000);
    front_stop();
}

/*
 * A request that waits for its upstream (a name being resolved, a connect in
 * progress) is the proxy's to answer, within connect_timeout: the client
 * connection's own timer, still set to the header timeout from its accept,
 * closed it first, and the client got no response at all. Here the resolver
 * never answers, so after connect_timeout (3 s, longer than header_timeout
 * 1 s) the name counts as unresolved: a 502.
 */
Test(httpd_proxy, waiting_for_the_upstream_outlives_the_header_timeout)
{
    int mute = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert_eq(bind(mute, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(mute, (struct sockaddr *)&a, &alen), 0);
    server_start_conf(&front,
                      "threads 1;\nlisten 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n"
                      "header_timeout 1s;\nresolver 127.0.0.1:%d;\n"
                      "upstream app {\nserver mute.hark.test:%d;\nconnect_timeout 3s;\n}\n"
                      "location /api/ { proxy_pass app; }\n",
                      front.dir, ntohs(a.sin_port), app.port);
    const char req[] = "GET /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int closed;
    raw_exchange(front.port, req, sizeof(req) - 1, out, sizeof(out), 10000, &closed);
    close(mute);
    cr_assert(strncmp(out, "HTTP/1.1 502 ", 13) == 0, "the client got: '%s'", out);
    front_stop();
}

/*
 * Via names the protocol each message was received with (RFC 9110 section
 * 7.6.3): an HTTP/1.0 request goes up with "Via: 1.0 hark" although it is
 * forwarded as HTTP/1.1, and an HTTP/1.0 response comes back with it. Both
 * used to say 1.1.
 */
Test(httpd_proxy, via_names_the_received_protocol)
{
    front_start("server 127.0.0.1:%d;", app.port);
    const char old[] = "GET /api/headers HTTP/1.0\r\nHost: x\r\n\r\n";
    int closed;
    raw_exchange(front.port, old, sizeof(old) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nVia: 1.0 hark\n"), "%s", out);
    const char old_up[] = "GET /api/http10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    raw_exchange(front.port, old_up, sizeof(old_up) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\r\nVia: 1.0 hark\r\n") && strstr(out, "\r\n\r\nold!"), "%s", out);
    const char new_[] = "GET /api/headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    raw_exchange(front.port, new_, sizeof(new_) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nVia: 1.1 hark\n") && strstr(out, "\r\nVia: 1.1 hark\r\n"), "%s", out);
    front_stop();
}

/*
 * Max-Forwards (RFC 9110 section 7.6.2): an OPTIONS or TRACE request goes up
 * with it decremented, and with 0 left the proxy answers as the final
 * recipient instead of forwarding; other methods keep it as it came. It used
 * to be forwarded untouched.
 */
Test(httpd_proxy, max_forwards_counts_hops)
{
    front_start("server 127.0.0.1:%d;", app.port);
    int closed;
    const char opt3[] = "OPTIONS /api/headers HTTP/1.1\r\nHost: x\r\nMax-Forwards: 3\r\n"
                        "Connection: close\r\n\r\n";
    raw_exchange(front.port, opt3, sizeof(opt3) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nMax-Forwards: 2\n") && !strstr(out, "Max-Forwards: 3"), "%s", out);
    const char trace1[] = "TRACE /api/headers HTTP/1.1\r\nHost: x\r\nMax-Forwards: 1\r\n"
                          "Connection: close\r\n\r\n";
    raw_exchange(front.port, trace1, sizeof(trace1) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nMax-Forwards: 0\n"), "%s", out);
    const char get5[] = "GET /api/headers HTTP/1.1\r\nHost: x\r\nMax-Forwards: 5\r\n"
                        "Connection: close\r\n\r\n";
    raw_exchange(front.port, get5, sizeof(get5) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nMax-Forwards: 5\n"), "%s", out);
    /* None left: answered here, on a connection that goes on. */
    const char zero[] = "OPTIONS /api/headers HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n"
                        "TRACE /api/headers HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n"
                        "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    raw_exchange(front.port, zero, sizeof(zero) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", out);
    cr_assert(strstr(out, "HTTP/1.1 405 ") && strstr(out, "app /api/last"), "%s", out);
    /*
     * The Allow of a proxied location: what it forwards, TRACE aside; both
     * answers used to carry the static locations' list (GET, HEAD, OPTIONS),
     * the OPTIONS one none at all.
     */
    const char *allow = "\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n";
    const char *a1 = strstr(out, allow), *t405 = strstr(out, "HTTP/1.1 405 ");
    cr_assert(a1 && a1 < t405 && strstr(t405, allow), "%s", out);
    cr_assert_null(strstr(out, "Allow: GET, HEAD, OPTIONS\r\n"), "%s", out);
    cr_assert_null(strstr(out, "OPTIONS /api/headers"), "forwarded with no hop left:\n%s", out);
    cr_assert_null(strstr(out, "TRACE /api/headers"), "forwarded with no hop left:\n%s", out);
    front_stop();
}

/*
 * A client that hangs up in the middle of its request body is in the access
 * log like one that leaves during the response (499): the request used to
 * vanish from the log.
 */
Test(httpd_proxy, client_gone_mid_body_is_logged)
{
    server_start_conf(&front,
                      "threads 1;\nlisten 127.0.0.1:0;\naccess_log %s/access.log combined;\n"
                      "root %s/www;\nupstream app {\nserver 127.0.0.1:%d;\n}\n"
                      "location /api/ { proxy_pass app; }\n",
                      front.dir, front.dir, app.port);
    const char req[] = "POST /api/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    int fd = connect_port(front.port);
    cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    shutdown(fd, SHUT_WR);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_assert_gt(poll(&pfd, 1, 10000), 0, "the proxy kept the connection");
    close(fd);
    /* The same request line, whole this time, shows that the log is being written. */
    run(out, sizeof(out), "curl -s -o /dev/null http://127.0.0.1:%d/api/after", front.port);
    front_stop_read_access_log();
    cr_assert(strstr(out, "\"GET /api/after HTTP/1.1\" 200 "), "%s", out);
    cr_assert(strstr(out, "\"POST /api/cut HTTP/1.1\" 499 0 "), "%s", out);
}

/*
 * A server may repeat Content-Length with the same value (RFC 9110 section
 * 8.6), but the two lines together read as "5, 5", which a sender must not
 * forward: the client gets one. Both used to be forwarded.
 */
Test(httpd_proxy, repeated_content_length_forwarded_once)
{
    front_start("server 127.0.0.1:%d;", app.port);
    const char req[] = "GET /api/dupcl HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /api/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int closed;
    raw_exchange(front.port, req, sizeof(req) - 1, out, sizeof(out), 5000, &closed);
    const char *cl = strstr(out, "Content-Length: 5\r\n");
    cr_assert(cl && !strstr(cl + 1, "Content-Length: 5\r\n"), "%s", out);
    cr_assert(strstr(out, "\r\n\r\nhelloHTTP/1.1 200 OK\r\n") && strstr(out, "app /api/last"), "%s",
              out);
    front_stop();
}

/*
 * Passive health: a good answer to a request that was sent before the
 * server failed says nothing about it now. Such a late 200 used to clear the
 * mark at once, so a server that failed while slow requests were in flight
 * was never kept out for fail_timeout.
 */
Test(httpd_proxy, a_late_answer_does_not_clear_a_down_mark)
{
    front_start("server 127.0.0.1:%d;\nmax_fails 1;\nfail_timeout 60s;", app.port);
    char s[128], cmd[256];
    snprintf(s, sizeof(s), "{upstream=\"app\",server=\"127.0.0.1:%d\"", app.port);
    snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null http://127.0.0.1:%d/api/sleep/2", front.port);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    proc_t slow = {.pid = spawn(argv, -1)};
    /* The slow request is with the server before the failure. */
    for (int i = 0; i < 500 && um("hark_upstream_active", s, "") != 1; i++)
        usleep(10 * 1000);
    cr_assert_eq(um("hark_upstream_active", s, ""), 1, "%s", out);
    cr_assert_eq(status_of("/api/hangup"), 502);
    cr_assert_eq(um("hark_upstream_down", s, ""), 1, "%s", out);
    int st = -1;
    cr_assert_eq(waitpid(slow.pid, &st, 0), slow.pid);
    slow.pid = 0;
    cr_assert_eq(um("hark_upstream_responses_total", s, ",code=\"2xx\""), 1, "%s", out);
    cr_assert_eq(um("hark_upstream_down", s, ""), 1, "a late 200 cleared the mark:\n%s", out);
    front_stop();
}

/*
 * A response in flight when the server starts draining (SIGTERM) ends the
 * connection, so it says Connection: close, as every other response does
 * while draining; a proxied one said nothing and the connection closed after
 * it, under a client that could be sending its next request.
 */
Test(httpd_proxy, response_during_drain_says_close)
{
    front_start("server 127.0.0.1:%d;", app.port);
    char s[128];
    snprintf(s, sizeof(s), "{upstream=\"app\",server=\"127.0.0.1:%d\"", app.port);
    int fd = connect_port(front.port);
    const char req[] = "GET /api/sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    for (int i = 0; i < 500 && um("hark_upstream_active", s, "") != 1; i++)
        usleep(10 * 1000);
    cr_assert_eq(um("hark_upstream_active", s, ""), 1, "%s", out);
    kill(front.pid, SIGTERM);
    read_until_close(fd, out, 0, sizeof(out), 10000, NULL);
    close(fd);
    cr_assert(strstr(out, "HTTP/1.1 200 OK\r\n") && strstr(out, "\r\n\r\nslept"), "%s", out);
    cr_assert(strstr(out, "\r\nConnection: close\r\n"), "%s", out);
    front_stop();
}

/*
 * A header that Connection names is removed before forwarding (RFC 9110
 * section 7.6.1), X-Forwarded-For too: its addresses used to be copied into
 * the one the proxy appends to, so the server saw them all the same.
 */
Test(httpd_proxy, x_forwarded_for_named_in_connection_is_dropped)
{
    front_start("server 127.0.0.1:%d;", app.port);
    const char req[] = "GET /api/headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.9.9\r\n"
                       "Connection: close, X-Forwarded-For\r\n\r\n";
    int closed;
    raw_exchange(front.port, req, sizeof(req) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nX-Forwarded-For: 127.0.0.1\n"), "%s", out);
    cr_assert_null(strstr(out, "10.9.9.9"), "%s", out);
    const char kept[] = "GET /api/headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.9.9\r\n"
                        "Connection: close\r\n\r\n";
    raw_exchange(front.port, kept, sizeof(kept) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "\nX-Forwarded-For: 10.9.9.9, 127.0.0.1\n"), "%s", out);
    front_stop();
}

/* Waits until dnsmasq has logged more than n queries for name; returns the count. */
static int wait_queries(const char *needle, int n, int seconds)
{
    int q = 0;
    for (int i = 0; i < seconds * 20 && (q = log_lines(dns.dir, "log", needle, NULL)) <= n; i++)
        usleep(50 * 1000);
    return q;
}

/*
 * A name re-resolved to the same addresses in another order (DNS servers
 * rotate the records of an answer) has not moved: its idle connections stay
 * pooled. The answers used to be compared in order, so each rotation closed
 * the pool and the next request opened a new connection.
 */
Test(httpd_proxy, reordered_answer_keeps_the_pool)
{
    setenv("PROXY_UPSTREAM_ALSO", "127.0.0.2", 1);
    helper_start(&extra, "app", NULL);
    unsetenv("PROXY_UPSTREAM_ALSO");
    cr_assert_eq(
        dnsmasq_start(&dns, "127.0.0.1 backend.hark.test\n127.0.0.2 backend.hark.test\n", 1), 0);
    setenv("HARK_HTTPD_RESOLVER", dns.servers, 1);
    front_start("server backend.hark.test:%d;\nkeepalive 4;\nresolve_interval 30s;", extra.port);
    char s[128];
    snprintf(s, sizeof(s), "{upstream=\"app\",server=\"backend.hark.test:%d\"", extra.port);
    cr_assert_eq(status_of("/api/a"), 200);
    cr_assert_eq(um("hark_upstream_connections_total", s, ""), 1, "%s", out);
    static const char *const orders[] = {
        "127.0.0.2 backend.hark.test\n127.0.0.1 backend.hark.test\n",
        "127.0.0.1 backend.hark.test\n127.0.0.2 backend.hark.test\n",
    };
    const char *needle = "query[A] backend.hark.test";
    for (int round = 0; round < 2; round++) {
        int seen = log_lines(dns.dir, "log", needle, NULL);
        set_hosts(orders[round]);
        /* A lookup after the change (the TTL is 1 s), then its answer taken in. */
        int q = wait_queries(needle, seen, 10);
        q = wait_queries(needle, q, 10);
        cr_assert_gt(q, seen + 1, "the name was not looked up again");
        usleep(300 * 1000);
        cr_assert_eq(status_of("/api/a"), 200);
    }
    cr_assert_eq(um("hark_upstream_connections_total", s, ""), 1,
                 "a reordered answer closed the pool:\n%s", out);
    cr_assert_eq(um("hark_upstream_reused_total", s, ""), 2, "%s", out);
    front_stop();
}

/*
 * A DNS server that answers every query SERVFAIL (a failure the resolver's
 * cache does not keep, unlike "no such name"), and logs a line per query to
 * dir/queries. A child process; its port goes to *port.
 */
static void servfail_start(proc_t *p, const char *dir)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    p->port = ntohs(a.sin_port);
    char path[512];
    snprintf(path, sizeof(path), "%s/queries", dir);
    pid_t parent = getpid();
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        for (;;) {
            unsigned char q[512];
            struct sockaddr_in from;
            socklen_t flen = sizeof(from);
            ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
            if (n < 12)
                continue;
            q[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* a response, opcode and RD kept */
            q[3] = 0x82;                                  /* RA, SERVFAIL */
            memset(q + 6, 0, 6);                          /* no records, the question kept */
            (void)sendto(fd, q, (size_t)n, 0, (struct sockaddr *)&from, flen);
            (void)write(log, "q\n", 2);
        }
    }
    close(fd);
}

/*
 * A name that does not resolve is not looked up again for every request:
 * after a failed lookup its requests get 502 at once until the retry time
 * (5 s), then one lookup goes out again. Every request used to start a
 * lookup of its own, a storm of queries under load (the resolver's cache
 * keeps "no such name" for a while, but not a failing server's answer).
 */
Test(httpd_proxy, unresolved_name_is_not_looked_up_per_request)
{
    servfail_start(&extra, front.dir);
    server_start_conf(&front,
                      "threads 1;\nlisten 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n"
                      "resolver 127.0.0.1:%d;\nupstream app {\nserver fail.hark.test:%d;\n"
                      "max_fails 0;\n}\nlocation /api/ { proxy_pass app; }\n",
                      front.dir, extra.port, app.port);
    /* The lookup made when the worker starts fails. */
    int start = 0;
    for (int i = 0; i < 200 && (start = log_lines(front.dir, "queries", "q", NULL)) == 0; i++)
        usleep(50 * 1000);
    cr_assert_gt(start, 0, "no lookup at start");
    usleep(300 * 1000);
    start = log_lines(front.dir, "queries", "q", NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(status_of("/api/x"), 502);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    usleep(300 * 1000);
    int q = log_lines(front.dir, "queries", "q", NULL) - start;
    /* At most one lookup (of start's queries) per 5 s retry (a slow machine may take a while). */
    long allowed = start * (1 + (t1.tv_sec - t0.tv_sec) / 5);
    cr_assert_leq(q, allowed, "%d queries for 20 requests (%ld allowed)", q, allowed);
    front_stop();
}

/*
 * One try of send_timeout_runs_from_the_pending_write with first bytes of
 * body before the quiet spell: 0 when a response came during the spell (the
 * bytes did not all fit in the kernel, and one write waited through it), 1
 * when the whole exchange went well, -1 when it did not (out says how).
 */
static int quiet_spell_exchange(size_t first, size_t rest)
{
    char head[256];
    int hl = snprintf(head, sizeof(head),
                      "POST /api/up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      first + rest);
    int fd = connect_port(front.port);
    cr_assert_eq(write(fd, head, (size_t)hl), hl);
    memset(out, 'b', sizeof(out));
    for (size_t done = 0; done < first;) {
        size_t n = first - done < sizeof(out) ? first - done : sizeof(out);
        ssize_t w = write(fd, out, n);
        cr_assert_gt(w, 0);
        done += (size_t)w;
    }
    /* Quiet for longer than send_timeout; the server reads nothing yet. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) > 0) {
        close(fd);
        return 0;
    }
    size_t sent = 0;
    while (sent < rest) {
        size_t n = rest - sent < sizeof(out) ? rest - sent : sizeof(out);
        ssize_t w = write(fd, out, n);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    read_until_close(fd, out, 0, sizeof(out), 30000, NULL);
    close(fd);
    char want[64];
    snprintf(want, sizeof(want), "\r\n\r\nlen=%zu", first + rest);
    return strncmp(out, "HTTP/1.1 200 ", 13) == 0 && strstr(out, want) ? 1 : -1;
}

/*
 * send_timeout is time without progress while a write to the server is
 * pending, not time since the last write completed: a client that sends
 * some body, stays quiet for longer than send_timeout, then sends more while
 * the server is briefly busy (here: it reads nothing for 6 s after the head,
 * then everything) must not get a 504 the moment its bytes wait. The stale
 * deadline of the last completed write used to end the request at once.
 * That shows when the first write after the spell has to wait at once (with
 * room for it, its completion moved the deadline before the timer fired):
 * the body before the spell must nearly fill what the kernel holds for the
 * server (its tiny segments and window make that about 100 KiB, depending
 * on the kernel's tuning), and not overflow it (a write waiting through the
 * spell times out rightly). So the sizes go down in steps of 32 KiB, less
 * than one 64 KiB write, and the first that does not overflow is the test.
 */
Test(httpd_proxy, send_timeout_runs_from_the_pending_write)
{
    helper_start(&extra, "tinystall", "6");
    front_start("server 127.0.0.1:%d;\nsend_timeout 3s;\nread_timeout 20s;\nmax_fails 0;",
                extra.port);
    int r = 0;
    size_t first = (size_t)288 << 10;
    while (r == 0 && first > ((size_t)32 << 10)) {
        first -= (size_t)32 << 10;
        r = quiet_spell_exchange(first, (size_t)1 << 20);
    }
    cr_assert_eq(r, 1, "%zu bytes, a quiet spell, then 1 MiB: %s", first, r ? out : "overflowed");
    front_stop();
}

/*
 * An upstream that answers before the request body is all sent: the proxy
 * ends the exchange and closes the client connection, but the client is
 * still sending. A plain close then makes the kernel answer those bytes
 * with a reset, which throws away the part of the response still in the
 * proxy's send queue (the client here reads slowly: a small receive
 * buffer). The proxy now closes lingering: its write side shut down after
 * the response, the client's bytes read and dropped until it closes.
 */
Test(httpd_proxy, early_response_survives_a_client_still_sending)
{
    front_start("server 127.0.0.1:%d;", app.port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small_buf = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small_buf, sizeof(small_buf));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)front.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char head[] = "POST /api/early HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n";
    cr_assert_eq(write(fd, head, sizeof(head) - 1), (ssize_t)sizeof(head) - 1);
    memset(out, 'b', sizeof(out));
    /* Sends its body on, a little at a time, while it reads the answer slowly. */
    static char got[1 << 18];
    size_t len = 0, sent = 0;
    bool sending = true;
    for (int i = 0; i < 4000; i++) {
        if (sending && send(fd, out, 2048, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
            sent += 2048;
        else if (errno != EAGAIN)
            sending = false; /* the proxy is gone (or reset the connection) */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5) < 0)
            break;
        if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = recv(fd, got + len, len + 1024 < sizeof(got) ? 1024 : sizeof(got) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    got[len] = '\0';
    close(fd);
    cr_log_info("the client sent %zu body bytes", sent);
    const char *body = strstr(got, "\r\n\r\n");
    cr_assert(strncmp(got, "HTTP/1.1 200 ", 13) == 0 && body, "got %zu bytes: %.300s", len, got);
    size_t blen = len - (size_t)(body + 4 - got);
    cr_assert_eq(blen, 102400, "the client got %zu of the 102400 body bytes", blen);
    front_stop();
}
