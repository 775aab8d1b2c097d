/*
 * hark-echo end to end: the real binary on a kernel-chosen port, a real TCP
 * client, real signals. Checks that every byte comes back (including a burst
 * larger than the server's buffer, which exercises backpressure), that SIGTERM
 * gives exit code 0, and the documented exit codes for bad usage.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct server {
    pid_t pid;
    int out; /* the server's stdout */
    int port;
};

static pid_t spawn(char *const argv[], int *out_fd, int *err_fd)
{
    int out[2], err[2];
    cr_assert_eq(pipe(out), 0);
    cr_assert_eq(pipe(err), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    *out_fd = out[0];
    *err_fd = err[0];
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "hark-echo did not exit normally (status %d)", status);
    return WEXITSTATUS(status);
}

static void read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_gt(poll(&p, 1, 10000), 0, "timed out reading hark-echo's output");
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strchr(buf, '\n') || len == cap - 1)
            break;
    }
    buf[len] = '\0';
}

static void start_server(struct server *s)
{
    char *argv[] = {HARK_ECHO_BIN, "--listen", "127.0.0.1:0", "--quiet", NULL};
    int err_fd;
    s->pid = spawn(argv, &s->out, &err_fd);
    close(err_fd);
    char line[256];
    read_all(s->out, line, sizeof line);
    cr_assert_eq(sscanf(line, "hark-echo: listening on 127.0.0.1:%d", &s->port), 1,
                 "unexpected first line: %s", line);
    cr_assert_gt(s->port, 0);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Checks the echo, frees both buffers, closes the client, and stops the server with SIGTERM. */
static void check_echo_and_stop(struct server *s, int fd, unsigned char *out, unsigned char *in,
                                size_t total)
{
    cr_assert_eq(memcmp(in, out, total), 0, "echoed bytes differ");
    free(out);
    free(in);
    close(fd);
    kill(s->pid, SIGTERM);
    cr_assert_eq(wait_exit(s->pid), 0, "hark-echo did not exit 0 on SIGTERM");
    close(s->out);
}

Test(hark_echo, echoes_every_byte_and_exits_cleanly_on_sigterm)
{
    struct server s;
    start_server(&s);
    int fd = connect_to(s.port);

    /* 1 MiB: far more than the server's 16 KiB buffer and the socket buffers. */
    size_t total = 1u << 20;
    unsigned char *out = malloc(total), *in = malloc(total);
    for (size_t i = 0; i < total; i++)
        out[i] = (unsigned char)(i * 7 + (i >> 9));
    size_t sent = 0, got = 0;
    while (got < total) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
        cr_assert_gt(poll(&p, 1, 10000), 0, "echo stalled at %zu of %zu bytes", got, total);
        if ((p.revents & POLLOUT) && sent < total) {
            ssize_t n =
                send(fd, out + sent, total - sent > 65536 ? 65536 : total - sent, MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
        }
        if (p.revents & POLLIN) {
            ssize_t n = recv(fd, in + got, total - got, MSG_DONTWAIT);
            cr_assert_neq(n, 0, "server closed the connection early");
            if (n > 0)
                got += (size_t)n;
        }
    }
    check_echo_and_stop(&s, fd, out, in, total);
}

/*
 * A client that sends everything, then shuts down its side, then reads: the
 * echo of the whole input must come back before the server closes. The
 * client's small receive buffer keeps part of the echo queued in the server
 * when the server reads the EOF; the server used to close at once and drop it.
 */
Test(hark_echo, half_close_gets_the_whole_echo)
{
    struct server s;
    start_server(&s);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));

    /* Full 16 KiB reads, then a short last one that arrives while the echo is stuck. */
    size_t total = 256 * 1024 + 5000;
    unsigned char *out = malloc(total), *in = malloc(total + 1);
    for (size_t i = 0; i < total; i++)
        out[i] = (unsigned char)(i * 13 + (i >> 8));
    size_t sent = 0;
    while (sent < total) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        cr_assert_gt(poll(&p, 1, 10000), 0, "send stalled at %zu of %zu bytes", sent, total);
        ssize_t n = send(fd, out + sent, total - sent, MSG_DONTWAIT);
        if (n > 0)
            sent += (size_t)n;
    }
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    /* Read slowly, so that the server's send buffer stays full to the end. */
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_gt(poll(&p, 1, 10000), 0, "echo stalled at %zu of %zu bytes", got, total);
        size_t want = total + 1 - got < 2048 ? total + 1 - got : 2048;
        ssize_t n = recv(fd, in + got, want, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        usleep(500);
    }
    cr_assert_eq(got, total, "the server closed after %zu of %zu echoed bytes", got, total);
    check_echo_and_stop(&s, fd, out, in, total);
}

