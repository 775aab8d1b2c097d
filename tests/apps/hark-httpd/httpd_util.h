/*
 * Helpers for the hark-httpd end-to-end tests: start the real binary on a
 * kernel-chosen port (it prints the port it got), talk to it with raw
 * sockets or curl, and stop it. Everything is static so each test file
 * gets its own copy.
 */
#ifndef HTTPD_TEST_UTIL_H
#define HTTPD_TEST_UTIL_H

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct server {
    pid_t pid;
    int port;
    int err_fd; /* the server's stderr */
    char dir[256];
    char conf[300];
    unsigned nofile; /* > 0: the server's RLIMIT_NOFILE (soft and hard) */
} server_t;

static inline void make_tmpdir(server_t *s)
{
    /* A write to a connection the server closed must fail with EPIPE, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    snprintf(s->dir, sizeof(s->dir), "/tmp/hk-httpd-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
}

static inline void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    /* Checked, and so GCC -O3 (CMake's Release) does not warn that it may truncate. */
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    cr_assert(n > 0 && (size_t)n < sizeof(path), "path too long: %s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Starts hark-httpd with argv (NULL-terminated, without the program) and waits for its port. */
static inline void server_start_argv(server_t *s, const char *const *args)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        dup2(p[1], 2);
        struct rlimit rl = {s->nofile, s->nofile};
        if (s->nofile > 0 && setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(126);
        const char *argv[32] = {HARK_HTTPD_BIN};
        int n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(HARK_HTTPD_BIN, (char **)argv);
        _exit(127);
    }
    close(p[1]);
    s->err_fd = p[0];
    /* "hark-httpd: listening on ADDR (port N)" */
    char buf[4096];
    size_t len = 0;
    s->port = 0;
    while (len < sizeof(buf) - 1) {
        struct pollfd pfd = {.fd = s->err_fd, .events = POLLIN};
        cr_assert_gt(poll(&pfd, 1, 10000), 0, "hark-httpd did not start");
        ssize_t n = read(s->err_fd, buf + len, sizeof(buf) - 1 - len);
        cr_assert_gt(n, 0, "hark-httpd exited: %.*s", (int)len, buf);
        len += (size_t)n;
        buf[len] = '\0';
        char *at = strstr(buf, "(port ");
        if (at && strchr(at, ')')) {
            s->port = atoi(at + 6);
            break;
        }
    }
    cr_assert_gt(s->port, 0);
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
}

static inline void server_start_root(server_t *s, const char *root)
{
    const char *args[] = {"--root", root, "--listen", "127.0.0.1:0", NULL};
    server_start_argv(s, args);
}

/* Writes s->conf from a printf format and starts the server with -c. */
__attribute__((format(printf, 2, 3))) static inline void server_start_conf(server_t *s,
                                                                           const char *fmt, ...)
{
    snprintf(s->conf, sizeof(s->conf), "%s/hark.conf", s->dir);
    FILE *f = fopen(s->conf, "w");
    cr_assert_not_null(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    const char *args[] = {"-c", s->conf, NULL};
    server_start_argv(s, args);
}

/* Sends sig and waits for the exit; returns the exit status (or 128 + signal). */
static inline int server_stop(server_t *s, int sig)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    int st = 0;
    for (int i = 0; i < 1500; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            close(s->err_fd);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    close(s->err_fd);
    return -1;
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void cleanup_dir(server_t *s)
{
    if (s->dir[0])
        nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

/*
 * Reads fd into out from offset len until the peer closes or timeout_ms
 * passes without data (or out is full); NUL added. Returns the new length;
 * *last (unless last is NULL) is the last read's result (0 for a close,
 * < 0 for an error), or 1 when it stopped for silence or a full buffer.
 */
static inline size_t read_until_close(int fd, char *out, size_t len, size_t cap, int timeout_ms,
                                      ssize_t *last)
{
    ssize_t n = 1;
    while (len < cap - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            break;
        n = read(fd, out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        n = 1;
    }
    if (last)
        *last = n;
    out[len] = '\0';
    return len;
}

/*
 * Sends req on a new connection and reads until the server closes or
 * timeout_ms passes without data. Returns the bytes read into out (NUL
 * added); *closed tells whether the server closed the connection.
 */
static inline size_t raw_exchange(int port, const char *req, size_t req_len, char *out, size_t cap,
                                  int timeout_ms, int *closed)
{
    int fd = connect_port(port);
    size_t off = 0;
    while (off < req_len) {
        ssize_t w = write(fd, req + off, req_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    ssize_t last;
    size_t len = read_until_close(fd, out, 0, cap, timeout_ms, &last);
    *closed = last <= 0;
    close(fd);
    return len;
}

/* Runs a shell command, captures stdout into out (NUL added); returns the exit status. */
__attribute__((format(printf, 3, 4))) static inline int run(char *out, size_t cap, const char *fmt,
                                                            ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t len = 0;
    if (out) {
        size_t n;
        while (len < cap - 1 && (n = fread(out + len, 1, cap - 1 - len, p)) > 0)
            len += n;
        out[len] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
