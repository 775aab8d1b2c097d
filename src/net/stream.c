/*
 * Streams: the fd watcher, reading, notifications and close.
 *
 * What goes wrong with naive streams: a per-connection read buffer costs
 * 64 KiB times the connections that are merely open; a write callback run
 * from inside hk_stream_write re-enters the caller; a peer reset is seen by
 * both the read and the write side and reported twice; a watcher left with
 * read interest after EOF spins on a level-triggered fd; epoll keeps
 * reporting EPOLLERR/EPOLLHUP for a registered fd whatever its interest.
 *
 * What we do: the library read buffer is one per thread (a loop runs on one
 * thread and read callbacks do not nest), so idle connections cost only
 * their struct. The interest is recomputed from the state after every step
 * (reading and not at EOF -> readable; queue or pending shutdown ->
 * writable; what the transport asked for), and a stream that wants nothing
 * is removed from the epoll set, so a dead fd cannot wake us. Every user
 * callback (write completions, drain, shutdown, a deferred error) runs
 * either at the end of the io callback or from an hk_defer, never from the
 * call that caused it. The first error is sticky and delivered once to the
 * read callback, unless that callback already had its EOF; queued writes fail
 * with it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/internal.h"

/* The per-thread library read buffer, freed when the thread exits. */
static pthread_key_t hk__rbuf_key;
static pthread_once_t hk__rbuf_once = PTHREAD_ONCE_INIT;
static _Thread_local char *hk__rbuf;

static void hk__rbuf_key_init(void)
{
    (void)pthread_key_create(&hk__rbuf_key, free);
}

static char *hk__rbuf_get(void)
{
    if (!hk__rbuf) {
        pthread_once(&hk__rbuf_once, hk__rbuf_key_init);
        hk__rbuf = malloc(HK_STREAM_READ_BUF);
        if (hk__rbuf)
            (void)pthread_setspecific(hk__rbuf_key, hk__rbuf);
    }
    return hk__rbuf;
}

static void hk__stream_on_io(hk_io_t *io, unsigned revents);
static void hk__stream_on_defer(hk_defer_t *d);

/* socket: the caller vouches for a non-blocking socket (no system call to check). */
static int hk__stream_init(hk_loop_t *loop, hk_stream_t *s, int fd, bool socket)
{
    if (!loop || !s)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    int r = socket ? 0 : hk__set_nonblock(fd);
    if (r < 0)
        return r;
    r = hk_io_init(loop, &s->_io, fd);
    if (r < 0)
        return r;
    struct stat st;
    s->fd = fd;
    if (socket)
        s->_flags = HK__S_SOCKET;
    else if (fstat(fd, &st) < 0)
        s->_flags = HK__S_SIGPIPE; /* unknown: guard its writes */
    else
        s->_flags = S_ISSOCK(st.st_mode) ? HK__S_SOCKET : S_ISFIFO(st.st_mode) ? HK__S_SIGPIPE : 0;
    s->_alloc_cb = NULL;
    s->_read_cb = NULL;
    s->_drain_cb = NULL;
    s->_shutdown_cb = NULL;
    s->_close_cb = NULL;
    s->_head = s->_tail = NULL;
    s->_done = s->_done_tail = NULL;
    s->_queued = 0;
    s->_high = HK_STREAM_HIGH_DEFAULT;
    s->_low = HK_STREAM_LOW_DEFAULT;
    s->_error = 0;
    s->_shut_status = 0;
    s->_want = 0;
    s->_transport = &hk__fd_transport;
    s->transport_data = NULL;
    s->_defer.data = s;
    s->_defer._queued = 0;
    s->bytes_read = s->bytes_written = 0;
    s->_io.base.data = s;
    return 0;
}

int hk_stream_init(hk_loop_t *loop, hk_stream_t *s, int fd)
{
    return hk__stream_init(loop, s, fd, false);
}

int hk_stream_init_socket(hk_loop_t *loop, hk_stream_t *s, int fd)
{
    return hk__stream_init(loop, s, fd, true);
}

int hk_stream_set_transport(hk_stream_t *s, const hk_stream_transport_t *t, void *data)
{
    if (t && (!t->read || !t->writev))
        return -EINVAL;
    if (s->_flags & HK__S_CLOSING)
        return -EBUSY;
    s->_transport = t ? t : &hk__fd_transport;
    s->transport_data = data;
    return 0;
}

void hk_stream_transport_want(hk_stream_t *s, unsigned events)
{
    s->_want = events & (HK_READABLE | HK_WRITABLE);
}

