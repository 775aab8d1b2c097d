/*
 * hark-watch end to end: the real binary against real processes.
 *  - usage and exit codes; a malformed state file is refused, naming the file;
 *  - benign processes (sleep, cat on a pipe, an epoll set of 3 pipes) and a
 *    non-network "backup-agent" learn their baselines over warm-up runs of
 *    --once; then the agent is compromised (1,000 TCP connections to a
 *    loopback listener in its epoll set) and --once flags exactly it, with
 *    the right counts and endpoint, and exits 1;
 *  - /metrics on a kernel-chosen port, and the 400/404/405 answers;
 *  - the netlink proc connector, or the polling fallback's log line;
 *  - churn: 200 processes starting and exiting while the daemon scans.
 * Every process started here is killed and reaped; no timing assertions,
 * only generous guard timeouts.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GUARD_MS 120000

static pid_t spawn(char *const argv[], int *out_fd, int *err_fd, int in_fd)
{
    int out[2], err[2];
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        dup2(err[1], 2);
        if (in_fd >= 0)
            dup2(in_fd, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    if (out_fd)
        *out_fd = out[0];
    else
        close(out[0]);
    if (err_fd)
        *err_fd = err[0];
    else
        close(err[0]);
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "did not exit normally (status %d)", status);
    return WEXITSTATUS(status);
}

static void stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* Reads one line (up to '\n') within the guard time; returns its length, 0 at EOF. */
static size_t read_line(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_gt(poll(&p, 1, GUARD_MS), 0, "timed out reading a line");
        ssize_t n = read(fd, buf + len, 1);
        if (n <= 0)
            break;
        if (buf[len++] == '\n')
            break;
    }
    buf[len] = '\0';
    return len;
}

/* Reads lines until one contains needle (returns 1) or EOF (returns 0). */
static int wait_for(int fd, const char *needle, char *line, size_t cap)
{
    while (read_line(fd, line, cap))
        if (strstr(line, needle))
            return 1;
    return 0;
}

/* Runs hark-watch to completion; its stdout in out (NUL-terminated), stderr in err. */
static int run(char *const argv[], char *out, size_t ocap, char *err, size_t ecap)
{
    int ofd, efd;
    pid_t pid = spawn(argv, &ofd, &efd, -1);
    size_t olen = 0, elen = 0;
    int open_fds = 2;
    while (open_fds) {
        struct pollfd p[2] = {{.fd = ofd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
        int r = poll(p, 2, GUARD_MS);
        if (r <= 0) {
            stop(pid);
            cr_assert_fail("hark-watch did not finish");
        }
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents || p[i].fd < 0)
                continue;
            char *b = i ? err : out;
            size_t *l = i ? &elen : &olen, cap = i ? ecap : ocap;
            char tmp[4096];
            ssize_t n = read(p[i].fd, tmp, sizeof tmp);
            if (n <= 0) {
                close(i ? efd : ofd);
                if (i)
                    efd = -1;
                else
                    ofd = -1;
                open_fds--;
                continue;
            }
            size_t take = (size_t)n < cap - 1 - *l ? (size_t)n : cap - 1 - *l;
            memcpy(b + *l, tmp, take);
            *l += take;
        }
    }
    out[olen] = '\0';
    err[elen] = '\0';
    return wait_exit(pid);
}

static char big_out[4 << 20], big_err[65536];

Test(hark_watch, usage_and_exit_codes)
{
    char *help[] = {HARK_WATCH_BIN, "--help", NULL};
    cr_assert_eq(run(help, big_out, sizeof big_out, big_err, sizeof big_err), 0);
    cr_assert(strstr(big_out, "usage: hark-watch"));
    char *bad[] = {HARK_WATCH_BIN, "--bogus", NULL};
    cr_assert_eq(run(bad, big_out, sizeof big_out, big_err, sizeof big_err), 2);
    char *alpha[] = {HARK_WATCH_BIN, "--alpha", "2", NULL};
    cr_assert_eq(run(alpha, big_out, sizeof big_out, big_err, sizeof big_err), 2);
    cr_assert(strstr(big_err, "--alpha"));
    char *missing[] = {HARK_WATCH_BIN, "--state", NULL};
    cr_assert_eq(run(missing, big_out, sizeof big_out, big_err, sizeof big_err), 2);
}

