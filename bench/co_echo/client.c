/*
 * bench-co-client PORT CONNS SECONDS: the load generator of the echo
 * benchmark, the same for every server. One thread, epoll: CONNS connections
 * to 127.0.0.1:PORT, each with one 64-byte message in flight (send, wait for
 * the whole echo, send again). After a 1 s warm-up it counts echoed messages
 * for SECONDS and prints `msgs_per_sec=N`.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench-co-client PORT CONNS SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int *have = calloc((size_t)n, sizeof *have);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char msg[MSG];
    memset(msg, 'x', sizeof msg);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            perror("bench-co-client: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)i << 32) | (unsigned)fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (write(fd, msg, MSG) != MSG)
            return 1;
    }
    uint64_t start = now_ns(), warm = start + 1000000000u;
    uint64_t end = warm + (uint64_t)(seconds * 1e9);
    uint64_t count = 0, counted_from = 0;
    int measuring = 0;
    struct epoll_event evs[256];
    char buf[MSG];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < k; e++) {
            int i = (int)(evs[e].data.u64 >> 32), fd = (int)(uint32_t)evs[e].data.u64;
            ssize_t r = read(fd, buf, (size_t)(MSG - have[i]));
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                fprintf(stderr, "bench-co-client: connection closed\n");
                return 1;
            }
            have[i] += (int)r;
            if (have[i] == MSG) {
                have[i] = 0;
                count++;
                if (write(fd, msg, MSG) != MSG)
                    return 1;
            }
        }
        uint64_t t = now_ns();
        if (!measuring && t >= warm) {
            measuring = 1;
            counted_from = count;
            start = t;
        }
        if (t >= end)
            break;
    }
    double rate = (double)(count - counted_from) / ((double)(now_ns() - start) / 1e9);
    printf("msgs_per_sec=%.0f\n", rate);
    return 0;
}
