/*
 * hark-httpd connection handling end to end with raw sockets: requests that
 * must wait for the thread pool (a directory listing is always read off the
 * loop) are still answered when the client half-closes its side right after
 * sending them; a FIFO in the root is refused at once instead of holding a
 * pool thread until a writer comes.
 */
#include "httpd_util.h"

static server_t srv;
static char out[1 << 21];
static char big[300000];

static void setup(void)
{
    make_tmpdir(&srv);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/www", srv.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    write_file(dir, "small.txt", "hello world!", 12);
    memset(big, 'b', sizeof(big));
    write_file(dir, "big.bin", big, sizeof(big));
    snprintf(dir, sizeof(dir), "%s/www/list", srv.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    write_file(dir, "one.txt", "1", 1);
    snprintf(dir, sizeof(dir), "%s/www/pipe", srv.dir);
    cr_assert_eq(mkfifo(dir, 0644), 0);
    server_start_conf(&srv,
                      "listen 127.0.0.1:0;\naccess_log off;\nthreads 1;\n"
                      "location / { root %s/www; autoindex on; }\n",
                      srv.dir);
}

static server_t px; /* a second server some tests start */

static void teardown(void)
{
    server_stop(&px, SIGTERM);
    server_stop(&srv, SIGTERM);
    cleanup_dir(&srv);
}

TestSuite(httpd_conn, .init = setup, .fini = teardown, .timeout = 60);

static int count(const char *s, size_t len, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(s + i, needle, nl) == 0)
            n++;
    return n;
}

/*
 * Sends req, shuts down the sending side (SHUT_WR) and reads until the
 * server closes or 5 s pass without data. Returns the bytes read;
 * *closed tells whether the server closed.
 */
static size_t send_then_half_close(const char *req, int *closed)
{
    int fd = connect_port(srv.port);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    ssize_t last;
    size_t len = read_until_close(fd, out, 0, sizeof(out), 5000, &last);
    *closed = last == 0;
    close(fd);
    return len;
}

/*
 * A client that sends its request and then shuts down its side (nc -N,
 * HTTP/1.0 tools) still reads the response. When the request had to wait
 * for the pool (a listing, a cold open), the EOF that came meanwhile closed
 * the connection at once, and the response was never sent: nothing for a
 * listing alone, and the listing missing after a large file it followed.
 */
