/*
 * Multi-loop accept: N loops, one per thread, serving one address.
 *
 * What the kernel does: a listening socket in N epoll sets wakes all N
 * waiters for each connection (level-triggered: each loop runs its
 * callback, one accept wins and N-1 find EAGAIN): N context switches per
 * connection. EPOLLEXCLUSIVE wakes one idle waiter, but the socket's wait
 * queue is walked in registration order, so the first loops take most
 * connections while the others idle. SO_REUSEPORT gives each loop its own
 * socket and accept queue and spreads connections by a hash of the 4-tuple:
 * one wake-up each and an even share, but a connection hashed to a busy
 * loop waits for it. A single acceptor passing fds to the others costs an
 * extra wake-up per connection (the hand-off's eventfd) but balances
 * exactly.
 *
 * What we do: the group creates the socket(s) up front, all bound before
 * any loop starts (so the port is known and REUSEPORT's per-socket queues
 * all exist); each member is an ordinary hk_listener_t on its own loop
 * (shared fd, EXCLUSIVE or not, or its own REUSEPORT fd). Hand-off uses a
 * mutex-protected ring per member plus its hk_async; the acceptor sends the
 * wake-up while holding the ring's lock, and a closing member clears _ready
 * under the same lock, so no send can reach a closed async handle.
 * Counters are per member and written only by the member's own thread.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

static const char *const hk__mode_names[] = {"plain", "exclusive", "reuseport", "handoff"};

const char *hk_accept_mode_name(hk_accept_mode_t mode)
{
    if ((unsigned)mode >= sizeof hk__mode_names / sizeof hk__mode_names[0])
        return NULL;
    return hk__mode_names[mode];
}

static int hk__set_port(struct sockaddr_storage *ss, int fd)
{
    struct sockaddr_storage b;
    socklen_t len = sizeof b;
    if (getsockname(fd, (struct sockaddr *)&b, &len) < 0)
        return -errno;
    if (b.ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_port = ((struct sockaddr_in *)&b)->sin_port;
        return ntohs(((struct sockaddr_in *)&b)->sin_port);
    }
    ((struct sockaddr_in6 *)ss)->sin6_port = ((struct sockaddr_in6 *)&b)->sin6_port;
    return ntohs(((struct sockaddr_in6 *)&b)->sin6_port);
}

int hk_accept_group_open(hk_accept_group_t *g, hk_accept_mode_t mode, const char *addr, int backlog,
                         unsigned flags, hk_accept_member_t *members, unsigned n)
{
    if (!g || !members || n < 1 || !hk_accept_mode_name(mode) ||
        (flags & ~(HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE | HK_LISTEN_V6ONLY)))
        return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len;
    int r = hk_addr_parse(addr, &ss, &len);
    if (r < 0)
        return r;
    memset(g, 0, sizeof *g);
    g->mode = mode;
    g->nmembers = n;
    g->members = members;
    g->_flags = flags;
    g->_fd = -1;
    if (mode == HK_ACCEPT_REUSEPORT) {
        g->_fds = malloc(n * sizeof *g->_fds);
        if (!g->_fds)
            return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
            int fd = hk__listen_socket((struct sockaddr *)&ss, len, backlog,
                                       flags | HK_LISTEN_REUSEPORT);
            if (fd < 0) {
                while (i > 0)
                    close(g->_fds[--i]);
                free(g->_fds);
                g->_fds = NULL;
                return fd;
            }
            g->_fds[i] = fd;
            if (i == 0)
                g->port = hk__set_port(&ss, fd); /* the others bind the same port */
        }
    } else {
        g->_fd = hk__listen_socket((struct sockaddr *)&ss, len, backlog, flags);
        if (g->_fd < 0)
            return g->_fd;
        g->port = hk__set_port(&ss, g->_fd);
    }
    for (unsigned i = 0; i < n; i++) {
        hk_accept_member_t *m = &members[i];
        m->group = g;
        m->loop = NULL;
        m->index = i;
        m->_cb = NULL;
        m->_close_cb = NULL;
        m->_ready = 0;
        m->_head = m->_tail = 0;
        m->_pending = 0;
        m->_handoff_wakeups = 0;
        m->_received = 0;
        memset(&m->_listener.stats, 0, sizeof m->_listener.stats);
        pthread_mutex_init(&m->_lock, NULL);
    }
    return 0;
}

static void hk__member_deliver(hk_accept_member_t *m, int fd)
{
    m->_received++;
    m->_cb(m, fd);
}

/* Hand-off: the acceptor passes fd to the next member in turn (or keeps it). */
static void hk__member_handoff(hk_accept_member_t *self, int fd)
{
    hk_accept_group_t *g = self->group;
    hk_accept_member_t *to = &g->members[g->_rr++ % g->nmembers];
    if (to != self) {
        int sent = 0;
        pthread_mutex_lock(&to->_lock);
        if (to->_ready && to->_tail - to->_head < HK_ACCEPT_QUEUE) {
            to->_queue[to->_tail++ % HK_ACCEPT_QUEUE] = fd;
            (void)hk_async_send(&to->_async);
            sent = 1;
        }
        pthread_mutex_unlock(&to->_lock);
        if (sent)
            return;
    }
    hk__member_deliver(self, fd);
}

static void hk__member_on_conn(hk_listener_t *l, int fd)
{
    hk_accept_member_t *m = l->data;
    if (m->group->mode == HK_ACCEPT_HANDOFF)
        hk__member_handoff(m, fd);
    else
        m->_cb(m, fd);
}

