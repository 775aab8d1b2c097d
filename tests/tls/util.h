/*
 * Shared helpers for the TLS tests: certificates made at test time with the
 * openssl tool, openssl s_server / s_client as child processes with pipes
 * on stdin and stdout (killed with the test process: PR_SET_PDEATHSIG), and
 * a loop runner with a guard timer that turns a hang into a failure.
 */
#ifndef HK_TEST_TLS_UTIL_H
#define HK_TEST_TLS_UTIL_H

#include <criterion/criterion.h>
#include <hark.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS(x) ((uint64_t)(x)*UINT64_C(1000000))

static char certdir[64];

static inline void cert_path(char *buf, size_t size, const char *name, const char *ext)
{
    snprintf(buf, size, "%s/%s.%s", certdir, name, ext);
}

/* Self-signed P-256 certificates for localhost, a.test and b.test in a fresh temp dir. */
static inline void make_certs(void)
{
    strcpy(certdir, "/tmp/hk-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(certdir));
    const char *names[] = {"localhost", "a.test", "b.test"};
    for (int i = 0; i < 3; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                 "-days 1 -subj /CN=%s -addext subjectAltName=DNS:%s -keyout %s/%s.key "
                 "-out %s/%s.crt >/dev/null 2>&1",
                 names[i], names[i], certdir, names[i], certdir, names[i]);
        cr_assert_eq(system(cmd), 0, "openssl req failed");
    }
}

static inline void remove_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", certdir);
    (void)system(cmd);
}

/* A port that was free a moment ago (bind(0), close). */
static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

typedef struct child {
    pid_t pid;
    int in, out; /* our ends: its stdin, its stdout+stderr */
    char buf[65536];
    size_t len;
} child_t;

static inline void child_spawn(child_t *c, char *const argv[])
{
    int pin[2], pout[2];
    cr_assert_eq(pipe2(pin, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(pout, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(pout[1], 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    c->pid = pid;
    c->in = pin[1];
    c->out = pout[0];
    c->len = 0;
    c->buf[0] = '\0';
    fcntl(c->out, F_SETFL, O_NONBLOCK);
}

/* Reads what the child printed so far. */
static inline void child_poll(child_t *c)
{
    for (;;) {
        if (c->len + 1 >= sizeof c->buf)
            return;
        ssize_t n = read(c->out, c->buf + c->len, sizeof c->buf - 1 - c->len);
        if (n <= 0)
            return;
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
}

static inline int child_saw(child_t *c, const char *needle)
{
    child_poll(c);
    return strstr(c->buf, needle) != NULL;
}

static inline void child_send(child_t *c, const char *text)
{
    cr_assert_eq(write(c->in, text, strlen(text)), (ssize_t)strlen(text));
}

static inline void child_close_stdin(child_t *c)
{
    if (c->in >= 0)
        close(c->in);
    c->in = -1;
}

/* Waits for the child to exit by itself; 1 if it did within timeout_ms. */
static inline int child_wait_exit(child_t *c, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        child_poll(c);
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = -1;
            return 1;
        }
        usleep(10000);
    }
    return 0;
}

static inline void child_kill(child_t *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = -1;
    }
    child_close_stdin(c);
    if (c->out >= 0)
        close(c->out);
    c->out = -1;
}

static inline void guard_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
}

/*
 * Runs the loop until cond(arg) holds, failing after timeout_ms; a 10 ms
 * timer keeps the loop waking so children's output is polled by cond.
 */
static inline void run_until_cond(hk_loop_t *loop, int (*cond)(void *), void *arg, int timeout_ms,
                                  const char *what)
{
    uint64_t end = hk_time_now() + MS(timeout_ms);
    hk_timer_t guard;
    hk_timer_init(loop, &guard);
    hk_timer_start_in(&guard, guard_tick, MS(10), MS(10));
    while (!cond(arg)) {
        cr_assert_lt(hk_time_now(), end, "timed out waiting for %s", what);
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    }
    hk_close(&guard.base, NULL);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
}

static inline int flag_set(void *arg)
{
    return *(volatile int *)arg != 0;
}

static inline void run_until(hk_loop_t *loop, volatile int *flag, int timeout_ms, const char *what)
{
    run_until_cond(loop, flag_set, (void *)flag, timeout_ms, what);
}

struct saw_arg {
    child_t *child;
    const char *needle;
};

static inline int saw_cond(void *arg)
{
    struct saw_arg *a = arg;
    return child_saw(a->child, a->needle);
}

/* Runs the loop until the child printed needle. */
static inline void run_until_child_says(hk_loop_t *loop, child_t *c, const char *needle,
                                        int timeout_ms)
{
    struct saw_arg a = {c, needle};
    run_until_cond(loop, saw_cond, &a, timeout_ms, needle);
}

static inline hk_loop_t *new_loop(void)
{
    hk_loop_t *loop = NULL;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    return loop;
}

static inline void finish_loop(hk_loop_t *loop)
{
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    int r = hk_loop_free(loop);
    cr_assert_eq(r, 0, "hk_loop_free: %s", hk_err_name(r));
}

/* A connected TCP pair on loopback (blocking setup, then non-blocking fds). */
static inline void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    cr_assert_eq(bind(l, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(l, 4), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&sin, sizeof sin), 0);
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(a, 0);
    close(l);
    fds[0] = a;
    fds[1] = c;
}

/* A connected TCP socket to 127.0.0.1:port, retried while the server starts. */
static inline int connect_port(int port)
{
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0)
            return fd;
        close(fd);
        usleep(10000);
    }
    cr_assert_fail("cannot connect to port %d", port);
    return -1;
}

#endif
