/*
 * bench-co-echo [WORKERS]: a TCP echo server written with coroutines, one per
 * connection, on 127.0.0.1 and a port the kernel picks, printed as `port=N`
 * on stdout. Runs until killed; scripts/bench-co drives it with
 * bench-co-client, as it does the Go peer (echo.go).
 */
#include <hark.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static int listen_fd;

static void *conn(void *arg)
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

static void *serve(void *arg)
{
    (void)arg;
    hk_co_attr_t attr = {.name = "echo", .stack_size = HK_CO_STACK_MIN};
    for (unsigned n = 1;; n++) {
        int fd = hk_co_accept(listen_fd, NULL, NULL, HK_FOREVER);
        /*
         * accept returns at once while connections are pending, so 1,000
         * clients connecting together would keep this worker in this loop
         * for milliseconds (the stall monitor said so): let the others run.
         */
        if (n % 64 == 0)
            hk_co_yield();
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
        if (hk_co_spawn(NULL, conn, (void *)(intptr_t)fd, &attr, NULL) < 0)
            hk_co_close(fd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned workers = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(listen_fd, 4096) < 0 || getsockname(listen_fd, (struct sockaddr *)&a, &len) < 0) {
        perror("bench-co-echo");
        return 1;
    }
    printf("port=%d\n", ntohs(a.sin_port));
    fflush(stdout);
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = workers};
    if (hk_co_runtime_new(&rt, &o) < 0)
        return 1;
    hk_co_run(rt, serve, NULL, NULL);
    return 0;
}
