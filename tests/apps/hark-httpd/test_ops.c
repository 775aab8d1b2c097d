/*
 * hark-httpd operations end to end: -t and --help, HTTPS (curl and
 * openssl s_client, ALPN), graceful reload (a broken config rejected, the
 * old one kept; ten reloads under wrk with zero failed requests and zero
 * dropped connections), SIGTERM drain finishing a response in flight, and
 * 10,000 idle keep-alive connections held by a client in another process.
 */
#include "httpd_util.h"

#include <time.h>

#include <sys/resource.h>

static server_t srv;
static char out[1 << 16];

static void setup(void)
{
    make_tmpdir(&srv);
    char www[300];
    snprintf(www, sizeof(www), "%s/www", srv.dir);
    cr_assert_eq(mkdir(www, 0755), 0);
    write_file(www, "a.txt", "version-one", 11);
    snprintf(www, sizeof(www), "%s/www2", srv.dir);
    cr_assert_eq(mkdir(www, 0755), 0);
    write_file(www, "a.txt", "version-two", 11);
}

static void teardown(void)
{
    if (srv.pid > 0)
        server_stop(&srv, SIGKILL);
    cleanup_dir(&srv);
}

TestSuite(httpd_ops, .init = setup, .fini = teardown, .timeout = 120);

static void write_conf(const char *body)
{
    snprintf(srv.conf, sizeof(srv.conf), "%s/hark.conf", srv.dir);
    FILE *f = fopen(srv.conf, "w");
    cr_assert_not_null(f);
    fputs(body, f);
    fclose(f);
}

Test(httpd_ops, check_mode_and_help)
{
    char conf[1024];
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\nroot %s/www;\n", srv.dir);
    write_conf(conf);
    cr_assert_eq(run(out, sizeof(out), "%s -t -c %s 2>&1", HARK_HTTPD_BIN, srv.conf), 0, "%s", out);
    write_conf("listen 127.0.0.1:0;\nroot /nonexistent-dir;\nthreads ten;\n");
    cr_assert_eq(run(out, sizeof(out), "%s -t -c %s 2>&1", HARK_HTTPD_BIN, srv.conf), 2);
    cr_assert(strstr(out, "hark.conf:"), "the error names the file and line: %s", out);
    cr_assert_eq(run(out, sizeof(out), "%s --help", HARK_HTTPD_BIN), 0);
    cr_assert(strstr(out, "--root"));
    cr_assert_eq(run(out, sizeof(out), "%s --bogus 2>&1", HARK_HTTPD_BIN), 1);
    /* -r, -l and -n with -c: refused (they used to be ignored without a word). */
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\nroot %s/www;\n", srv.dir);
    write_conf(conf);
    cr_assert_eq(
        run(out, sizeof(out), "%s -t -c %s --listen 127.0.0.1:9 2>&1", HARK_HTTPD_BIN, srv.conf), 1,
        "%s", out);
    cr_assert(strstr(out, "--listen cannot be combined with -c"), "%s", out);
}

/*
 * -t catches what a start would refuse: a bad command-line listen address
 * (it said "valid" and the start failed), a log in a missing directory, and a
 * certificate error names the file and line of its listen directive.
 */
Test(httpd_ops, check_mode_catches_what_start_would_refuse)
{
    int code = run(out, sizeof(out), "%s -t -l bogus -r %s/www 2>&1", HARK_HTTPD_BIN, srv.dir);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert(strstr(out, "listen bogus: expected an address"), "%s", out);
    code =
        run(out, sizeof(out), "%s -t -l 127.0.0.1:99999 -r %s/www 2>&1", HARK_HTTPD_BIN, srv.dir);
    cr_assert_eq(code, 2, "%s", out);

    char conf[1024];
    snprintf(conf, sizeof(conf), "root %s/www;\naccess_log %s/no/such/dir/a.log;\n", srv.dir,
             srv.dir);
    write_conf(conf);
    code = run(out, sizeof(out), "%s -t -c %s 2>&1", HARK_HTTPD_BIN, srv.conf);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert(strstr(out, "access_log") && strstr(out, "No such file or directory"), "%s", out);

    run(NULL, 0, "echo 'not a certificate' > %s/bad.pem", srv.dir);
    snprintf(conf, sizeof(conf),
             "root %s/www;\n\nlisten 127.0.0.1:0 { tls on; cert %s/bad.pem; key %s/bad.pem; }\n",
             srv.dir, srv.dir, srv.dir);
    write_conf(conf);
    code = run(out, sizeof(out), "%s -t -c %s 2>&1", HARK_HTTPD_BIN, srv.conf);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert(strstr(out, "hark.conf:3: listen 127.0.0.1:0: TLS:"), "%s", out);
}

