/*
 * Test helper for hark-watch, built twice: as hkw-epoll-pipes (a benign
 * program with an epoll set of N pipes) and as backup-agent (a non-network
 * "backup tool" with an epoll set of one pipe that, on SIGUSR1, is
 * "compromised": it opens N TCP connections to 127.0.0.1:PORT and adds them
 * all to its epoll set).
 *   hkw-epoll-pipes N
 *   backup-agent PORT N
 * Prints "ready" (and "compromised N") on stdout; dies with its parent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int add_pipe(int ep)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]};
    return epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
}

int main(int argc, char **argv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int ep = epoll_create1(0);
    if (ep < 0)
        return 1;
#ifdef HKW_BACKUP
    if (argc != 3)
        return 2;
    int port = atoi(argv[1]), n = atoi(argv[2]);
    if (add_pipe(ep) < 0)
        return 1;
    printf("ready\n");
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("backup-agent: connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) < 0)
            return 1;
    }
    printf("compromised %d\n", n);
    fflush(stdout);
#else
    if (argc != 2)
        return 2;
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++)
        if (add_pipe(ep) < 0)
            return 1;
    printf("ready\n");
    fflush(stdout);
#endif
    for (;;)
        pause();
}
