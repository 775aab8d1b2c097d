/* A TCP echo server written with coroutines serves many connections of a separate client process.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hark.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLIENTS 500
#define ROUNDS 4

static int listen_fd;

static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = hk_co_read(fd, buf, sizeof buf, HK_FOREVER);
        if (n <= 0 || hk_co_write_all(fd, buf, (size_t)n, HK_FOREVER) < 0)
            break;
    }
    hk_co_close(fd);
    return NULL;
}

static void *server_main(void *arg)
{
    pid_t client = *(pid_t *)arg;
    hk_co_scope_t *conns;
    if (hk_co_scope_new(&conns) < 0)
        return NULL;
    int served = 0;
    while (served < CLIENTS) {
        int fd = hk_co_accept(listen_fd, NULL, NULL, hk_time_now() + UINT64_C(20000000000));
        if (fd < 0)
            break;
        hk_co_attr_t attr = {.name = "echo", .stack_size = HK_CO_STACK_MIN};
        if (hk_co_spawn(conns, echo_conn, (void *)(intptr_t)fd, &attr, NULL) < 0)
            break;
        served++;
    }
    /* Wait for the client to finish, polling its exit without blocking a worker. */
    int status = -1;
    while (waitpid(client, &status, WNOHANG) == 0)
        hk_co_sleep_until(hk_time_now() + 1000000);
    hk_co_scope_close(conns);
    return (served == CLIENTS && WIFEXITED(status) && WEXITSTATUS(status) == 0) ? (void *)1 : NULL;
}

static int client(int port)
{
    static int fds[CLIENTS];
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0)
            return 2;
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < CLIENTS; i++) {
            char msg[64];
            int len = snprintf(msg, sizeof msg, "hello %d %d", i, r);
            if (write(fds[i], msg, (size_t)len) != len)
                return 3;
        }
        for (int i = 0; i < CLIENTS; i++) {
            char want[64], got[64];
            int len = snprintf(want, sizeof want, "hello %d %d", i, r);
            int have = 0;
            while (have < len) {
                ssize_t n = read(fds[i], got + have, (size_t)(len - have));
                if (n <= 0)
                    return 4;
                have += (int)n;
            }
            if (memcmp(want, got, (size_t)len) != 0)
                return 5;
        }
    }
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    return 0;
}

Test(echo, serves_many_clients_of_another_process, .timeout = 120)
{
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(listen_fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(listen_fd, 1024), 0);
    socklen_t len = sizeof a;
    getsockname(listen_fd, (struct sockaddr *)&a, &len);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(listen_fd);
        _exit(client(ntohs(a.sin_port)));
    }
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    void *res = NULL;
    cr_assert_eq(hk_co_run(rt, server_main, &pid, &res), 0);
    cr_assert_eq(res, (void *)1);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    close(listen_fd);
}
