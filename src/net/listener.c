/*
 * Listeners: accept4 in bounded batches, and the EMFILE back-off.
 *
 * What goes wrong: a level-triggered listener that hits EMFILE (or ENFILE,
 * ENOBUFS, ENOMEM) leaves the connection in the accept queue, so epoll
 * reports the fd ready again at once and the loop spins at 100 % CPU doing
 * nothing. An unbounded accept loop, on the other hand, lets a connection
 * storm starve every other fd of the loop.
 *
 * What we do (nginx's way): at most _batch accepts per wake-up; on a
 * resource error the listener leaves the epoll set and a timer brings it
 * back after _backoff_ns (100 ms by default); each pause is counted. While
 * paused, the kernel keeps queueing connections up to the backlog, so none is
 * lost when fds are freed in time. Wake-ups that accept nothing (other loops
 * got there first: the thundering herd) are counted too.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

#define HK__L_CLOSING 0x1u
#define HK__L_PAUSED 0x2u
#define HK__L_INHERITS 0x4u /* the listening socket has the options: accepted ones inherit them */
#define HK__L_PENDING_SHIFT 8

#define HK__LISTEN_FLAGS                                                                           \
    (HK_LISTEN_REUSEPORT | HK_LISTEN_V6ONLY | HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE |            \
     HK_LISTEN_EXCLUSIVE | HK_LISTEN_SHARED)

static void hk__listener_on_io(hk_io_t *io, unsigned revents);

static unsigned hk__listener_events(const hk_listener_t *l)
{
    return HK_READABLE | ((l->_flags & HK_LISTEN_EXCLUSIVE) ? HK_EXCLUSIVE : 0);
}

static void hk__listener_resume(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    hk_listener_t *l = t->base.data;
    l->_state &= ~HK__L_PAUSED;
    if (hk_io_start(&l->_io, hk__listener_events(l), hk__listener_on_io) < 0) {
        /* Still no room (epoll's own memory): try again later rather than give up. */
        l->_state |= HK__L_PAUSED;
        (void)hk_timer_start_in(&l->_timer, hk__listener_resume, (int64_t)l->_backoff_ns, 0);
    }
}

static void hk__listener_pause(hk_listener_t *l)
{
    l->stats.backoffs++;
    l->_state |= HK__L_PAUSED;
    (void)hk_io_stop(&l->_io);
    (void)hk_timer_start_in(&l->_timer, hk__listener_resume, (int64_t)l->_backoff_ns, 0);
}

static void hk__listener_on_io(hk_io_t *io, unsigned revents)
{
    (void)revents;
    hk_listener_t *l = io->base.data;
    unsigned got = 0, met = 0; /* met: accept4 found something, even if it failed */
    l->stats.wakeups++;
    for (unsigned i = 0; i < l->_batch; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                break;
            met++;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM) {
                l->stats.errors++;
                continue; /* this connection is gone; the next may be fine */
            }
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or a broken listener: never spin. */
            hk__listener_pause(l);
            break;
        }
        got++;
        l->stats.accepts++;
        if ((l->_flags & (HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE)) &&
            !(l->_state & HK__L_INHERITS))
            hk__conn_options(fd, l->_flags & HK_LISTEN_NODELAY, l->_flags & HK_LISTEN_KEEPALIVE);
        l->_cb(l, fd);
        if (l->_state & (HK__L_CLOSING | HK__L_PAUSED))
            break;
    }
    /* Only a wake-up that found the queue empty is the herd's: a back-off is counted apart. */
    if (!got && !met)
        l->stats.empty++;
}

static void hk__listener_closed(hk_handle_t *h);