Test(httpd_conn, half_close_while_waiting_still_answers)
{
    int closed;
    size_t n = send_then_half_close("GET /list/ HTTP/1.1\r\nHost: x\r\n\r\n", &closed);
    cr_assert(n > 0 && strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "listing: %zu bytes:\n%s", n,
              out);
    cr_assert(strstr(out, "one.txt"), "%s", out);
    cr_assert(closed, "the connection closes after the answer");

    /* A large file (sendfile, still being written), then a listing that waits. */
    n = send_then_half_close("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /list/ HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                             &closed);
    cr_assert_eq(count(out, n, "HTTP/1.1 200 OK\r\n"), 3, "three responses in %zu bytes", n);
    cr_assert(count(out, n, "one.txt</a>") == 1 && count(out, n, "hello world!") == 1);
    cr_assert(closed);

    /* A head cut short by the EOF can never complete: the complete ones are answered. */
    n = send_then_half_close("GET /list/ HTTP/1.1\r\nHost: x\r\n\r\nGET /small.txt HTTP/1.1\r\nHo",
                             &closed);
    cr_assert_eq(count(out, n, "HTTP/1.1 "), 1, "%s", out);
    cr_assert(strstr(out, "one.txt") && closed, "%s", out);
}

/*
 * A FIFO (or a device) in the root: its open waits for a writer, so the
 * pool thread doing it was held for as long as none came, and a few
 * requests for it held every pool thread: from then on no directory was
 * listed and no cold file opened. It is opened without waiting now, and
 * refused (403) like anything that is not a regular file.
 */
Test(httpd_conn, fifo_in_root_holds_no_pool_thread)
{
    for (int i = 0; i < 8; i++) {
        run(out, sizeof(out),
            "curl -s -m 10 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/pipe", srv.port);
        cr_assert_str_eq(out, "403", "request %d for the FIFO", i);
    }
    run(out, sizeof(out), "curl -s -m 10 http://127.0.0.1:%d/list/", srv.port);
    cr_assert(strstr(out, "one.txt</a>"), "the pool still lists directories: %s", out);
}

/*
 * SIGTERM while a request waits for the pool (a listing): busy connections
 * close after their response (docs/httpd.md), so the waiting request is
 * answered, with Connection: close. It was not: the drain marked the
 * connection "close after what is written", which also stopped the waiting
 * request from being handled when its listing was done, and the client got
 * nothing until header_timeout (then a 408). Twenty listings are pipelined
 * and SIGTERM sent when the first answer arrives. The server is started for
 * each attempt; an attempt in which every listing was done before the drain
 * began (the connection was idle, and is closed without a closing answer)
 * proves nothing and is repeated.
 */
Test(httpd_conn, drain_answers_a_request_waiting_for_its_open)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/www/many", srv.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    for (int i = 0; i < 2000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "file-%04d.txt", i);
        write_file(dir, name, "x", 1);
    }
    char req[20 * 40 + 1] = "";
    for (int i = 0; i < 20; i++)
        strcat(req, "GET /many/ HTTP/1.1\r\nHost: x\r\n\r\n");
    bool hit = false;
    for (int attempt = 0; attempt < 20 && !hit; attempt++) {
        server_t dr = {0};
        snprintf(dr.dir, sizeof(dr.dir), "%s", srv.dir);
        server_start_conf(&dr,
                          "listen 127.0.0.1:0;\naccess_log off;\nthreads 1;\n"
                          "header_timeout 60s;\ndrain_timeout 60s;\n"
                          "location / { root %s/www; autoindex on; }\n",
                          srv.dir);
        int fd = connect_port(dr.port);
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        size_t len = 0;
        int closed = 0;
        while (len < sizeof(out) - 1) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, 5000) <= 0)
                break;
            ssize_t n = read(fd, out + len, sizeof(out) - 1 - len);
            if (n <= 0) {
                closed = 1;
                break;
            }
            if (len == 0) /* the first listing is on its way: the others wait in turn */
                kill(dr.pid, SIGTERM);
            len += (size_t)n;
        }
        out[len] = '\0';
        close(fd);
        int answers = count(out, len, "HTTP/1.1 200 OK\r\n");
        int last_closes = count(out, len, "\r\nConnection: close\r\n");
        int rc = server_stop(&dr, SIGTERM); /* a second SIGTERM ends a drain that is stuck */
        if (closed && last_closes == 0)
            continue; /* every listing was done before the drain began: try again */
        cr_assert(closed, "the connection stayed open after %d answers", answers);
        cr_assert_eq(last_closes, 1, "%d answers, the last should close", answers);
        cr_assert_eq(rc, 0);
        hit = true;
    }
    cr_assert(hit, "the drain never found a request waiting");
}

/*
 * A HEAD request answered with an error still gets no body (RFC 9110
 * section 9.3.2): a 413 for a declared body over max_body, a 400 for a
 * missing Host and a 431 for too many fields came with their HTML page,
 * which a client reads as the start of the next response.
 */