Test(hark_echo, serves_many_clients_at_once)
{
    struct server s;
    start_server(&s);
    enum { N = 200 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = connect_to(s.port);
    for (int i = 0; i < N; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "client %d\n", i);
        cr_assert_eq(write(fds[i], msg, (size_t)len), len);
    }
    for (int i = 0; i < N; i++) {
        char want[32], got[32] = {0};
        int len = snprintf(want, sizeof want, "client %d\n", i);
        size_t have = 0;
        while (have < (size_t)len) {
            ssize_t n = read(fds[i], got + have, (size_t)len - have);
            cr_assert_gt(n, 0);
            have += (size_t)n;
        }
        cr_assert_str_eq(got, want);
        close(fds[i]);
    }
    kill(s.pid, SIGINT);
    cr_assert_eq(wait_exit(s.pid), 0);
    close(s.out);
}

/* Runs argv, which must fail with exit status 2 and say want on stderr. */
static void expect_usage_error(char **argv, const char *want)
{
    int out, err;
    char buf[512];
    pid_t pid = spawn(argv, &out, &err);
    read_all(err, buf, sizeof buf);
    cr_assert(strstr(buf, want), "%s: stderr: %s", argv[1], buf);
    cr_assert_eq(wait_exit(pid), 2, "%s %s", argv[1], argv[2] ? argv[2] : "");
    close(out);
    close(err);
}

Test(hark_echo, usage_errors_and_help)
{
    char *help[] = {HARK_ECHO_BIN, "--help", NULL};
    char *bad[] = {HARK_ECHO_BIN, "--bogus", NULL};
    char *badaddr[] = {HARK_ECHO_BIN, "--listen", "nonsense", NULL};
    char *badhost[] = {HARK_ECHO_BIN, "--listen", "localhost:1", NULL};
    int out, err;
    char buf[512];

    pid_t pid = spawn(help, &out, &err);
    read_all(out, buf, sizeof buf);
    cr_assert(strstr(buf, "usage: hark-echo"), "help text: %s", buf);
    cr_assert_eq(wait_exit(pid), 0);
    close(out);
    close(err);

    expect_usage_error(bad, "unknown argument '--bogus'");
    expect_usage_error(badaddr, "--listen wants ADDR:PORT");
    /* A name is not an address: a bad command line (2), not a failed start (1). */
    expect_usage_error(badhost, "--listen wants ADDR:PORT");
}

Test(hark_echo, port_in_use_is_a_clear_start_up_error)
{
    /* Hold a listening socket on a kernel-chosen port, then ask hark-echo for it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));

    char *argv[] = {HARK_ECHO_BIN, "--listen", addr, NULL};
    int out, err;
    char buf[512];
    pid_t pid = spawn(argv, &out, &err);
    read_all(err, buf, sizeof buf);
    cr_assert(strstr(buf, "cannot listen on"), "stderr: %s", buf);
    cr_assert(strstr(buf, "address already in use"), "stderr: %s", buf);
    cr_assert_eq(wait_exit(pid), 1);
    close(out);
    close(err);
    close(fd);
}