int hk__listener_open(hk_loop_t *loop, hk_listener_t *l, int fd, unsigned flags, hk_listen_cb cb,
                      hk_listener_close_cb failed_cb, bool *closing)
{
    *closing = false;
    if (!loop || !l || !cb || (flags & ~HK__LISTEN_FLAGS))
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    int r = hk__set_nonblock(fd);
    if (r < 0)
        return r;
    r = hk_io_init(loop, &l->_io, fd);
    if (r < 0)
        return r;
    memset(&l->stats, 0, sizeof l->stats);
    l->fd = fd;
    l->_flags = flags;
    l->_batch = HK_LISTEN_BATCH_DEFAULT;
    l->_state = 0;
    /*
     * Linux copies TCP_NODELAY and the keep-alive options of a listening
     * socket into every socket accept4 returns: set once here, they cost no
     * system call per connection. Where the listening socket refuses them,
     * each accepted one gets them as before.
     */
    unsigned opts = flags & (HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE);
    if (opts && (!(opts & HK_LISTEN_NODELAY) || hk_tcp_nodelay(fd, 1) == 0) &&
        (!(opts & HK_LISTEN_KEEPALIVE) || hk_tcp_keepalive(fd, 60) == 0))
        l->_state |= HK__L_INHERITS;
    l->_backoff_ns = HK_LISTEN_BACKOFF_NS;
    l->_cb = cb;
    l->_close_cb = NULL;
    l->_io.base.data = l;
    (void)hk_timer_init(loop, &l->_timer);
    l->_timer.base.data = l;
    r = hk_io_start(&l->_io, hk__listener_events(l), hk__listener_on_io);
    if (r < 0) {
        /*
         * The handles were opened: close them (their close runs in the next
         * iteration), and tell an owner that wants to know when they are
         * done: until then the struct is not free for another open.
         */
        l->_state |= HK__L_CLOSING | (2u << HK__L_PENDING_SHIFT);
        l->_close_cb = failed_cb;
        *closing = true;
        hk_close(&l->_io.base, hk__listener_closed);
        hk_close(&l->_timer.base, hk__listener_closed);
        return r;
    }
    return 0;
}

int hk_listener_open(hk_loop_t *loop, hk_listener_t *l, int fd, unsigned flags, hk_listen_cb cb)
{
    bool closing;
    return hk__listener_open(loop, l, fd, flags, cb, NULL, &closing);
}

static int hk__listen_at(hk_loop_t *loop, hk_listener_t *l, const struct sockaddr *sa,
                         socklen_t len, int backlog, unsigned flags, hk_listen_cb cb)
{
    if (!loop || !l || !cb || (flags & ~HK__LISTEN_FLAGS) || (flags & HK_LISTEN_SHARED))
        return -EINVAL;
    int fd = hk__listen_socket(sa, len, backlog, flags);
    if (fd < 0)
        return fd;
    int r = hk_listener_open(loop, l, fd, flags, cb);
    if (r < 0)
        close(fd);
    return r;
}

int hk_tcp_listen(hk_loop_t *loop, hk_listener_t *l, const char *addr, int backlog, unsigned flags,
                  hk_listen_cb cb)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int r = hk_addr_parse(addr, &ss, &len);
    if (r < 0)
        return r;
    return hk__listen_at(loop, l, (struct sockaddr *)&ss, len, backlog, flags, cb);
}

int hk_unix_listen(hk_loop_t *loop, hk_listener_t *l, const char *path, int backlog, unsigned flags,
                   hk_listen_cb cb)
{
    struct sockaddr_un sun;
    socklen_t len;
    if (flags & (HK_LISTEN_NODELAY | HK_LISTEN_KEEPALIVE | HK_LISTEN_V6ONLY | HK_LISTEN_REUSEPORT))
        return -EINVAL;
    int r = hk__unix_addr(path, &sun, &len);
    if (r < 0)
        return r;
    return hk__listen_at(loop, l, (struct sockaddr *)&sun, len, backlog, flags, cb);
}

int hk_listener_set_batch(hk_listener_t *l, unsigned batch)
{
    if (batch < 1 || batch > 1024)
        return -EINVAL;
    l->_batch = batch;
    return 0;
}

int hk_listener_set_backoff(hk_listener_t *l, uint64_t ns)
{
    if (ns < 1000000 || ns > (UINT64_C(1) << 40))
        return -EINVAL;
    l->_backoff_ns = ns;
    return 0;
}

int hk_listener_port(const hk_listener_t *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

static void hk__listener_closed(hk_handle_t *h)
{
    hk_listener_t *l = h->data;
    l->_state -= 1u << HK__L_PENDING_SHIFT;
    if ((l->_state >> HK__L_PENDING_SHIFT) == 0 && l->_close_cb)
        l->_close_cb(l);
}

void hk_listener_close(hk_listener_t *l, hk_listener_close_cb cb)
{
    assert(((void)"hk: hk_listener_close twice", !(l->_state & HK__L_CLOSING)));
    if (l->_state & HK__L_CLOSING)
        return;
    l->_state |= HK__L_CLOSING | (2u << HK__L_PENDING_SHIFT);
    l->_close_cb = cb;
    hk_close(&l->_io.base, hk__listener_closed); /* before close(): its DEL goes by number */
    if (!(l->_flags & HK_LISTEN_SHARED))
        close(l->fd);
    hk_close(&l->_timer.base, hk__listener_closed);
}