static void hk__member_on_async(hk_async_t *a)
{
    hk_accept_member_t *m = a->base.data;
    int fds[64];
    m->_handoff_wakeups++;
    for (;;) {
        unsigned k = 0;
        pthread_mutex_lock(&m->_lock);
        while (k < 64 && m->_head != m->_tail)
            fds[k++] = m->_queue[m->_head++ % HK_ACCEPT_QUEUE];
        pthread_mutex_unlock(&m->_lock);
        for (unsigned i = 0; i < k; i++) {
            /*
             * A callback of this batch may have closed the member: the fds
             * taken off its queue with the others are then closed, not handed
             * to a callback that was told it would get no more (net.h).
             */
            if (!m->_ready) {
                close(fds[i]);
                continue;
            }
            hk__member_deliver(m, fds[i]);
        }
        if (k < 64 || !m->_ready)
            break;
    }
}

static void hk__member_async_closed(hk_handle_t *h);
static void hk__member_listener_closed(hk_listener_t *l);

int hk_accept_member_start(hk_accept_group_t *g, unsigned index, hk_loop_t *loop, hk_accept_cb cb)
{
    if (!g || !loop || !cb || index >= g->nmembers)
        return -EINVAL;
    hk_accept_member_t *m = &g->members[index];
    if (m->loop || m->_pending)
        return -EBUSY; /* started, or a failed start's handles are still closing */
    unsigned lflags = HK_LISTEN_SHARED | (g->_flags & (HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE));
    int fd = g->_fd, r;
    switch (g->mode) {
    case HK_ACCEPT_EXCLUSIVE:
        lflags |= HK_LISTEN_EXCLUSIVE;
        break;
    case HK_ACCEPT_REUSEPORT:
        fd = g->_fds[index];
        break;
    case HK_ACCEPT_HANDOFF:
        if (index != 0)
            fd = -1; /* only member 0 accepts */
        break;
    case HK_ACCEPT_PLAIN:
        break;
    }
    m->_cb = cb;
    if (g->mode == HK_ACCEPT_HANDOFF) {
        r = hk_async_init(loop, &m->_async, hk__member_on_async);
        if (r < 0)
            return r;
        m->_async.base.data = m;
        m->_pending++;
    }
    if (fd >= 0) {
        m->_listener.data = m;
        bool closing;
        r = hk__listener_open(loop, &m->_listener, fd, lflags, hk__member_on_conn,
                              hk__member_listener_closed, &closing);
        if (r < 0) {
            /*
             * The handles opened so far close in the loop's next iteration:
             * _pending counts them down, and until it is 0 another start
             * would re-initialise a handle that is still closing (-EBUSY).
             */
            m->_close_cb = NULL;
            if (closing)
                m->_pending++;
            if (g->mode == HK_ACCEPT_HANDOFF)
                hk_close(&m->_async.base, hk__member_async_closed);
            return r;
        }
        m->_pending++;
    }
    m->loop = loop;
    if (g->mode == HK_ACCEPT_HANDOFF) {
        pthread_mutex_lock(&m->_lock);
        m->_ready = 1;
        pthread_mutex_unlock(&m->_lock);
    }
    return 0;
}

static void hk__member_closed(hk_accept_member_t *m)
{
    if (--m->_pending == 0 && m->_close_cb)
        m->_close_cb(m);
}

static void hk__member_async_closed(hk_handle_t *h)
{
    hk__member_closed(h->data);
}

static void hk__member_listener_closed(hk_listener_t *l)
{
    hk__member_closed(l->data);
}

void hk_accept_member_close(hk_accept_member_t *m, hk_accept_close_cb cb)
{
    hk_accept_group_t *g = m->group;
    if (!m->loop)
        return; /* never started: nothing to close */
    m->_close_cb = cb;
    pthread_mutex_lock(&m->_lock);
    m->_ready = 0;
    while (m->_head != m->_tail)
        close(m->_queue[m->_head++ % HK_ACCEPT_QUEUE]);
    pthread_mutex_unlock(&m->_lock);
    if (g->mode == HK_ACCEPT_HANDOFF)
        hk_close(&m->_async.base, hk__member_async_closed);
    if (g->mode != HK_ACCEPT_HANDOFF || m->index == 0)
        hk_listener_close(&m->_listener, hk__member_listener_closed);
}

void hk_accept_member_stats(const hk_accept_member_t *m, hk_accept_stats_t *out)
{
    const hk_listen_stats_t *ls = &m->_listener.stats;
    int handoff = m->group->mode == HK_ACCEPT_HANDOFF;
    int listens = !handoff || m->index == 0;
    out->wakeups = (listens ? ls->wakeups : 0) + m->_handoff_wakeups;
    out->accepts = handoff ? m->_received : ls->accepts;
    out->empty = listens ? ls->empty : 0;
    out->backoffs = listens ? ls->backoffs : 0;
}

void hk_accept_group_stop_listening(hk_accept_group_t *g)
{
    if (g->_fds) {
        for (unsigned i = 0; i < g->nmembers; i++)
            close(g->_fds[i]);
        free(g->_fds);
        g->_fds = NULL;
    }
    if (g->_fd >= 0)
        close(g->_fd);
    g->_fd = -1;
}

void hk_accept_group_close(hk_accept_group_t *g)
{
    hk_accept_group_stop_listening(g);
    for (unsigned i = 0; i < g->nmembers; i++)
        pthread_mutex_destroy(&g->members[i]._lock);
}