/* Recomputes the fd interest from the state (see the top of the file). */
void hk__stream_update(hk_stream_t *s)
{
    if (s->_flags & HK__S_CLOSING)
        return;
    unsigned want = 0;
    if (!s->_error) {
        want = s->_want;
        if ((s->_flags & (HK__S_READING | HK__S_READ_DONE)) == HK__S_READING)
            want |= HK_READABLE;
        /* Corked, the write side waits for hk_stream_uncork: no EPOLLOUT to spin on. */
        if (!(s->_flags & HK__S_CORKED) &&
            (s->_head || (s->_flags & (HK__S_SHUT_WANT | HK__S_SHUT_DONE)) == HK__S_SHUT_WANT))
            want |= HK_WRITABLE;
    }
    int r;
    if (!want) {
        (void)hk_io_stop(&s->_io);
        return;
    }
    if (hk_is_active(&s->_io.base))
        r = hk_io_modify(&s->_io, want);
    else
        r = hk_io_start(&s->_io, want, hk__stream_on_io);
    if (r < 0) {
        hk__stream_set_error(s, r);
        (void)hk_io_stop(&s->_io);
        hk__stream_schedule(s);
    }
}

void hk__stream_schedule(hk_stream_t *s)
{
    if (!(s->_flags & HK__S_CLOSING))
        (void)hk_defer(s->_io.base.loop, &s->_defer, hk__stream_on_defer);
}

/* Records the first error; queued writes fail with it. */
void hk__stream_set_error(hk_stream_t *s, int err)
{
    if (!s->_error)
        s->_error = err;
    hk__stream_fail_queue(s, s->_error);
}

/* Reads once into a library or caller buffer. Returns 1 to read again. */
static int hk__stream_read_once(hk_stream_t *s)
{
    hk_buf_t buf = {NULL, 0};
    if (s->_alloc_cb) {
        s->_alloc_cb(s, HK_STREAM_READ_BUF, &buf);
        /*
         * Closed, or paused by an allocator with no room now: skip this read
         * without a callback. -ENOBUFS would end reading for good, and a
         * read callback after hk_stream_read_stop breaks its promise.
         */
        if ((s->_flags & (HK__S_READING | HK__S_CLOSING)) != HK__S_READING)
            return 0;
        if (!buf.base || !buf.len) {
            s->_flags |= HK__S_READ_DONE;
            s->_read_cb(s, -ENOBUFS, &buf);
            return 0;
        }
    } else {
        buf.base = hk__rbuf_get();
        buf.len = HK_STREAM_READ_BUF;
        if (!buf.base) {
            s->_flags |= HK__S_READ_DONE;
            s->_read_cb(s, -ENOMEM, &buf);
            return 0;
        }
    }
    ssize_t n = s->_transport->read(s, buf.base, buf.len);
    if (n > 0) {
        s->bytes_read += (uint64_t)n;
        s->_read_cb(s, n, &buf);
        return (size_t)n == buf.len;
    }
    if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR) {
        if (s->_alloc_cb)
            s->_read_cb(s, -EAGAIN, &buf);
        return 0;
    }
    s->_flags |= HK__S_READ_DONE;
    if (n < 0) {
        hk__stream_set_error(s, (int)n);
        s->_flags |= HK__S_ERR_SENT;
    }
    s->_read_cb(s, n, &buf);
    return 0;
}

static int hk__stream_can_read(const hk_stream_t *s)
{
    return (s->_flags & (HK__S_READING | HK__S_READ_DONE | HK__S_CLOSING)) == HK__S_READING &&
           !s->_error;
}

/* Returns 1 when it stopped at the limit with reading still possible (there may be more). */
static int hk__stream_read(hk_stream_t *s)
{
    /* Up to 16 full buffers per wake-up: enough to drain a socket, fair to the others. */
    for (int i = 0; i < 16 && hk__stream_can_read(s); i++) {
        if (!hk__stream_read_once(s))
            return 0;
    }
    return hk__stream_can_read(s);
}

/*
 * Runs the callbacks that are due: write completions, the shutdown result, an
 * error not yet delivered, data buffered by the transport, the drain
 * callback. Each may close the stream; then the close callback takes over.
 */