/*
 * A log path that names a directory: -t said "valid" (the directory is
 * writable) and the start then failed (open(2): EISDIR), exit 3.
 */
Test(httpd_ops, check_mode_refuses_a_log_path_that_is_a_directory)
{
    char conf[1024];
    snprintf(conf, sizeof(conf), "root %s/www;\naccess_log %s/www2;\n", srv.dir, srv.dir);
    write_conf(conf);
    int code = run(out, sizeof(out), "%s -t -c %s 2>&1", HARK_HTTPD_BIN, srv.conf);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert(strstr(out, "access_log") && strstr(out, "Is a directory"), "%s", out);
    snprintf(conf, sizeof(conf), "root %s/www;\nerror_log %s/www2;\n", srv.dir, srv.dir);
    write_conf(conf);
    code = run(out, sizeof(out), "%s -t -c %s 2>&1", HARK_HTTPD_BIN, srv.conf);
    cr_assert_eq(code, 2, "%s", out);
    cr_assert(strstr(out, "error_log") && strstr(out, "Is a directory"), "%s", out);
}

Test(httpd_ops, https_with_alpn)
{
    cr_assert_eq(run(NULL, 0,
                     "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                     "-nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost "
                     ">/dev/null 2>&1",
                     srv.dir),
                 0);
    server_start_conf(&srv,
                      "listen 127.0.0.1:0 { tls on; cert %s/cert.pem; key %s/key.pem; }\n"
                      "root %s/www;\naccess_log off;\n",
                      srv.dir, srv.dir, srv.dir);
    run(out, sizeof(out), "curl -s -k https://127.0.0.1:%d/a.txt", srv.port);
    cr_assert_str_eq(out, "version-one");
    run(out, sizeof(out),
        "echo | openssl s_client -connect 127.0.0.1:%d -alpn http/1.1 2>/dev/null | "
        "grep -i 'ALPN protocol'",
        srv.port);
    cr_assert(strstr(out, "http/1.1"), "%s", out);
    /* A 1 MiB file over TLS: sendfile through the TLS stream. */
    run(NULL, 0, "head -c 1048576 /dev/urandom > %s/www/big.bin", srv.dir);
    cr_assert_eq(run(NULL, 0, "curl -s -k https://127.0.0.1:%d/big.bin | cmp -s - %s/www/big.bin",
                     srv.port, srv.dir),
                 0);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

static int wrk_failures(const char *text)
{
    /* wrk prints "Non-2xx or 3xx responses: N" and "Socket errors: connect A, read B, ..." */
    int bad = 0;
    const char *p = strstr(text, "Non-2xx or 3xx responses:");
    if (p)
        bad += atoi(p + strlen("Non-2xx or 3xx responses:"));
    p = strstr(text, "Socket errors:");
    if (p) {
        int a = 0, b = 0, c = 0, d = 0;
        sscanf(p, "Socket errors: connect %d, read %d, write %d, timeout %d", &a, &b, &c, &d);
        bad += a + b + c + d;
    }
    return bad;
}

Test(httpd_ops, reload_under_load)
{
    char conf[1024];
    server_start_conf(&srv, "threads 2;\nlisten 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n",
                      srv.dir);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/a.txt", srv.port);
    cr_assert_str_eq(out, "version-one");

    /* A broken config is refused; the old one keeps serving. */
    write_conf("listen 127.0.0.1:0;\nroot /does/not/exist;\n");
    kill(srv.pid, SIGHUP);
    usleep(300 * 1000);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/a.txt", srv.port);
    cr_assert_str_eq(out, "version-one");

    /* Ten reloads while wrk keeps 20 keep-alive connections busy. */
    FILE *w = NULL;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "wrk -t1 -c20 -d4s http://127.0.0.1:%d/a.txt 2>&1", srv.port);
    w = popen(cmd, "r");
    cr_assert_not_null(w);
    usleep(500 * 1000);
    for (int i = 0; i < 10; i++) {
        snprintf(conf, sizeof(conf),
                 "threads 2;\nlisten 127.0.0.1:0;\naccess_log off;\nroot %s/%s;\n", srv.dir,
                 i % 2 ? "www" : "www2");
        write_conf(conf);
        kill(srv.pid, SIGHUP);
        usleep(250 * 1000);
    }
    size_t len = fread(out, 1, sizeof(out) - 1, w);
    out[len] = '\0';
    pclose(w);
    cr_assert(strstr(out, "requests in"), "wrk ran: %s", out);
    cr_assert_eq(wrk_failures(out), 0, "failed requests or dropped connections: %s", out);
    /* The last reload (i = 9) points at www. */
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/a.txt", srv.port);
    cr_assert_str_eq(out, "version-one");
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/metrics | grep '^hark_config_generation'",
        srv.port);
    cr_assert(strstr(out, "hark_config_generation 11"), "%s", out);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/*
 * Each reload points at a new root; the kernel gives an old generation's
 * closed root fd number to a later root, and the open-file cache, keyed by
 * that number, once served an earlier root's file (www5 answered "root3").
 */
