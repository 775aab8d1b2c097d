/*
 * Coroutine I/O: the system call first, the netpoller only on EAGAIN.
 *
 * Why try first: on a busy connection the data is usually there already, so
 * the common case costs exactly the system call; only a call that would block
 * parks the coroutine until the netpoller sees the fd become ready, then
 * tries again (edge-triggered readiness can be stale, so EAGAIN after a wake
 * simply waits again).
 */
#include "co/internal.h"

#include <errno.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct hk__io_op {
    int kind;
    int fd, fd2, flags;
    void *buf;
    const void *cbuf;
    size_t len;
    const struct iovec *iov;
    int iovcnt;
    off_t *off;
    struct sockaddr *addr;
    socklen_t *addrlen;
} hk__io_op_t;

enum { HK__READ, HK__WRITE, HK__READV, HK__WRITEV, HK__RECV, HK__SEND, HK__SENDFILE, HK__ACCEPT };

static ssize_t hk__io_once(const hk__io_op_t *op)
{
    switch (op->kind) {
    case HK__READ:
        return read(op->fd, op->buf, op->len);
    case HK__WRITE:
        return write(op->fd, op->cbuf, op->len);
    case HK__READV:
        return readv(op->fd, op->iov, op->iovcnt);
    case HK__WRITEV:
        return writev(op->fd, op->iov, op->iovcnt);
    case HK__RECV:
        return recv(op->fd, op->buf, op->len, op->flags);
    case HK__SEND:
        return send(op->fd, op->cbuf, op->len, op->flags | MSG_NOSIGNAL);
    case HK__SENDFILE:
        return sendfile(op->fd, op->fd2, op->off, op->len);
    default:
        return accept4(op->fd, op->addr, op->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
}

/* The bytes a read asks for, or 0 when its result proves nothing about the queue. */
static size_t hk__io_read_len(const hk__io_op_t *op)
{
    switch (op->kind) {
    case HK__READ:
        return op->len;
    case HK__RECV:
        return op->flags & MSG_PEEK ? 0 : op->len;
    case HK__READV: {
        size_t len = 0;
        for (int i = 0; i < op->iovcnt; i++)
            len += op->iov[i].iov_len;
        return len;
    }
    default:
        return 0;
    }
}

static ssize_t hk__io(const hk__io_op_t *op, unsigned events, uint64_t deadline)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    size_t rlen = hk__io_read_len(op);
    /* After a short read of a stream socket, wait for the next edge first (poll.c). */
    int skip = rlen && deadline != 0 && hk__pd_read_drained(self->rt, op->fd);
    for (;;) {
        if (!skip) {
            ssize_t n = hk__io_once(op);
            if (n >= 0) {
                if (rlen)
                    hk__pd_read_done(self->rt, op->fd, n > 0 && (size_t)n < rlen);
                return n;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        int r = hk__pd_wait(self->rt, op->fd, events, deadline, 0);
        if (r == -ETIMEDOUT && skip) {
            /*
             * The read was skipped, never tried, and the netpoller may not
             * have polled since the data came: a deadline that passed first
             * still tries the call once, as 0 does.
             */
            skip = 0;
            deadline = 0;
            continue;
        }
        skip = 0;
        if (r < 0)
            return r;
    }
}

int hk_co_wait_fd(int fd, unsigned events, uint64_t deadline)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    return hk__pd_wait(self->rt, fd, events, deadline, 1);
}

ssize_t hk_co_read(int fd, void *buf, size_t len, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__READ, .fd = fd, .buf = buf, .len = len};
    return hk__io(&op, HK_READABLE, deadline);
}

ssize_t hk_co_write(int fd, const void *buf, size_t len, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__WRITE, .fd = fd, .cbuf = buf, .len = len};
    return hk__io(&op, HK_WRITABLE, deadline);
}

ssize_t hk_co_readv(int fd, const struct iovec *iov, int iovcnt, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__READV, .fd = fd, .iov = iov, .iovcnt = iovcnt};
    return hk__io(&op, HK_READABLE, deadline);
}

ssize_t hk_co_writev(int fd, const struct iovec *iov, int iovcnt, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__WRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt};
    return hk__io(&op, HK_WRITABLE, deadline);
}

ssize_t hk_co_recv(int fd, void *buf, size_t len, int flags, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__RECV, .fd = fd, .buf = buf, .len = len, .flags = flags};
    return hk__io(&op, HK_READABLE, deadline);
}

ssize_t hk_co_send(int fd, const void *buf, size_t len, int flags, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__SEND, .fd = fd, .cbuf = buf, .len = len, .flags = flags};
    return hk__io(&op, HK_WRITABLE, deadline);
}

ssize_t hk_co_sendfile(int out_fd, int in_fd, off_t *offset, size_t count, uint64_t deadline)
{
    hk__io_op_t op = {
        .kind = HK__SENDFILE, .fd = out_fd, .fd2 = in_fd, .off = offset, .len = count};
    return hk__io(&op, HK_WRITABLE, deadline);
}

ssize_t hk_co_write_all(int fd, const void *buf, size_t len, uint64_t deadline)
{
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = hk_co_write(fd, p + done, len - done, deadline);
        if (n < 0)
            return n;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int hk_co_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, uint64_t deadline)
{
    hk__io_op_t op = {.kind = HK__ACCEPT, .fd = fd, .addr = addr, .addrlen = addrlen};
    return (int)hk__io(&op, HK_READABLE, deadline);
}

int hk_co_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, uint64_t deadline)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    /* Before connect(): refused, the call must not leave an attempt going on. */
    if (!hk__deadline_ok(deadline))
        return -EINVAL;
    if (connect(fd, addr, addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    for (;;) {
        int r = hk__pd_wait(self->rt, fd, HK_WRITABLE, deadline, 0);
        if (r < 0)
            return r;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            return -errno;
        if (err)
            return -err;
        /* Writable and no error: connected (a stale edge would show EAGAIN-like state). */
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
            return 0;
        if (errno != ENOTCONN)
            return -errno;
    }
}
