/*
 * Streams: the write queue, the fd transport, half-close.
 *
 * Why requests point at the caller's bytes: copying every write would
 * allocate on the hot path and double the memory a slow reader pins. The
 * caller keeps the bytes until the request's callback, and bounds what it
 * queues with the watermarks (hk_stream_write returns HK_STREAM_FULL, the
 * drain callback says when to go on), so memory stays bounded by the high
 * watermark plus one write, whatever the peer does.
 *
 * Why writev of the whole queue: one system call moves as much as the
 * socket buffer takes, across request boundaries. A write to an empty queue
 * is tried at once (most writes fit, and then no epoll_ctl is needed); only
 * what is left waits for EPOLLOUT. Sockets are written with sendmsg and
 * MSG_NOSIGNAL, so a reset peer gives -EPIPE instead of killing the process
 * with SIGPIPE; other fds (pipes, ptys) with writev, which has no such flag:
 * for pipes and fifos, the ones that raise SIGPIPE, it is blocked around the
 * call instead (hk__fd_writev_nosignal).
 *
 * Why file requests (hk_stream_sendfile) are barriers in the queue: sendfile
 * cannot be gathered with iovecs in one call, so the byte requests before a
 * file range go out first, then the range with sendfile, then the rest.
 * Order is what HTTP needs: headers, then the body from the page cache.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "net/internal.h"

#define HK__FLUSH_IOV 64

static ssize_t hk__fd_read(hk_stream_t *s, void *buf, size_t len)
{
    ssize_t n;
    do
        n = read(s->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/*
 * writev on a pipe or fifo, which has no MSG_NOSIGNAL: a write after the
 * reader has gone raises SIGPIPE at the writing thread, and its default
 * action kills the host process. SIGPIPE is blocked in this thread around the
 * call; on EPIPE the signal it raised is taken off again with a zero-timeout
 * sigtimedwait, and the mask is restored. Nothing was pending before: an
 * unblocked SIGPIPE would have been delivered already. A thread that already
 * blocks SIGPIPE keeps its mask, and the signal, as plain write(2) would.
 */
