/* The raw-epoll peer of bench/herd (epoll.c). */
#ifndef HERD_EPOLL_H
#define HERD_EPOLL_H

#include <stdint.h>
#include <sys/types.h>

enum { HERD_EPOLL_PLAIN = 0, HERD_EPOLL_EXCLUSIVE = 1, HERD_EPOLL_REUSEPORT = 2 };

struct ep_thread;
struct herd_epoll {
    unsigned n;
    int port;
    struct ep_thread *threads;
    pid_t *tids; /* the threads' kernel ids, for their context switches */
};

/* Starts n threads serving 127.0.0.1:(kernel's port) in mode; h->port and h->tids are set. */
int herd_epoll_start(struct herd_epoll *h, int mode, unsigned n);
/* Stops them; wakeups[i] and accepts[i] are thread i's counts. */
void herd_epoll_stop(struct herd_epoll *h, uint64_t *wakeups, uint64_t *accepts);

#endif
