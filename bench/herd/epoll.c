/*
 * The peer of bench/herd: a minimal raw-epoll server (no library), one
 * thread and one epoll set per loop, in the modes the kernel offers: plain
 * (one listen fd in every set), exclusive (EPOLLEXCLUSIVE) and reuseport
 * (one SO_REUSEPORT socket per thread). Each wake-up accepts until EAGAIN
 * and closes what it accepted, as hark does; an eventfd in every set stops
 * the threads. Measured with the same client, so hark's cost is the
 * difference between the two lines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "epoll.h"

struct ep_thread {
    int epfd, lfd, efd;
    uint64_t wakeups, accepts;
    pthread_t tid;
    pid_t *os_tid; /* where the thread stores its kernel id */
    int *started;  /* atomic: threads that stored it */
};

static void *ep_run(void *p)
{
    struct ep_thread *t = p;
    struct epoll_event ev[8];
    *t->os_tid = (pid_t)syscall(SYS_gettid);
    __atomic_fetch_add(t->started, 1, __ATOMIC_RELEASE);
    for (;;) {
        int n = epoll_wait(t->epfd, ev, 8, -1);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == t->efd)
                return NULL;
            t->wakeups++;
            int fd;
            while ((fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                t->accepts++;
                close(fd);
            }
        }
    }
}

static int ep_listen(int port, int reuseport)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, 4096) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int herd_epoll_start(struct herd_epoll *h, int mode, unsigned n)
{
    h->n = n;
    h->threads = calloc(n, sizeof *h->threads);
    h->tids = calloc(n, sizeof *h->tids);
    if (!h->threads || !h->tids)
        return -ENOMEM;
    int shared = -1;
    h->port = 0;
    for (unsigned i = 0; i < n; i++) {
        struct ep_thread *t = &h->threads[i];
        if (mode == HERD_EPOLL_REUSEPORT || i == 0) {
            t->lfd = ep_listen(h->port, mode == HERD_EPOLL_REUSEPORT);
            if (t->lfd < 0)
                return -errno;
            if (i == 0) {
                struct sockaddr_in sin;
                socklen_t len = sizeof sin;
                getsockname(t->lfd, (struct sockaddr *)&sin, &len);
                h->port = ntohs(sin.sin_port);
                shared = t->lfd;
            }
        } else {
            t->lfd = shared;
        }
        t->epfd = epoll_create1(EPOLL_CLOEXEC);
        t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->lfd};
        if (mode == HERD_EPOLL_EXCLUSIVE)
            ev.events |= EPOLLEXCLUSIVE;
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lfd, &ev);
        ev = (struct epoll_event){.events = EPOLLIN, .data.fd = t->efd};
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->efd, &ev);
    }
    int started = 0;
    for (unsigned i = 0; i < n; i++) {
        h->threads[i].os_tid = &h->tids[i];
        h->threads[i].started = &started;
        pthread_create(&h->threads[i].tid, NULL, ep_run, &h->threads[i]);
    }
    while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) < (int)n)
        usleep(1000);
    return 0;
}

void herd_epoll_stop(struct herd_epoll *h, uint64_t *wakeups, uint64_t *accepts)
{
    uint64_t one = 1;
    for (unsigned i = 0; i < h->n; i++)
        (void)!write(h->threads[i].efd, &one, sizeof one);
    for (unsigned i = 0; i < h->n; i++) {
        struct ep_thread *t = &h->threads[i];
        pthread_join(t->tid, NULL);
        wakeups[i] = t->wakeups;
        accepts[i] = t->accepts;
        close(t->epfd);
        close(t->efd);
        if (i == 0 || t->lfd != h->threads[0].lfd)
            close(t->lfd);
    }
    free(h->threads);
    free(h->tids);
}
