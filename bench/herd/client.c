/*
 * herd-client: the load generator of bench/herd, a separate process so that
 * its own context switches never count against the server's.
 *
 * It opens one connection at a time and waits for the server to close it
 * (read returns 0), so every connection is a single event the server's
 * loops race for: what we count is the cost of one accept, not batching.
 * It closes with SO_LINGER 0 (a reset), so neither side keeps a TIME_WAIT
 * socket or an fd per connection: thousands of connections stay far below
 * the machine's 20,000-fd limit and the ephemeral port range.
 *
 * Usage: herd-client HOST PORT COUNT    (exit 0 when all COUNT connections were served)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: herd-client HOST PORT COUNT\n");
        return 2;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1) {
        fprintf(stderr, "herd-client: bad address %s\n", argv[1]);
        return 2;
    }
    long count = atol(argv[3]);
    for (long i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
            fprintf(stderr, "herd-client: connection %ld: %s\n", i, strerror(errno));
            return 1;
        }
        char c;
        ssize_t n;
        do
            n = read(fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 0) {
            fprintf(stderr, "herd-client: connection %ld: expected the server's close\n", i);
            return 1;
        }
        struct linger lg = {1, 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    return 0;
}