Test(httpd_ops, reloaded_roots_never_serve_an_earlier_roots_files)
{
    for (int i = 1; i <= 5; i++) {
        char dir[300], body[16];
        snprintf(dir, sizeof(dir), "%s/r%d", srv.dir, i);
        cr_assert_eq(mkdir(dir, 0755), 0);
        snprintf(body, sizeof(body), "root%d", i);
        write_file(dir, "index.html", body, strlen(body));
    }
    char conf[1024];
    for (int i = 1; i <= 5; i++) {
        snprintf(conf, sizeof(conf),
                 "threads 1;\nlisten 127.0.0.1:0;\naccess_log off;\nopen_file_ttl 60s;\n"
                 "root %s/r%d;\n",
                 srv.dir, i);
        write_conf(conf);
        if (i == 1) {
            const char *args[] = {"-c", srv.conf, NULL};
            server_start_argv(&srv, args);
        } else {
            kill(srv.pid, SIGHUP);
            char want[64];
            snprintf(want, sizeof(want), "hark_config_generation %d", i);
            for (int t = 0; t < 100; t++) {
                run(out, sizeof(out), "curl -s http://127.0.0.1:%d/metrics", srv.port);
                if (strstr(out, want))
                    break;
                usleep(20 * 1000);
            }
            cr_assert(strstr(out, want), "reload %d not applied", i);
        }
        char want[16];
        snprintf(want, sizeof(want), "root%d", i);
        run(out, sizeof(out), "curl -s http://127.0.0.1:%d/", srv.port);
        cr_assert_str_eq(out, want, "after reload %d", i);
    }
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/* Reads the server's stderr until it contains want (or 10 s pass); returns what it read. */
static const char *read_err_until(const char *want)
{
    static char log[1 << 14];
    size_t len = 0;
    log[0] = '\0';
    for (int t = 0; t < 1000 && !strstr(log, want) && len < sizeof(log) - 1; t++) {
        ssize_t n = read(srv.err_fd, log + len, sizeof(log) - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            log[len] = '\0';
        } else {
            usleep(10 * 1000);
        }
    }
    return log;
}

/*
 * Settings each worker applies once (the open-file cache's size, the
 * resolver, the error log) are not changed by a reload: it says so with a
 * warning for each, and the rest of the reload is applied.
 */
Test(httpd_ops, reload_warns_about_what_needs_a_restart)
{
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "threads 1;\nlisten 127.0.0.1:0;\naccess_log off;\nopen_file_cache 64;\n"
             "resolver 127.0.0.1:53;\nroot %s/www;\n",
             srv.dir);
    write_conf(conf);
    const char *args[] = {"-c", srv.conf, NULL};
    server_start_argv(&srv, args);
    snprintf(conf, sizeof(conf),
             "threads 1;\nlisten 127.0.0.1:0;\naccess_log off;\nopen_file_cache 128;\n"
             "resolver 127.0.0.1:5353;\nerror_log %s/error.log;\nroot %s/www2;\n",
             srv.dir, srv.dir);
    write_conf(conf);
    kill(srv.pid, SIGHUP);
    const char *log = read_err_until("configuration reloaded");
    cr_assert(strstr(log, "configuration reloaded"), "no reload: %s", log);
    cr_expect(strstr(log, "open_file_cache change not applied"), "%s", log);
    cr_expect(strstr(log, "resolver change not applied"), "%s", log);
    cr_expect(strstr(log, "error_log change not applied"), "%s", log);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/a.txt", srv.port);
    cr_expect_str_eq(out, "version-two", "the root follows the reload");
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/*
 * A reload whose access_log cannot be opened (its directory is missing) is
 * refused, and the old log stays. It used to be accepted: the writer kept
 * the old file but the server noted the new path as done, so a second
 * reload with the same path (the directory made meanwhile) changed nothing
 * and every line still went to the old file.
 */
Test(httpd_ops, reload_with_an_access_log_that_cannot_be_opened_is_refused)
{
    char conf[1024];
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\naccess_log %s/a.log;\nroot %s/www;\n",
             srv.dir, srv.dir);
    write_conf(conf);
    const char *args[] = {"-c", srv.conf, NULL};
    server_start_argv(&srv, args);
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\naccess_log %s/new/b.log;\nroot %s/www;\n",
             srv.dir, srv.dir);
    write_conf(conf);
    kill(srv.pid, SIGHUP);
    const char *log = read_err_until("reload");
    cr_expect(strstr(log, "reload rejected"), "a reload to a missing directory: %s", log);

    char dir[300];
    snprintf(dir, sizeof(dir), "%s/new", srv.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    kill(srv.pid, SIGHUP);
    log = read_err_until("configuration reloaded");
    cr_assert(strstr(log, "configuration reloaded"), "no reload: %s", log);
    run(out, sizeof(out), "curl -s http://127.0.0.1:%d/a.txt", srv.port);
    cr_assert_str_eq(out, "version-one");
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
    run(out, sizeof(out), "cat %s/new/b.log 2>&1", srv.dir);
    cr_assert(strstr(out, "GET /a.txt"), "the line went elsewhere: %s", out);
}