Test(httpd_conn, head_errors_have_no_body)
{
    char many[4096] = "HEAD /small.txt HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 120; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "X-%d: y\r\n", i);
    strcat(many, "\r\n");
    const struct {
        const char *req;
        const char *status;
    } cases[] = {
        {"HEAD /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", "413"},
        {"HEAD /small.txt HTTP/1.1\r\n\r\n", "400"},
        {many, "431"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int closed;
        size_t n = raw_exchange(srv.port, cases[i].req, strlen(cases[i].req), out, sizeof(out),
                                3000, &closed);
        cr_assert(n > 12 && strncmp(out + 9, cases[i].status, 3) == 0, "%s", out);
        char *end = strstr(out, "\r\n\r\n");
        cr_assert(end && end + 4 == out + n, "a body after the head of a HEAD answer:\n%s", out);
        cr_assert(strstr(out, "\r\nContent-Length: "), "the length a GET would get: %s", out);
        cr_assert(closed);
    }
}

/* The responses in s[0 .. len), split at each status line: their lengths, up to max. */
static int split_responses(const char *s, size_t len, size_t *lens, int max)
{
    int n = 0;
    const char *prev = NULL;
    for (size_t i = 0; i + 9 <= len && n <= max; i++) {
        if (memcmp(s + i, "HTTP/1.1 ", 9) != 0)
            continue;
        if (prev && n <= max)
            lens[n - 1] = (size_t)(s + i - prev);
        prev = s + i;
        n++;
    }
    if (prev && n <= max)
        lens[n - 1] = (size_t)(s + len - prev);
    return n;
}

/*
 * Error pages are written into the batch's header buffer right after their
 * head. The room checked before a head is written did not count that page:
 * a 431 (the longest reason, twice in its page) that came when the buffer
 * was nearly full of earlier pipelined answers was sent with its
 * Content-Length but without its body, and the client waited for bytes
 * that never came. The earlier answers here (four kinds, four lengths)
 * are counted to fill the buffer (HTTPD_BATCH_HDR, 6144 bytes) to one byte
 * short of room for the 431.
 */
Test(httpd_conn, error_page_at_the_end_of_a_full_batch)
{
    /*
     * Answers that wait for nothing (an open ends a batch); the HEAD of a
     * cached file first, so that if its entry must be checked again, no
     * answer goes out in a batch before it.
     */
    static const char *const kinds[4] = {
        "HEAD /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    char req[8192];
    snprintf(req, sizeof(req), "%s%s%s%sGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             kinds[0], kinds[1], kinds[2], kinds[3]);
    int closed;
    size_t n = raw_exchange(srv.port, req, strlen(req), out, sizeof(out), 3000, &closed);
    size_t lens[5];
    cr_assert_eq(split_responses(out, n, lens, 5), 5, "%s", out);
    char bad[4096] = "GET /small.txt HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 120; i++)
        snprintf(bad + strlen(bad), sizeof(bad) - strlen(bad), "X-%d: y\r\n", i);
    strcat(bad, "\r\n");
    n = raw_exchange(srv.port, bad, strlen(bad), out, sizeof(out), 3000, &closed);
    cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0, "%s", out);
    size_t l431 = n;

    /* How many of each kind make exactly the target. */
    size_t target = 6144 - l431 + 1, cnt[4] = {0};
    bool found = false;
    for (size_t a = 0; a <= 40 && !found; a++)
        for (size_t b = 0; b <= 40 && !found; b++)
            for (size_t c = 0; c <= 40 && !found; c++) {
                size_t sum = a * lens[0] + b * lens[1] + c * lens[2];
                if (sum <= target && (target - sum) % lens[3] == 0) {
                    cnt[3] = (target - sum) / lens[3];
                    cnt[0] = a, cnt[1] = b, cnt[2] = c;
                    found = a + b + c + cnt[3] < 60;
                }
            }
    cr_assert(found, "no mix of %zu, %zu, %zu and %zu bytes makes %zu", lens[0], lens[1], lens[2],
              lens[3], target);
    req[0] = '\0';
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < cnt[k]; i++)
            strcat(req, kinds[k]);
    strcat(req, bad);
    int total = (int)(cnt[0] + cnt[1] + cnt[2] + cnt[3]) + 1;
    n = raw_exchange(srv.port, req, strlen(req), out, sizeof(out), 3000, &closed);
    size_t all[64];
    int got = split_responses(out, n, all, 64);
    cr_assert_eq(got, total, "%d responses in %zu bytes", got, n);
    cr_assert(strncmp(out + n - all[got - 1], "HTTP/1.1 431 ", 13) == 0);
    cr_assert_eq(all[got - 1], l431, "the 431 after %zu bytes of answers: %zu bytes, %zu alone",
                 n - all[got - 1], all[got - 1], l431);
    cr_assert(closed);
}

/*
 * Responses go out in request order, also when input runs far ahead of a
 * request that waits. The test is the upstream of a proxied request and
 * answers it only after the client has pipelined more than the input limit
 * (max_header_bytes + 64 KiB) of small GETs behind it. The server used to
 * answer the overflow with a 431 at once, ahead of the proxied answer, and
 * closed the connection: the waiting request's answer never came. Now it
 * stops reading until the proxied request is answered, then answers the
 * rest in order.
 */
Test(httpd_conn, pipelined_overflow_waits_for_earlier_answer)
{
    int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert_eq(bind(up, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(up, 4), 0);
    cr_assert_eq(getsockname(up, (struct sockaddr *)&a, &alen), 0);
    snprintf(px.dir, sizeof(px.dir), "%s", srv.dir);
    server_start_conf(&px,
                      "listen 127.0.0.1:0;\naccess_log off;\nthreads 1;\n"
                      "max_header_bytes 1k;\nheader_timeout 60s;\n"
                      "upstream test {\nserver 127.0.0.1:%d;\nread_timeout 60s;\n}\n"
                      "location /up/ { proxy_pass test; }\nlocation / { root %s/www; }\n",
                      ntohs(a.sin_port), srv.dir);
    static char req[200000];
    static const char get[] = "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t len = (size_t)snprintf(req, sizeof(req), "GET /up/x HTTP/1.1\r\nHost: x\r\n\r\n");
    int gets = 0;
    for (; len < 100000; gets++) {
        memcpy(req + len, get, sizeof(get) - 1);
        len += sizeof(get) - 1;
    }
    len += (size_t)snprintf(req + len, sizeof(req) - len,
                            "GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    gets++;
    int fd = connect_port(px.port);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, req + off, len - off);
        cr_assert_gt(w, 0);
        off += (size_t)w;
    }
    /* The proxied request reaches the upstream (this test), which does not answer yet. */
    struct pollfd upfd = {.fd = up, .events = POLLIN};
    cr_assert_gt(poll(&upfd, 1, 10000), 0, "the proxy never connected");
    int u = accept4(up, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(u, 0);
    char head[4096];
    size_t hl = 0;
    while (hl < sizeof(head) - 1) {
        struct pollfd pfd = {.fd = u, .events = POLLIN};
        cr_assert_gt(poll(&pfd, 1, 10000), 0, "no request head upstream");
        ssize_t r = read(u, head + hl, sizeof(head) - 1 - hl);
        if (r <= 0)
            break; /* the proxied request was given up */
        hl += (size_t)r;
        head[hl] = '\0';
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    /* Nothing may reach the client before the proxied answer: give a 431 time to show. */
    size_t got = 0;
    struct pollfd cfd = {.fd = fd, .events = POLLIN};
    if (poll(&cfd, 1, 1000) > 0) {
        ssize_t r = read(fd, out, sizeof(out) - 1);
        got = r > 0 ? (size_t)r : 0;
    }
    out[got] = '\0';
    cr_assert_eq(got, 0, "an answer ahead of the waiting request's:\n%s", out);
    const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nupstream";
    (void)!write(u, answer, sizeof(answer) - 1);
    ssize_t last;
    got = read_until_close(fd, out, got, sizeof(out), 10000, &last);
    int closed = last <= 0;
    close(fd);
    close(u);
    close(up);
    server_stop(&px, SIGTERM);
    cr_assert_eq(count(out, got, "HTTP/1.1 "), gets + 1, "%d answers expected, got:\n%.2000s",
                 gets + 1, out);
    cr_assert_eq(count(out, got, "HTTP/1.1 200 OK\r\n"), gets + 1, "%.2000s", out);
    const char *p1 = strstr(out, "upstream"), *p2 = strstr(out, "hello world!");
    cr_assert(p1 && p2 && p1 < p2, "the proxied answer first:\n%.2000s", out);
    cr_assert_eq(count(out, got, "hello world!"), gets, "%.2000s", out);
    cr_assert(closed);
}

/*
 * A HEAD of /metrics or of the status page gets the headers a GET would
 * get and no body, and the access log records no body bytes for it (as for
 * a HEAD of a file). The built-in pages' answer did not say it was a HEAD's:
 * the body was left out, but the log said its length had been sent. A GET
 * of each, last, shows what the log says of a body.
 */
Test(httpd_conn, head_of_builtin_pages_logs_no_body)
{
    snprintf(px.dir, sizeof(px.dir), "%s", srv.dir);
    server_start_conf(&px,
                      "listen 127.0.0.1:0;\naccess_log %s/access.log common;\nthreads 1;\n"
                      "location / { root %s/www; }\n",
                      srv.dir, srv.dir);
    const char *paths[] = {"/metrics", "/_hark/status"};
    for (int i = 0; i < 2; i++) {
        char req[128];
        snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 paths[i]);
        int closed;
        size_t n = raw_exchange(px.port, req, strlen(req), out, sizeof(out), 3000, &closed);
        cr_assert(n > 12 && strncmp(out, "HTTP/1.1 200 ", 13) == 0, "%s", out);
        char *end = strstr(out, "\r\n\r\n");
        cr_assert(end && end + 4 == out + n, "a body after the head of a HEAD answer:\n%s", out);
        cr_assert(strstr(out, "\r\nContent-Length: "), "%s", out);
        cr_assert(closed);
    }
    for (int i = 0; i < 2; i++)
        run(NULL, 0, "curl -s -m 10 -o /dev/null http://127.0.0.1:%d%s", px.port, paths[i]);
    /* The log is written off the request path: wait for its four lines. */
    char path[400];
    snprintf(path, sizeof(path), "%s/access.log", srv.dir);
    int lines = 0;
    for (int tries = 0; tries < 1000 && lines < 4; tries++) {
        FILE *f = fopen(path, "r");
        size_t len = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
        if (f)
            fclose(f);
        out[len] = '\0';
        lines = count(out, len, "\n");
        if (lines < 4)
            usleep(10000);
    }
    cr_assert_eq(lines, 4, "access log:\n%s", out);
    char *line = out;
    for (int i = 0; i < 4; i++) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        /* common: ... "METHOD path HTTP/1.1" status bytes */
        char *q = strrchr(line, '"');
        int status = 0;
        long long bytes = -1;
        cr_assert(q && sscanf(q + 1, " %d %lld", &status, &bytes) == 2, "%s", line);
        cr_assert_eq(status, 200, "%s", line);
        if (i < 2)
            cr_assert_eq(bytes, 0, "a HEAD logged with body bytes: %s", line);
        else
            cr_assert_gt(bytes, 0, "%s", line);
        line = nl + 1;
    }
}

/* How many of the server's descriptors are open on a file whose path contains name. */
static int fds_on(pid_t pid, const char *name)
{
    char dir[64], link[600], target[600];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(link, sizeof(link), "%s/%d", dir, fd);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len < 0)
            continue;
        target[len] = '\0';
        if (strstr(target, name))
            n++;
    }
    return n;
}