static ssize_t hk__fd_writev_nosignal(int fd, const struct iovec *iov, int iovcnt)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    int masked = pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0 && !sigismember(&old, SIGPIPE);
    ssize_t n;
    do
        n = writev(fd, iov, iovcnt);
    while (n < 0 && errno == EINTR);
    int e = errno;
    if (masked) {
        if (n < 0 && e == EPIPE) {
            static const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return n < 0 ? -e : n;
}

static ssize_t hk__fd_send(hk_stream_t *s, const struct iovec *iov, int iovcnt, int flags)
{
    if (s->_flags & HK__S_SIGPIPE)
        return hk__fd_writev_nosignal(s->fd, iov, iovcnt);
    ssize_t n;
    do {
        if (s->_flags & HK__S_SOCKET) {
            struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
            n = sendmsg(s->fd, &msg, MSG_NOSIGNAL | flags);
        } else {
            n = writev(s->fd, iov, iovcnt); /* a pty or a device: EIO, never SIGPIPE */
        }
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t hk__fd_writev(hk_stream_t *s, const struct iovec *iov, int iovcnt)
{
    return hk__fd_send(s, iov, iovcnt, 0);
}

static int hk__fd_shutdown(hk_stream_t *s)
{
    if (!(s->_flags & HK__S_SOCKET))
        return -ENOTSOCK;
    return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

const hk_stream_transport_t hk__fd_transport = {
    .read = hk__fd_read,
    .writev = hk__fd_writev,
    .shutdown = hk__fd_shutdown,
    .pending = NULL,
    .close = NULL,
};

static void hk__done_push(hk_stream_t *s, hk_write_req_t *req, int status)
{
    req->_status = status;
    req->_next = NULL;
    if (s->_done_tail)
        s->_done_tail->_next = req;
    else
        s->_done = req;
    s->_done_tail = req;
}

void hk__stream_run_done(hk_stream_t *s)
{
    hk_write_req_t *req;
    while ((req = s->_done) != NULL) {
        s->_done = req->_next;
        if (!s->_done)
            s->_done_tail = NULL;
        req->_next = NULL;
        if (req->_cb)
            req->_cb(req, req->_status);
    }
}

void hk__stream_fail_queue(hk_stream_t *s, int err)
{
    hk_write_req_t *req;
    while ((req = s->_head) != NULL) {
        s->_head = req->_next;
        hk__done_push(s, req, err);
    }
    s->_tail = NULL;
    s->_queued = 0;
    /*
     * The queue was emptied by a failure, not drained: the requests' callbacks
     * say so, and a drain callback now would tell the producer to go on.
     */
    s->_flags &= ~HK__S_FULL;
    if ((s->_flags & (HK__S_SHUT_WANT | HK__S_SHUT_DONE)) == HK__S_SHUT_WANT) {
        s->_flags |= HK__S_SHUT_DONE;
        s->_shut_status = err;
    }
}

/* Moves a request's progress on by take bytes (take <= its _left). */
static void hk__req_advance(hk_write_req_t *req, size_t take)
{
    req->_left -= take;
    if (req->_file_fd >= 0) {
        req->_file_off += (int64_t)take;
        return;
    }
    while (take > 0) {
        size_t room = req->_iov[req->_idx].iov_len - req->_off;
        if (take < room) {
            req->_off += take;
            return;
        }
        take -= room;
        req->_idx++;
        req->_off = 0;
    }
}

/* Marks n written bytes off the head of the queue; finished requests move to the done list. */
static void hk__stream_advance(hk_stream_t *s, size_t n)
{
    s->_queued -= n;
    if (n > 0)
        s->_flags |= HK__S_WROTE;
    hk_write_req_t *req;
    while ((req = s->_head) != NULL) {
        size_t take = n < req->_left ? n : req->_left;
        hk__req_advance(req, take);
        n -= take;
        if (req->_left > 0)
            break;
        s->_head = req->_next;
        if (!s->_head)
            s->_tail = NULL;
        hk__done_push(s, req, 0);
    }
}

/*
 * Sends the head request's file range. Returns the bytes sent, -EAGAIN, or
 * -errno; a file that ends before the range does is -EIO (the peer would
 * otherwise wait for bytes that never come).
 */
static ssize_t hk__stream_sendfile(hk_stream_t *s, hk_write_req_t *req)
{
    off_t off = (off_t)req->_file_off;
    ssize_t w;
    do
        w = sendfile(s->fd, req->_file_fd, &off, req->_left);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return w == 0 ? -EIO : w;
}

void hk__stream_try_shutdown(hk_stream_t *s)
{
    if ((s->_flags & (HK__S_SHUT_WANT | HK__S_SHUT_DONE)) != HK__S_SHUT_WANT || s->_head)
        return;
    int r = s->_error;
    if (!r && s->_transport->shutdown) {
        r = s->_transport->shutdown(s);
        if (r == -EAGAIN)
            return; /* the transport waits for the fd (it said which with _want) */
    }
    s->_shut_status = r;
    s->_flags |= HK__S_SHUT_DONE;
}

void hk__stream_flush(hk_stream_t *s)
{
    while (s->_head && !s->_error) {
        struct iovec iov[HK__FLUSH_IOV];
        int n = 0;
        size_t total = 0;
        ssize_t w;
        if (s->_head->_file_fd >= 0) {
            total = s->_head->_left;
            w = hk__stream_sendfile(s, s->_head);
        } else {
            /* Gather the byte requests up to the first file request. */
            hk_write_req_t *req = s->_head;
            for (; req && req->_file_fd < 0 && n < HK__FLUSH_IOV; req = req->_next) {
                for (int i = req->_idx; i < req->_iovcnt && n < HK__FLUSH_IOV; i++) {
                    size_t off = i == req->_idx ? req->_off : 0;
                    size_t len = req->_iov[i].iov_len - off;
                    if (!len)
                        continue;
                    iov[n].iov_base = (char *)req->_iov[i].iov_base + off;
                    iov[n].iov_len = len;
                    total += len;
                    n++;
                }
            }
            if (n == 0) { /* only empty requests left */
                hk__stream_advance(s, 0);
                continue;
            }
            /*
             * Bytes followed by a file range (an HTTP header before its body): MSG_MORE
             * lets TCP put them in one segment with the file's first bytes instead of
             * sending a small packet of their own (TCP_NODELAY would).
             */
            if (req && req->_file_fd >= 0 && s->_transport == &hk__fd_transport)
                w = hk__fd_send(s, iov, n, MSG_MORE);
            else
                w = s->_transport->writev(s, iov, n);
        }
        if (w == -EAGAIN || w == -EWOULDBLOCK)
            break;
        if (w < 0) {
            hk__stream_set_error(s, (int)w);
            break;
        }
        s->bytes_written += (uint64_t)w;
        hk__stream_advance(s, (size_t)w);
        if ((size_t)w < total)
            break; /* the kernel took less: it is full */
    }
    hk__stream_try_shutdown(s);
}

/*
 * Checks the stream can take a write, then appends req (set up by the caller)
 * and flushes. report: the caller gets HK_STREAM_FULL, so a full queue arms
 * the drain callback; else (try_write's copy) the next hk_stream_write will.
 */
static int hk__stream_enqueue(hk_stream_t *s, hk_write_req_t *req, hk_write_cb cb, bool report)
{
    if (s->_flags & HK__S_CLOSING)
        return -EBUSY;
    if (s->_error)
        return s->_error;
    if (s->_flags & HK__S_SHUT_WANT)
        return -EPIPE;
    req->stream = s;
    req->_status = 0;
    req->_cb = cb;
    req->_next = NULL;
    int was_empty = s->_head == NULL;
    if (s->_tail)
        s->_tail->_next = req;
    else
        s->_head = req;
    s->_tail = req;
    s->_queued += req->_left;
    if (was_empty && !(s->_flags & HK__S_CORKED))
        hk__stream_flush(s);
    if (s->_done || s->_error)
        hk__stream_schedule(s);
    hk__stream_update(s);
    if (report && s->_queued >= s->_high) {
        /* The drain waits for a write from here on: with low == high the queue is at low now. */
        s->_flags = (s->_flags | HK__S_FULL) & ~HK__S_WROTE;
        return HK_STREAM_FULL;
    }
    return 0;
}

static int hk__stream_write(hk_stream_t *s, hk_write_req_t *req, const struct iovec *iov,
                            int iovcnt, hk_write_cb cb, bool report)
{
    if (!req || !iov || iovcnt < 1 || iovcnt > IOV_MAX)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    req->_iov = iov;
    req->_iovcnt = iovcnt;
    req->_idx = 0;
    req->_off = 0;
    req->_left = total;
    req->_file_fd = -1;
    return hk__stream_enqueue(s, req, cb, report);
}

int hk_stream_write(hk_stream_t *s, hk_write_req_t *req, const struct iovec *iov, int iovcnt,
                    hk_write_cb cb)
{
    return hk__stream_write(s, req, iov, iovcnt, cb, true);
}

int hk_stream_sendfile(hk_stream_t *s, hk_write_req_t *req, int fd, int64_t offset, size_t len,
                       hk_write_cb cb)
{
    if (!req || fd < 0 || offset < 0 || len == 0)
        return -EINVAL;
    if (s->_transport != &hk__fd_transport || !(s->_flags & HK__S_SOCKET))
        return -ENOTSUP;
    req->_iov = NULL;
    req->_iovcnt = 0;
    req->_idx = 0;
    req->_off = 0;
    req->_left = len;
    req->_file_fd = fd;
    req->_file_off = offset;
    return hk__stream_enqueue(s, req, cb, true);
}

void hk_stream_cork(hk_stream_t *s)
{
    if (s->_flags & HK__S_CORKED)
        return;
    s->_flags |= HK__S_CORKED;
    hk__stream_update(s); /* drops the writable interest a queued write holds */
}

void hk_stream_uncork(hk_stream_t *s)
{
    if (!(s->_flags & HK__S_CORKED))
        return;
    s->_flags &= ~HK__S_CORKED;
    if (s->_flags & HK__S_CLOSING)
        return;          /* the held writes are cancelled by the close, never sent */
    hk__stream_flush(s); /* also a shutdown that waited behind the held writes */
    if (s->_done || s->_error)
        hk__stream_schedule(s);
    hk__stream_update(s);
}

/* A copy of the bytes an engine took but could not send (hk_stream_try_write). */
typedef struct hk__owned_write {
    hk_write_req_t req;
    struct iovec iov;
    char data[];
} hk__owned_write_t;

static void hk__owned_write_done(hk_write_req_t *req, int status)
{
    (void)status; /* an error reaches the caller through the stream's next call */
    free((char *)req - offsetof(hk__owned_write_t, req));
}

/*
 * A transport with an engine (TLS) may have sealed the first bytes of iov
 * into a record it could not send, and must be offered the same bytes again
 * (OpenSSL's retry rule): it then asks for writability. The caller was told
 * nothing about them and may write other bytes next, so the stream keeps a
 * copy of everything from done on and queues it; the caller is told it was
 * all written, which it was, as far as ordering goes.
 */
static ssize_t hk__stream_keep_rest(hk_stream_t *s, const struct iovec *iov, int iovcnt,
                                    size_t done)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t rest = total - done;
    if (rest == 0)
        return (ssize_t)total;
    hk__owned_write_t *o = malloc(sizeof *o + rest);
    if (!o) {
        hk__stream_set_error(s, -ENOMEM);
        hk__stream_schedule(s);
        hk__stream_update(s);
        return done > 0 ? (ssize_t)done : -ENOMEM;
    }
    size_t skip = done, at = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(o->data + at, (const char *)iov[i].iov_base + skip, len - skip);
        at += len - skip;
        skip = 0;
    }
    o->iov.iov_base = o->data;
    o->iov.iov_len = rest;
    /*
     * The copy counts against the watermarks, but try_write returns bytes and
     * cannot say HK_STREAM_FULL: arming the drain here would report a drain
     * the caller never waited for. Behind the copy try_write says -EAGAIN and
     * hk_stream_write reports the full queue, which arms it.
     */
    int r = hk__stream_write(s, &o->req, &o->iov, 1, hk__owned_write_done, false);
    if (r < 0) {
        free(o);
        return done > 0 ? (ssize_t)done : r;
    }
    return (ssize_t)total;
}

ssize_t hk_stream_try_write(hk_stream_t *s, const struct iovec *iov, int iovcnt)
{
    if (!iov || iovcnt < 1 || iovcnt > IOV_MAX)
        return -EINVAL;
    if (s->_flags & HK__S_CLOSING)
        return -EBUSY;
    if (s->_error)
        return s->_error;
    if (s->_flags & HK__S_SHUT_WANT)
        return -EPIPE;
    /*
     * Corked, every write waits for the uncork (that is what lets a header
     * share its segment with what follows); try_write cannot queue, so it
     * says what it says for a full fd, and the caller's hk_stream_write then
     * joins the held writes.
     */
    if (s->_head || (s->_flags & HK__S_CORKED))
        return -EAGAIN;
    ssize_t w = s->_transport->writev(s, iov, iovcnt);
    if (w == -EWOULDBLOCK)
        w = -EAGAIN;
    if ((w >= 0 || w == -EAGAIN) && (s->_want & HK_WRITABLE) &&
        s->_transport != &hk__fd_transport) {
        if (w > 0)
            s->bytes_written += (uint64_t)w;
        return hk__stream_keep_rest(s, iov, iovcnt, w > 0 ? (size_t)w : 0);
    }
    if (w >= 0)
        s->bytes_written += (uint64_t)w;
    else if (w != -EAGAIN) {
        hk__stream_set_error(s, (int)w);
        hk__stream_schedule(s);
        hk__stream_update(s);
    }
    return w;
}

int hk_stream_shutdown(hk_stream_t *s, hk_stream_shutdown_cb cb)
{
    if (s->_flags & HK__S_CLOSING)
        return -EBUSY;
    if (s->_flags & HK__S_SHUT_WANT)
        return -EALREADY;
    if (s->_error)
        return s->_error;
    s->_flags |= HK__S_SHUT_WANT;
    s->_shutdown_cb = cb;
    hk__stream_try_shutdown(s);
    if (s->_flags & HK__S_SHUT_DONE)
        hk__stream_schedule(s);
    hk__stream_update(s);
    return 0;
}