/*
 * A rejected reload's reason is one error field, quoted once by the log
 * writer. The format quoted it again (error="\"hark.conf:4:16: ...\""), and
 * the access_log one also had spaces, which split it into three fields
 * (error="\"access_log" _=/path: _="no such file or directory\"").
 */
Test(httpd_ops, rejected_reload_error_is_one_quoted_field)
{
    char conf[1024], want[512];
    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n", srv.dir);
    write_conf(conf);
    const char *args[] = {"-c", srv.conf, NULL};
    server_start_argv(&srv, args);

    snprintf(conf, sizeof(conf),
             "listen 127.0.0.1:0;\naccess_log off;\nroot %s/www;\nheader_timeout ten;\n", srv.dir);
    write_conf(conf);
    kill(srv.pid, SIGHUP);
    const char *log = read_err_until("got \\\"ten\\\"");
    snprintf(want, sizeof(want), "error=\"%s:4:16: expected a duration", srv.conf);
    cr_assert(strstr(log, want), "%s", log);

    snprintf(conf, sizeof(conf), "listen 127.0.0.1:0;\naccess_log %s/no/a.log;\nroot %s/www;\n",
             srv.dir, srv.dir);
    write_conf(conf);
    kill(srv.pid, SIGHUP);
    log = read_err_until("no such file or directory");
    snprintf(want, sizeof(want), "error=\"access_log %s/no/a.log: no such file or directory\"\n",
             srv.dir);
    cr_assert(strstr(log, want), "%s", log);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/*
 * keepalive_timeout shorter than header_timeout closes an idle connection on
 * time (the timer armed for the header timeout was never moved earlier), and
 * 0 means no keep-alive at all.
 */
Test(httpd_ops, keepalive_timeout_is_honoured)
{
    server_start_conf(
        &srv,
        "listen 127.0.0.1:0;\naccess_log off;\nkeepalive_timeout 1s;\nheader_timeout 10s;\n"
        "root %s/www;\n",
        srv.dir);
    const char req[] = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    int closed;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    raw_exchange(srv.port, req, sizeof(req) - 1, out, sizeof(out), 5000, &closed);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long took_ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    cr_assert(strstr(out, "version-one"), "%s", out);
    cr_assert(closed, "the idle connection was not closed");
    cr_assert_lt(took_ms, 5000, "closed after %ld ms (keepalive_timeout 1s, header_timeout 10s)",
                 took_ms);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);

    server_start_conf(&srv,
                      "listen 127.0.0.1:0;\naccess_log off;\nkeepalive_timeout 0;\nroot %s/www;\n",
                      srv.dir);
    raw_exchange(srv.port, req, sizeof(req) - 1, out, sizeof(out), 5000, &closed);
    cr_assert(strstr(out, "Connection: close\r\n") && closed, "keepalive_timeout 0: %s", out);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/*
 * send_timeout is the longest gap between two writes, not the time a whole
 * download may take: a client reading 48 MiB steadily at 8 MB/s (6 s) with
 * send_timeout 3s gets all of it (a deadline for the whole response would cut
 * it after 3 s). The rate keeps the gaps the socket buffers make (the sender
 * waits until a third or so of several MB has drained) far under 3 s, with
 * room for a loaded CI machine (1s once failed there under ASan).
 */
Test(httpd_ops, send_timeout_is_between_writes)
{
    run(NULL, 0, "head -c 50331648 /dev/zero > %s/www/big.bin", srv.dir);
    server_start_conf(
        &srv, "listen 127.0.0.1:0;\naccess_log off;\nsend_timeout 3s;\nroot %s/www;\n", srv.dir);
    run(out, sizeof(out),
        "curl -s --limit-rate 8M -o /dev/null -w '%%{http_code} %%{size_download}' "
        "http://127.0.0.1:%d/big.bin",
        srv.port);
    cr_assert_str_eq(out, "200 50331648");
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/*
 * The workers' listeners use SO_REUSEPORT: a second instance on the same
 * address once started and took half the connections. It must refuse (exit 3).
 */
Test(httpd_ops, second_instance_on_the_same_address_refuses)
{
    server_start_conf(&srv, "listen 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n", srv.dir);
    int code = run(out, sizeof(out), "timeout 5 %s --root %s/www2 --listen 127.0.0.1:%d 2>&1",
                   HARK_HTTPD_BIN, srv.dir, srv.port);
    cr_assert_eq(code, 3, "second instance: exit %d: %s", code, out);
    cr_assert(strstr(out, "address already in use"), "%s", out);
    for (int i = 0; i < 6; i++) {
        run(out, sizeof(out), "curl -s http://127.0.0.1:%d/a.txt", srv.port);
        cr_assert_str_eq(out, "version-one");
    }
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/* Waits up to ms for the server to exit by itself; returns its exit status, -1 if it did not. */
static int wait_exit_within(int ms)
{
    int st = 0;
    pid_t w = 0;
    for (int i = 0; i < ms / 10 && (w = waitpid(srv.pid, &st, WNOHANG)) == 0; i++)
        usleep(10000);
    if (w != srv.pid)
        return -1; /* the teardown kills it */
    srv.pid = 0;
    close(srv.err_fd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * While draining, the listening sockets are closed (a new client is refused
 * at once, not queued in the backlog and reset at exit), and a request whose
 * head was still arriving at SIGTERM is read to its end and answered, with
 * Connection: close. Both once failed: LISTEN stayed, and the head was dropped.
 */
Test(httpd_ops, drain_refuses_new_clients_and_answers_a_head_in_flight)
{
    server_start_conf(&srv, "listen 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n", srv.dir);
    int a = connect_port(srv.port);
    const char part1[] = "GET /a.txt HTTP/1.1\r\n", part2[] = "Host: x\r\n\r\n";
    cr_assert_eq(write(a, part1, sizeof(part1) - 1), (ssize_t)sizeof(part1) - 1);
    usleep(100 * 1000);
    kill(srv.pid, SIGTERM);
    usleep(300 * 1000);

    int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(b, (struct sockaddr *)&sa, sizeof(sa));
    int err = errno;
    close(b);
    cr_assert(rc < 0 && err == ECONNREFUSED, "a new client during the drain: connect %d (%s)", rc,
              strerror(err));

    cr_assert_eq(write(a, part2, sizeof(part2) - 1), (ssize_t)sizeof(part2) - 1);
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = a, .events = POLLIN};
        if (poll(&p, 1, 3000) <= 0)
            break;
        ssize_t n = read(a, out + len, sizeof(out) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(a);
    cr_assert(strstr(out, "HTTP/1.1 200") && strstr(out, "Connection: close\r\n") &&
                  strstr(out, "version-one"),
              "the head in flight: %s", out);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

/*
 * Starts the server (with extra config lines), a curl that downloads 32 MiB at
 * rate (curl's --limit-rate) and prints "STATUS SIZE", and, half a second in,
 * SIGTERM; returns the curl's output stream 200 ms later.
 */
static FILE *start_slow_download_then_term(const char *extra, const char *rate)
{
    run(NULL, 0, "head -c 33554432 /dev/zero > %s/www/huge.bin", srv.dir);
    server_start_conf(&srv, "listen 127.0.0.1:0;\naccess_log off;\n%sroot %s/www;\n", extra,
                      srv.dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "curl -s --limit-rate %s -o /dev/null -w '%%{http_code} %%{size_download}' "
             "http://127.0.0.1:%d/huge.bin",
             rate, srv.port);
    FILE *c = popen(cmd, "r");
    usleep(500 * 1000);
    kill(srv.pid, SIGTERM);
    usleep(200 * 1000);
    return c;
}

Test(httpd_ops, drain_finishes_in_flight)
{
    /* A slow reader (8 MB/s) of 32 MiB: still downloading when SIGTERM comes... */
    FILE *c = start_slow_download_then_term("", "8M");
    /* ...new connections are refused meanwhile... */
    cr_assert_neq(run(NULL, 0, "curl -s -m 2 http://127.0.0.1:%d/a.txt", srv.port), 0);
    /* ...and the download completes before the server exits 0. */
    size_t len = fread(out, 1, sizeof(out) - 1, c);
    out[len] = '\0';
    pclose(c);
    cr_assert_str_eq(out, "200 33554432");
    cr_assert_eq(wait_exit_within(5000), 0, "the drain did not end in a clean exit");
}

/*
 * A second SIGTERM during the drain (Ctrl-C twice) closes what is left at
 * once: a download that would take half a minute more does not hold the exit
 * until drain_timeout (60 s here). Two workers: the one without the download
 * has ended its loop by then, and the second drain request must not reach it
 * (it was written into its freed loop: ASan's heap-use-after-free).
 */
Test(httpd_ops, second_signal_ends_the_drain)
{
    FILE *c = start_slow_download_then_term("threads 2;\ndrain_timeout 60s;\n", "1M");
    cr_assert_eq(waitpid(srv.pid, NULL, WNOHANG), 0,
                 "the first SIGTERM must wait for the download");
    kill(srv.pid, SIGTERM);
    cr_assert_eq(wait_exit_within(10000), 0, "a second SIGTERM did not end the drain cleanly");
    size_t len = fread(out, 1, sizeof(out) - 1, c);
    out[len] = '\0';
    pclose(c);
    cr_assert_str_neq(out, "200 33554432", "the download was cut, not finished");
}

Test(httpd_ops, ten_thousand_idle_connections)
{
    server_start_conf(&srv, "listen 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n", srv.dir);
    enum { N = 10000 };
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        /* The client: its own process, so each side stays under the 20000 fd limit. */
        static int fds[N];
        const char req[] = "GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n";
        char buf[512];
        int ok = 0;
        for (int i = 0; i < N; i++) {
            fds[i] = connect_port(srv.port);
            if (write(fds[i], req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1 &&
                read(fds[i], buf, sizeof(buf)) > 0)
                ok++;
        }
        char msg = ok == N ? 'y' : 'n';
        if (write(ready[1], &msg, 1) != 1)
            _exit(2);
        pause(); /* hold them until killed */
        _exit(0);
    }
    char msg = 0;
    cr_assert_eq(read(ready[0], &msg, 1), 1);
    cr_assert_eq(msg, 'y', "every connection got its response");
    run(out, sizeof(out),
        "curl -s http://127.0.0.1:%d/metrics | grep '^hark_http_connections_open'", srv.port);
    int open_now = 0;
    sscanf(out, "hark_http_connections_open %d", &open_now);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    cr_assert_eq(open_now, N + 1, "all held (plus the metrics request): %s", out);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

Test(httpd_ops, autoindex_lists_beneath_the_root)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/www/list", srv.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    write_file(dir, "b.txt", "b", 1);
    write_file(dir, "a <x>.txt", "a", 1);
    write_file(dir, ".hidden", "h", 1);
    snprintf(dir, sizeof(dir), "%s/www/list/sub", srv.dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    char link[400];
    snprintf(link, sizeof(link), "%s/www/out", srv.dir);
    cr_assert_eq(symlink("/etc", link), 0);
    server_start_conf(&srv,
                      "listen 127.0.0.1:0;\naccess_log off;\n"
                      "location / { root %s/www; autoindex on; }\n",
                      srv.dir);
    run(out, sizeof(out), "curl -s -i http://127.0.0.1:%d/list/", srv.port);
    cr_assert(strstr(out, "HTTP/1.1 200"), "%s", out);
    cr_assert(strstr(out, "Content-Type: text/html"));
    char *a = strstr(out, "a%20%3Cx%3E.txt\">a &lt;x&gt;.txt</a>");
    char *b = strstr(out, "href=\"b.txt\"");
    char *s = strstr(out, "href=\"sub/\"");
    cr_assert(a && b && s && a < b, "escaped, sorted, directories with a slash: %s", out);
    cr_assert(strstr(out, ".hidden") == NULL);
    /* A symlink to a directory outside the root is not listed. */
    run(out, sizeof(out), "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/out/",
        srv.port);
    cr_assert_str_eq(out, "404");
    /* Without autoindex (the default), a directory without an index is 404. */
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
    server_start_conf(&srv, "listen 127.0.0.1:0;\naccess_log off;\nroot %s/www;\n", srv.dir);
    run(out, sizeof(out), "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/list/",
        srv.port);
    cr_assert_str_eq(out, "404");
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}

Test(httpd_ops, redirect_to_https)
{
    server_start_conf(
        &srv,
        "listen 127.0.0.1:0 { redirect_https on; https_port 8443; }\naccess_log off;\n"
        "root %s/www;\n",
        srv.dir);
    run(out, sizeof(out), "curl -s -i -H 'Host: example.org:%d' 'http://127.0.0.1:%d/a.txt?q=1'",
        srv.port, srv.port);
    cr_assert(strstr(out, "HTTP/1.1 301"), "%s", out);
    cr_assert(strstr(out, "Location: https://example.org:8443/a.txt?q=1\r\n"), "%s", out);
    cr_assert_eq(server_stop(&srv, SIGTERM), 0);
}