Test(hark_watch, malformed_state_file_is_refused_by_name)
{
    char dir[] = "/tmp/hkw-e2e-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/state", dir);
    FILE *f = fopen(path, "w");
    fputs("hark-watch-state 1\n0 3 1 1 /bin/ok\ngarbage\n", f);
    fclose(f);
    char *argv[] = {HARK_WATCH_BIN, "--once", "--state", path, NULL};
    cr_assert_eq(run(argv, big_out, sizeof big_out, big_err, sizeof big_err), 3);
    cr_assert(strstr(big_err, path), "stderr names the file: %s", big_err);
    cr_assert(strstr(big_err, "line 3"), "and the line: %s", big_err);
    unlink(path);
    rmdir(dir);
}

/* A loopback listener in a child process that accepts and holds every connection. */
static pid_t start_listener(int *port)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(l, 2048), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;)
            if (accept(l, NULL, NULL) < 0 && errno != EINTR && errno != ECONNABORTED)
                pause(); /* out of fds: hold what we have */
    }
    close(l);
    return pid;
}

static pid_t start_ready(char *const argv[], int in_fd, int *out_fd)
{
    int out;
    pid_t pid = spawn(argv, &out, NULL, in_fd);
    char line[256];
    cr_assert(wait_for(out, "ready", line, sizeof line), "%s did not start", argv[0]);
    *out_fd = out;
    return pid;
}