/*
 * A cached file found deleted when its entry is checked again leaves the
 * open-file cache, and its descriptor is closed, so the disk space is freed
 * now and not at the entry's eviction. The entry stayed, fd open, and every
 * later request checked it again (a 404 each time) while the deleted file
 * kept its blocks. open_file_ttl 0: each request checks its entry.
 */
Test(httpd_conn, deleted_file_leaves_the_cache)
{
    snprintf(px.dir, sizeof(px.dir), "%s", srv.dir);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/www", srv.dir);
    write_file(dir, "doomed.txt", "soon gone", 9);
    write_file(dir, "doomed-big.bin", big, sizeof(big));
    server_start_conf(&px,
                      "listen 127.0.0.1:0;\naccess_log off;\nthreads 1;\nopen_file_ttl 0;\n"
                      "location / { root %s/www; }\n",
                      srv.dir);
    const char *names[] = {"doomed.txt", "doomed-big.bin"};
    for (int i = 0; i < 2; i++) {
        run(out, sizeof(out),
            "curl -s -m 10 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/%s", px.port,
            names[i]);
        cr_assert_str_eq(out, "200");
        cr_assert_eq(fds_on(px.pid, names[i]), 1, "%s is cached with its fd open", names[i]);
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        cr_assert_eq(unlink(path), 0);
        for (int k = 0; k < 2; k++) {
            run(out, sizeof(out),
                "curl -s -m 10 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/%s", px.port,
                names[i]);
            cr_assert_str_eq(out, "404");
        }
        cr_assert_eq(fds_on(px.pid, names[i]), 0, "the deleted %s is still open", names[i]);
    }
}