static void hk__stream_notify(hk_stream_t *s)
{
    hk__stream_run_done(s);
    if ((s->_flags & (HK__S_SHUT_DONE | HK__S_SHUT_SENT | HK__S_CLOSING)) == HK__S_SHUT_DONE) {
        s->_flags |= HK__S_SHUT_SENT;
        if (s->_shutdown_cb)
            s->_shutdown_cb(s, s->_shut_status);
    }
    /*
     * The read callback hears a later error only while its side is open: after
     * EOF (or -ENOBUFS) it is done with, and the error reaches the write
     * callbacks of the requests it failed, the shutdown callback, and the next
     * call instead. Telling it again would be a second end of its stream.
     */
    if (s->_error && (s->_flags & (HK__S_READING | HK__S_READ_DONE | HK__S_ERR_SENT |
                                   HK__S_CLOSING)) == HK__S_READING) {
        s->_flags |= HK__S_ERR_SENT | HK__S_READ_DONE;
        s->_read_cb(s, s->_error, NULL);
    }
    int more = 0;
    if (s->_transport->pending && hk__stream_can_read(s) && s->_transport->pending(s) > 0)
        more = hk__stream_read(s);
    /*
     * A drain is the queue written down to low: with low == high, a queue
     * that merely reached high is at low already, so a write must have come
     * since (HK__S_WROTE), or the producer would be told to go on at once.
     */
    if ((s->_flags & (HK__S_FULL | HK__S_WROTE | HK__S_CLOSING)) == (HK__S_FULL | HK__S_WROTE) &&
        s->_queued <= s->_low) {
        s->_flags &= ~HK__S_FULL;
        if (s->_drain_cb)
            s->_drain_cb(s);
    }
    hk__stream_update(s);
    /*
     * Another round if a callback queued more (a write that completed at once),
     * or if the read limit left bytes in the transport (a caller buffer smaller
     * than a TLS record): epoll cannot see them, and a peer that has sent
     * everything gives no fd event that would bring them. The limit is only
     * reached by full buffers, so a read waiting for the fd never comes back
     * here to spin.
     */
    if (s->_flags & HK__S_CLOSING)
        return;
    if (s->_done || (more && hk__stream_can_read(s) && s->_transport->pending(s) > 0))
        hk__stream_schedule(s);
}

static void hk__stream_on_defer(hk_defer_t *d)
{
    hk__stream_notify(d->data);
}

static void hk__stream_on_io(hk_io_t *io, unsigned revents)
{
    hk_stream_t *s = io->base.data;
    unsigned want = s->_want;
    if (want && (revents & want)) {
        /* The transport's engine waited for this: let both directions retry. */
        s->_want = 0;
        revents |= HK_READABLE | HK_WRITABLE;
    }
    if ((revents & HK_WRITABLE) && !(s->_flags & HK__S_CORKED))
        hk__stream_flush(s);
    if ((revents & HK_READABLE) && hk__stream_can_read(s))
        hk__stream_read(s);
    if (!(s->_flags & HK__S_CLOSING))
        hk__stream_notify(s);
}

int hk_stream_read_start(hk_stream_t *s, hk_stream_alloc_cb alloc_cb, hk_stream_read_cb read_cb)
{
    if (!read_cb)
        return -EINVAL;
    if (s->_flags & HK__S_CLOSING)
        return -EBUSY;
    if (s->_flags & HK__S_READ_DONE)
        return -EPIPE;
    s->_alloc_cb = alloc_cb;
    s->_read_cb = read_cb;
    s->_flags |= HK__S_READING;
    if (s->_error || (s->_transport->pending && s->_transport->pending(s) > 0))
        hk__stream_schedule(s);
    hk__stream_update(s);
    return 0;
}

int hk_stream_read_stop(hk_stream_t *s)
{
    if (!(s->_flags & HK__S_READING))
        return -EALREADY;
    s->_flags &= ~HK__S_READING;
    hk__stream_update(s);
    return 0;
}

int hk_stream_set_watermarks(hk_stream_t *s, size_t high, size_t low, hk_stream_drain_cb cb)
{
    if (high == 0 || low > high)
        return -EINVAL;
    s->_high = high;
    s->_low = low;
    s->_drain_cb = cb;
    return 0;
}

size_t hk_stream_queued(const hk_stream_t *s)
{
    return s->_queued;
}

static void hk__stream_closed(hk_handle_t *h)
{
    hk_stream_t *s = h->data;
    hk__stream_fail_queue(s, -ECANCELED);
    hk__stream_run_done(s);
    if ((s->_flags & (HK__S_SHUT_WANT | HK__S_SHUT_SENT)) == HK__S_SHUT_WANT) {
        s->_flags |= HK__S_SHUT_SENT;
        if (s->_shutdown_cb)
            s->_shutdown_cb(s, (s->_flags & HK__S_SHUT_DONE) ? s->_shut_status : -ECANCELED);
    }
    if (s->_close_cb)
        s->_close_cb(s);
}

void hk_stream_close(hk_stream_t *s, hk_stream_close_cb cb)
{
    assert(((void)"hk: hk_stream_close twice", !(s->_flags & HK__S_CLOSING)));
    if (s->_flags & HK__S_CLOSING)
        return;
    s->_flags |= HK__S_CLOSING;
    s->_close_cb = cb;
    (void)hk_defer_cancel(s->_io.base.loop, &s->_defer);
    if (s->_transport->close)
        s->_transport->close(s);
    /* hk_close removes the registration by number, so it goes first: after
     * close() the DEL would find EBADF (and a dup'ed copy would keep it). */
    hk_close(&s->_io.base, hk__stream_closed);
    close(s->fd);
}