/* Copies an executable into dir, so this run's processes have their own baselines. */
static void copy_exe(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    cr_assert(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        cr_assert_eq(write(out, buf, (size_t)n), n);
    close(in);
    cr_assert_eq(close(out), 0);
}

static long field_long(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

Test(hark_watch, flags_exactly_the_compromised_process)
{
    char dir[] = "/tmp/hkw-e2e-XXXXXX", state[128], port_s[16], agent[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(state, sizeof state, "%s/state", dir);
    /* Our own copy: a concurrent run of this test must not share the agent's baseline. */
    snprintf(agent, sizeof agent, "%s/backup-agent", dir);
    copy_exe(HKW_BACKUP_BIN, agent);
    int port;
    pid_t listener = start_listener(&port);
    snprintf(port_s, sizeof port_s, "%d", port);

    int cat_in[2];
    cr_assert_eq(pipe2(cat_in, O_CLOEXEC), 0);
    char *sleep_argv[] = {"sleep", "1000", NULL};
    char *cat_argv[] = {"cat", NULL};
    char *pipes_argv[] = {HKW_PIPES_BIN, "3", NULL};
    char *backup_argv[] = {agent, port_s, "1000", NULL};
    pid_t sleeper = spawn(sleep_argv, NULL, NULL, -1);
    pid_t cat = spawn(cat_argv, NULL, NULL, cat_in[0]);
    close(cat_in[0]);
    int pipes_out, backup_out;
    pid_t piper = start_ready(pipes_argv, -1, &pipes_out);
    pid_t backup = start_ready(backup_argv, -1, &backup_out);
    pid_t ours[] = {listener, sleeper, cat, piper, backup};

    char *once[] = {HARK_WATCH_BIN, "--once", "--state", state, "--warmup", "3", NULL};
    for (int i = 0; i < 3; i++) {
        /* Other processes of a shared machine may be flagged (exit 1); none of ours may. */
        int code = run(once, big_out, sizeof big_out, big_err, sizeof big_err);
        cr_assert(code == 0 || code == 1, "warm-up run %d: exit %d: %s", i, code, big_err);
        for (char *l = strtok(big_out, "\n"); l; l = strtok(NULL, "\n")) {
            if (!strstr(l, "\"event\":\"alert\""))
                continue;
            long pid = field_long(l, "pid");
            for (size_t j = 0; j < sizeof ours / sizeof ours[0]; j++)
                cr_assert_neq(pid, ours[j], "warm-up run %d flagged one of ours: %s", i, l);
        }
    }
    cr_assert_eq(access(state, R_OK), 0, "the state file exists after --once");

    kill(backup, SIGUSR1);
    char line[256];
    cr_assert(wait_for(backup_out, "compromised 1000", line, sizeof line));

    int code = run(once, big_out, sizeof big_out, big_err, sizeof big_err);
    static char copy[4096]; /* the start of the output, for a failure message */
    memcpy(copy, big_out, sizeof copy - 1);
    int ours_flagged = 0, backup_flagged = 0;
    for (char *l = strtok(big_out, "\n"); l; l = strtok(NULL, "\n")) {
        if (!strstr(l, "\"event\":\"alert\""))
            continue;
        long pid = field_long(l, "pid");
        for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
            ours_flagged += pid == ours[i];
        if (pid != backup) {
            cr_log_info("another process of this machine was flagged: %s", l);
            continue;
        }
        backup_flagged++;
        cr_assert_eq(field_long(l, "sockets"), 1000, "%s", l);
        cr_assert_eq(field_long(l, "entries"), 1001, "%s", l);
        cr_assert_eq(field_long(l, "epolls"), 1, "%s", l);
        cr_assert(strstr(l, "\"class\":\"non-network\""), "%s", l);
        cr_assert(strstr(l, "backup-agent\""), "%s", l);
        char ep[64];
        snprintf(ep, sizeof ep, "tcp:127.0.0.1:%d*1000", port);
        cr_assert(strstr(l, ep), "top endpoint %s in %s", ep, l);
        cr_assert(strstr(l, "\"k\":31.623"), "%s", l);
        /* Judged on the three warm-up samples; this scan's joins the baseline after. */
        cr_assert_eq(field_long(l, "samples"), 3, "%s", l);
    }
    cr_assert_eq(code, 1, "--once exits 1 when something is flagged (got %d): %s", code, copy);
    cr_assert_eq(backup_flagged, 1);
    cr_assert_eq(ours_flagged, 1, "only the compromised process among ours");

    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        stop(ours[i]);
    close(cat_in[1]);
    close(pipes_out);
    close(backup_out);
    unlink(state);
    unlink(agent);
    rmdir(dir);
}

/* Sends raw bytes to 127.0.0.1:port and reads the whole answer (the server closes). */
static size_t http(int port, const char *req, size_t reqlen, char *resp, size_t cap)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    for (size_t off = 0; off < reqlen;) {
        ssize_t n = send(s, req + off, reqlen - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may answer and close before reading everything */
        off += (size_t)n;
    }
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        cr_assert_gt(poll(&p, 1, GUARD_MS), 0, "no answer from /metrics");
        ssize_t n = read(s, resp + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    resp[len] = '\0';
    close(s);
    return len;
}

#define REQ(s) (s), strlen(s)

static long metric(const char *body, const char *name)
{
    char k[128];
    snprintf(k, sizeof k, "\n%s ", name);
    const char *p = strstr(body, k);
    return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

/* Starts hark-watch with --listen (in argv) and waits for the port it got. */
static pid_t start_listening(char *const argv[], int *out, int *port)
{
    pid_t pid = spawn(argv, out, NULL, -1);
    char line[4096];
    cr_assert(wait_for(*out, "\"event\":\"listening\"", line, sizeof line));
    *port = (int)field_long(line, "port");
    cr_assert_gt(*port, 0);
    return pid;
}

Test(hark_watch, metrics_endpoint)
{
    char *argv[] = {HARK_WATCH_BIN, "--listen",     "127.0.0.1:0", "--interval",
                    "0.2",          "--no-netlink", NULL};
    int out, port;
    pid_t pid = start_listening(argv, &out, &port);
    static char resp[1 << 16];
    long scans = 0;
    for (int i = 0; i < 600 && scans < 1; i++) {
        http(port, REQ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, sizeof resp);
        cr_assert(!strncmp(resp, "HTTP/1.1 200 OK\r\n", 17), "%s", resp);
        scans = metric(resp, "hark_watch_scans_total");
        if (scans < 1)
            usleep(100000);
    }
    cr_assert_geq(scans, 1, "a scan is counted");
    cr_assert(strstr(resp, "Content-Type: text/plain; version=0.0.4"));
    cr_assert(strstr(resp, "# TYPE hark_watch_alerts_total counter"));
    cr_assert(strstr(resp, "hark_watch_interest_entries{kind=\"socket\"}"));
    cr_assert_eq(metric(resp, "hark_watch_netlink_enabled"), 0);
    cr_assert_gt(metric(resp, "hark_watch_processes"), 0);
    http(port, REQ("GET /metrics HTTP/1.0\r\n\r\n"), resp, sizeof resp);
    cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "1.0 needs no Host: %s", resp);
    http(port, REQ("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, sizeof resp);
    cr_assert(!strncmp(resp, "HTTP/1.1 200", 12) && !strstr(resp, "hark_watch_scans"), "%s", resp);
    http(port, REQ("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, sizeof resp);
    cr_assert(!strncmp(resp, "HTTP/1.1 405", 12) && strstr(resp, "Allow: GET, HEAD"), "%s", resp);
    http(port, REQ("GET /other HTTP/1.1\r\nHost: x\r\n\r\n"), resp, sizeof resp);
    cr_assert(!strncmp(resp, "HTTP/1.1 404", 12), "%s", resp);
    const char *bad[] = {
        "GET /metrics HTTP/1.1\r\n\r\n",                                     /* no Host */
        "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",                          /* version */
        "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",                         /* double space */
        "get /metrics HTTP/1.1\r\nHost: x\r\n\r\n",                          /* method case */
        "GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",                           /* not a path */
        "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",                           /* header syntax */
        "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",               /* folding */
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",     /* a body */
        "GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",               /* two hosts */
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\n", /* pipelined */
        "GET /metrics HTTP/1.1\nHost: x\n\r\n\r\n",                          /* bare LF */
        "GET /metrics HTTP/1.1\nHost: x\n\n", /* bare LF only: no CRLF CRLF ever comes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http(port, REQ(bad[i]), resp, sizeof resp);
        cr_assert(!strncmp(resp, "HTTP/1.1 400", 12), "case %zu: %s", i, resp);
    }
    static char huge[8192];
    memset(huge, 'a', sizeof huge);
    memcpy(huge, "GET /metrics HTTP/1.1\r\nX: ", 26);
    http(port, huge, sizeof huge, resp, sizeof resp);
    cr_assert(!strncmp(resp, "HTTP/1.1 400", 12), "oversized head: %s", resp);
    if (access("/usr/bin/curl", X_OK) == 0) {
        char url[64], port_s[16];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
        snprintf(port_s, sizeof port_s, "%d", port);
        char *curl[] = {"curl", "-sS", "--fail", "--max-time", "60", url, NULL};
        static char cout[1 << 16], cerr[4096];
        cr_assert_eq(run(curl, cout, sizeof cout, cerr, sizeof cerr), 0, "curl: %s", cerr);
        cr_assert(strstr(cout, "hark_watch_scans_total"));
    }
    kill(pid, SIGTERM);
    cr_assert_eq(wait_exit(pid), 0);
    close(out);
}

/* CPU time (user + system) of a process so far, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    cr_assert_not_null(p);
    long utime = 0, stime = 0;
    /* After ") ": state, then fields 4..13 to skip, then utime (14) and stime (15). */
    cr_assert_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime), 2);
    return utime + stime;
}

/*
 * Out of file descriptors, the metrics listener stays readable while accept
 * fails (EMFILE): it must pause, not spin on the level-triggered event. With
 * 24 fds and 40 idle connections held, the process must stay (nearly) idle
 * for a second, and answer /metrics again once the connections are gone.
 * CPU ticks are counted, not time.
 */
Test(hark_watch, metrics_listener_out_of_fds_does_not_spin)
{
    char *argv[] = {"prlimit",  "--nofile=24:24", HARK_WATCH_BIN,
                    "--listen", "127.0.0.1:0",    "--interval",
                    "60",       "--no-netlink",   NULL};
    int out, port;
    pid_t pid = start_listening(argv, &out, &port);
    enum { HELD = 40 };
    int held[HELD];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < HELD; i++) {
        held[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(held[i], 0);
        cr_assert_eq(connect(held[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    usleep(300 * 1000); /* the server takes what it can, then meets EMFILE */
    long t0 = cpu_ticks(pid);
    usleep(1000 * 1000);
    long used = cpu_ticks(pid) - t0;
    long hz = sysconf(_SC_CLK_TCK);
    cr_assert_lt(used, hz / 4, "%ld ticks of CPU in 1 s while out of fds (hz %ld)", used, hz);
    for (int i = 0; i < HELD; i++)
        close(held[i]);
    static char resp[1 << 16];
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        http(port, REQ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, sizeof resp);
        ok = !strncmp(resp, "HTTP/1.1 200 OK\r\n", 17);
        if (!ok)
            usleep(100 * 1000);
    }
    cr_assert(ok, "no /metrics after the connections closed: %s", resp);
    stop(pid);
    close(out);
}

Test(hark_watch, netlink_or_clear_fallback)
{
    char *argv[] = {HARK_WATCH_BIN, "--interval", "60", NULL};
    int out;
    pid_t pid = spawn(argv, &out, NULL, -1);
    char line[4096];
    int on = 0;
    while (read_line(out, line, sizeof line)) {
        if (strstr(line, "\"event\":\"netlink\"")) {
            on = 1;
            break;
        }
        if (strstr(line, "\"event\":\"polling\"")) {
            cr_assert(strstr(line, "netlink proc connector refused, polling only"), "%s", line);
            break;
        }
    }
    if (on) {
        /* A new program is looked at without waiting for the 60 s tick. */
        int pout;
        char *pipes_argv[] = {HKW_PIPES_BIN, "3", NULL};
        pid_t piper = start_ready(pipes_argv, -1, &pout);
        cr_assert(wait_for(out, "\"partial\":1", line, sizeof line), "no scan after exec");
        stop(piper);
        close(pout);
    } else {
        cr_log_warn("netlink proc connector refused here; fallback checked");
    }
    kill(pid, SIGTERM);
    cr_assert_eq(wait_exit(pid), 0);
    close(out);
    /* Forced fallback. */
    char *poll_argv[] = {HARK_WATCH_BIN, "--interval", "60", "--no-netlink", NULL};
    pid = spawn(poll_argv, &out, NULL, -1);
    cr_assert(wait_for(out, "\"event\":\"polling\"", line, sizeof line));
    cr_assert(strstr(line, "netlink disabled, polling"), "%s", line);
    kill(pid, SIGTERM);
    cr_assert_eq(wait_exit(pid), 0);
    close(out);
}

Test(hark_watch, churn_200_processes_while_scanning)
{
    char dir[] = "/tmp/hkw-e2e-XXXXXX", state[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(state, sizeof state, "%s/state", dir);
    char *argv[] = {HARK_WATCH_BIN, "--interval", "0.05", "--state", state, NULL};
    int out;
    pid_t pid = spawn(argv, &out, NULL, -1);
    char line[4096];
    cr_assert(wait_for(out, "\"event\":\"scan\"", line, sizeof line));
    for (int i = 0; i < 200; i++) {
        char n[8];
        snprintf(n, sizeof n, "%d", 1 + i % 20);
        char *pipes_argv[] = {HKW_PIPES_BIN, n, NULL};
        int pout;
        pid_t p = spawn(pipes_argv, &pout, NULL, -1);
        if (i % 3) { /* some die at once, some after they are set up */
            read_line(pout, line, sizeof line);
        }
        stop(p);
        close(pout);
        /* Drain the daemon's output so its log never fills the pipe. */
        struct pollfd pf = {.fd = out, .events = POLLIN};
        while (poll(&pf, 1, 0) > 0 && read(out, line, sizeof line) > 0)
            ;
    }
    cr_assert(wait_for(out, "\"event\":\"scan\"", line, sizeof line), "still scanning");
    kill(pid, SIGTERM);
    while (read(out, line, sizeof line) > 0)
        ;
    cr_assert_eq(wait_exit(pid), 0, "clean exit (and no leak under ASan)");
    close(out);
    FILE *f = fopen(state, "r");
    cr_assert_not_null(f, "state saved at exit");
    char head[64] = "";
    cr_assert_not_null(fgets(head, sizeof head, f));
    fclose(f);
    cr_assert_str_eq(head, "hark-watch-state 1\n");
    unlink(state);
    rmdir(dir);
}