/* The value of header name (with its ": ") in the head at s, or "" (into v). */
static void header_value(const char *s, const char *name, char *v, size_t cap)
{
    v[0] = '\0';
    const char *p = strstr(s, name);
    if (!p)
        return;
    p += strlen(name);
    size_t n = strcspn(p, "\r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(v, p, n);
    v[n] = '\0';
}

/*
 * An If-Range date is a strong validator only when the file was not
 * modified in the second the response is made in (RFC 9110 sections 13.1.5
 * and 8.8.2.2): two versions written within that second share the date, so
 * a range of one could be spliced onto the other. Such a date no longer
 * matches: the whole file is sent (200). A file written in an earlier
 * second still gets its range (206). An attempt whose answer came in a
 * later second than the file's mtime proves nothing and is repeated.
 */
Test(httpd_conn, if_range_date_of_this_second_is_weak)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/www", srv.dir);
    char body[100];
    memset(body, 'r', sizeof(body));
    bool hit = false;
    for (int attempt = 0; attempt < 50 && !hit; attempt++) {
        for (int old = 0; old < 2; old++) {
            char name[64], path[600], date[64], req[512];
            snprintf(name, sizeof(name), "fresh-%d-%d.txt", attempt, old);
            write_file(dir, name, body, sizeof(body));
            snprintf(path, sizeof(path), "%s/%s", dir, name);
            if (old) {
                struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {time(NULL) - 10, 0}};
                cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
            }
            struct stat st;
            cr_assert_eq(stat(path, &st), 0);
            struct tm tm;
            strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&st.st_mtime, &tm));
            snprintf(req, sizeof(req),
                     "GET /%s HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\nIf-Range: %s\r\n"
                     "Connection: close\r\n\r\n",
                     name, date);
            int closed;
            size_t n = raw_exchange(srv.port, req, strlen(req), out, sizeof(out), 3000, &closed);
            cr_assert_gt(n, 12, "no answer");
            char lm[64], now[64];
            header_value(out, "\r\nLast-Modified: ", lm, sizeof(lm));
            header_value(out, "\r\nDate: ", now, sizeof(now));
            cr_assert_str_eq(lm, date, "%s", out);
            if (old) {
                cr_assert(strncmp(out, "HTTP/1.1 206 ", 13) == 0, "an old date is strong:\n%s",
                          out);
            } else if (strcmp(now, date) == 0) {
                cr_assert(strncmp(out, "HTTP/1.1 200 ", 13) == 0,
                          "a date of this second matched If-Range:\n%s", out);
                cr_assert(strstr(out, "\r\nContent-Length: 100\r\n"), "%s", out);
                hit = true;
            }
        }
    }
    cr_assert(hit, "no answer came in the second its file was written");
}
