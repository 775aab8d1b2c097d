/*
 * Non-blocking connect with a deadline.
 *
 * What the kernel does: connect() on a non-blocking TCP socket returns
 * EINPROGRESS; the socket becomes writable when the handshake ends, and
 * SO_ERROR says how it ended (0, ECONNREFUSED, ETIMEDOUT after the kernel's
 * own minutes-long SYN retries). A Unix socket connects at once or fails
 * (EAGAIN when the listener's backlog is full).
 *
 * What we do: one io watcher for writability and one timer for the
 * caller's absolute deadline; whichever fires first decides. The result is
 * kept, both handles are closed, and the callback runs from the last close
 * callback, so the request's memory is free for reuse from inside it and the
 * loop holds nothing of it afterwards.
 */
#include <string.h>
#include <unistd.h>

#include "net/internal.h"

static void hk__connect_closed(hk_handle_t *h)
{
    hk_connect_t *req = h->data;
    if (--req->_pending > 0 || !req->_cb)
        return;
    int result = req->_result;
    if (result >= 0)
        hk__conn_options(result, req->_flags & HK_CONNECT_NODELAY,
                         req->_flags & HK_CONNECT_KEEPALIVE);
    req->_cb(req, result);
}

/* Ends the request with result (an fd, or -errno; a failed fd is closed here). */
static void hk__connect_finish(hk_connect_t *req, int result)
{
    if (req->_pending)
        return; /* already finishing */
    req->_result = result;
    req->_pending = 2;
    hk_close(&req->_io.base, hk__connect_closed); /* before close(): its DEL goes by number */
    if (result < 0)
        close(req->_io.fd);
    hk_close(&req->_timer.base, hk__connect_closed);
}

static void hk__connect_on_io(hk_io_t *io, unsigned revents)
{
    (void)revents;
    hk_connect_t *req = io->base.data;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    hk__connect_finish(req, err ? -err : io->fd);
}

static void hk__connect_on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    hk__connect_finish(t->base.data, -ETIMEDOUT);
}

static int hk__connect_start(hk_loop_t *loop, hk_connect_t *req, const struct sockaddr *sa,
                             socklen_t len, uint64_t deadline_ns, unsigned flags, hk_connect_cb cb)
{
    if (!loop || !req || !cb || (flags & ~(HK_CONNECT_NODELAY | HK_CONNECT_KEEPALIVE)))
        return -EINVAL;
    if (deadline_ns != HK_FOREVER && deadline_ns >= HK_DEADLINE_MAX)
        return -EINVAL;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r, connected = 0;
    do
        r = connect(fd, sa, len);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        connected = 1;
    int err = r < 0 ? errno : 0;
    r = hk_io_init(loop, &req->_io, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    (void)hk_timer_init(loop, &req->_timer);
    req->_io.base.data = req;
    req->_timer.base.data = req;
    req->_cb = cb;
    req->_flags = flags;
    req->_pending = 0;
    req->_result = 0;
    /* Connected or refused at once (Unix sockets): the result still comes from the loop. */
    if (connected || (err && err != EINPROGRESS)) {
        hk__connect_finish(req, connected ? fd : -err);
        return 0;
    }
    r = hk_io_start(&req->_io, HK_WRITABLE, hk__connect_on_io);
    if (r == 0 && deadline_ns != HK_FOREVER)
        r = hk_timer_start(&req->_timer, hk__connect_on_timer, deadline_ns, 0);
    if (r < 0) {
        req->_pending = 2; /* closes without a callback: the call failed */
        req->_cb = NULL;
        hk_close(&req->_io.base, NULL); /* before close(): the registration goes with the fd */
        hk_close(&req->_timer.base, NULL);
        close(fd);
        return r;
    }
    return 0;
}

int hk_tcp_connect(hk_loop_t *loop, hk_connect_t *req, const char *addr, uint64_t deadline_ns,
                   unsigned flags, hk_connect_cb cb)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int r = hk_addr_parse(addr, &ss, &len);
    if (r < 0)
        return r;
    return hk__connect_start(loop, req, (struct sockaddr *)&ss, len, deadline_ns, flags, cb);
}

int hk_unix_connect(hk_loop_t *loop, hk_connect_t *req, const char *path, uint64_t deadline_ns,
                    hk_connect_cb cb)
{
    struct sockaddr_un sun;
    socklen_t len;
    int r = hk__unix_addr(path, &sun, &len);
    if (r < 0)
        return r;
    return hk__connect_start(loop, req, (struct sockaddr *)&sun, len, deadline_ns, 0, cb);
}

int hk_connect_cancel(hk_connect_t *req)
{
    if (req->_pending)
        return -EALREADY;
    hk__connect_finish(req, -ECANCELED);
    return 0;
}
