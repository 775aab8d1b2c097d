/*
 * Stream tests on real peers: TCP pairs on loopback (ports from bind(0)),
 * socketpairs and pipes. Backpressure with a reader that stops reading,
 * half-close, peer reset, EOF and errors delivered once, close cancelling
 * writes, caller buffers, and a transport installed through the seam.
 */
#include "util.h"

#include <stdlib.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_segs_out (glibc's is older) */
#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>

struct rx {
    char data[1 << 16];
    size_t len;
    int eof, errors, last_err, again;
    int closed;
};

static void on_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    struct rx *rx = s->data;
    if (n > 0) {
        size_t room = sizeof rx->data - rx->len;
        size_t k = (size_t)n < room ? (size_t)n : room;
        memcpy(rx->data + rx->len, buf->base, k);
        rx->len += k;
    } else if (n == 0) {
        rx->eof++;
    } else if (n == -EAGAIN) {
        rx->again++;
    } else {
        rx->errors++;
        rx->last_err = (int)n;
    }
}

static void on_closed(hk_stream_t *s)
{
    struct rx *rx = s->data;
    rx->closed = 1;
}

struct wr {
    int done, status;
};

static void on_written(hk_write_req_t *req, int status)
{
    struct wr *w = req->data;
    w->done++;
    w->status = status;
}

/* A non-blocking Unix socketpair. */
static void stream_socketpair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* hk_stream_init on fd, with rx as the stream's data. */
static void stream_open(hk_loop_t *loop, hk_stream_t *s, struct rx *rx, int fd)
{
    cr_assert_eq(hk_stream_init(loop, s, fd), 0);
    s->data = rx;
}

/* A new loop, a socketpair in sv, and stream s (data rx) on its end sv[end]. */
static hk_loop_t *open_on_pair(int sv[2], int end, hk_stream_t *s, struct rx *rx)
{
    hk_loop_t *loop = new_loop();
    stream_socketpair(sv);
    stream_open(loop, s, rx, sv[end]);
    return loop;
}

/* Closes s and waits for its close callback. */
static void close_and_wait(hk_loop_t *loop, hk_stream_t *s, struct rx *rx)
{
    hk_stream_close(s, on_closed);
    run_until(loop, &rx->closed, 5000);
}

/* Closes s and waits for its close callback, closes peer (unless -1), frees the loop. */
static void close_and_finish(hk_loop_t *loop, hk_stream_t *s, struct rx *rx, int peer)
{
    close_and_wait(loop, s, rx);
    if (peer >= 0)
        close(peer);
    finish_loop(loop);
}

/* A few turns that do not wait, for any late callback to show itself. */
static void settle(hk_loop_t *loop)
{
    for (int i = 0; i < 5; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
}

/* Runs the loop in mode while cond holds, failing with why once the time end has passed. */
#define RUN_LOOP_WHILE(loop, mode, cond, end, why)                                                 \
    do {                                                                                           \
        while (cond) {                                                                             \
            cr_assert_lt(hk_time_now(), (end), why);                                               \
            hk_loop_run((loop), (mode));                                                           \
        }                                                                                          \
    } while (0)

Test(stream, echo_library_buffers_socketpair)
{
    hk_loop_t *loop = new_loop();
    int sv[2];
    stream_socketpair(sv);
    hk_stream_t a, b;
    struct rx ra = {0}, rb = {0};
    stream_open(loop, &a, &ra, sv[0]);
    stream_open(loop, &b, &rb, sv[1]);
    cr_assert_eq(hk_stream_read_start(&b, NULL, on_read), 0);

    struct iovec iov[2] = {{"hello ", 6}, {"world", 5}};
    hk_write_req_t req;
    struct wr w = {0};
    req.data = &w;
    cr_assert_eq(hk_stream_write(&a, &req, iov, 2, on_written), 0);
    cr_assert_eq(w.done, 0, "a write callback never runs from inside hk_stream_write");
    while (rb.len < 11 || !w.done)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(w.status, 0);
    cr_assert(memcmp(rb.data, "hello world", 11) == 0);
    cr_assert_eq(a.bytes_written, 11);
    cr_assert_eq(b.bytes_read, 11);

    hk_stream_close(&a, on_closed);
    hk_stream_close(&b, on_closed);
    ra.closed = 0;
    while (!ra.closed || !rb.closed)
        hk_loop_run(loop, HK_RUN_ONCE);
    finish_loop(loop);
}

static char user_buf[7];
static void alloc_small(hk_stream_t *s, size_t suggested, hk_buf_t *buf)
{
    (void)s;
    cr_assert_eq(suggested, HK_STREAM_READ_BUF);
    buf->base = user_buf;
    buf->len = sizeof user_buf;
}

Test(stream, caller_buffers)
{
    int sv[2];
    hk_stream_t b;
    struct rx rb = {0};
    hk_loop_t *loop = open_on_pair(sv, 1, &b, &rb);
    cr_assert_eq(hk_stream_read_start(&b, alloc_small, on_read), 0);
    cr_assert_eq(write(sv[0], "0123456789abcdefghij", 20), 20);
    close(sv[0]);
    while (!rb.eof)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(rb.len, 20, "read in 7-byte caller buffers: %zu", rb.len);
    cr_assert(memcmp(rb.data, "0123456789abcdefghij", 20) == 0);
    cr_assert_eq(rb.eof, 1);
    cr_assert_eq(hk_stream_read_start(&b, alloc_small, on_read), -EPIPE,
                 "EOF is delivered once; reading again is refused");
    hk_stream_close(&b, on_closed);
    while (!rb.closed)
        hk_loop_run(loop, HK_RUN_ONCE);
    finish_loop(loop);
}

/* Backpressure: the peer does not read; the writer must see HK_STREAM_FULL and stop. */
#define CHUNK (64 * 1024)
#define NREQ 256
static char chunk[CHUNK];
static struct iovec chunk_iov = {chunk, CHUNK};

struct producer {
    hk_stream_t *s;
    hk_write_req_t reqs[NREQ];
    int next, full_seen, drains, completed, stopped;
    size_t max_queued;
};

static void prod_written(hk_write_req_t *req, int status)
{
    struct producer *p = req->data;
    cr_assert_eq(status, 0);
    p->completed++;
}

static void produce(struct producer *p)
{
    while (p->next < NREQ) {
        hk_write_req_t *req = &p->reqs[p->next++];
        req->data = p;
        int r = hk_stream_write(p->s, req, &chunk_iov, 1, prod_written);
        cr_assert_geq(r, 0, "write: %s", hk_err_name(r));
        size_t q = hk_stream_queued(p->s);
        if (q > p->max_queued)
            p->max_queued = q;
        if (r == HK_STREAM_FULL) {
            p->full_seen++;
            return; /* wait for the drain callback */
        }
    }
}

static void prod_drain(hk_stream_t *s)
{
    struct producer *p = s->data;
    p->drains++;
    cr_assert_leq(hk_stream_queued(s), 256 * 1024, "drain runs at the low watermark");
    produce(p);
}

Test(stream, backpressure_reader_stops)
{
    hk_loop_t *loop = new_loop();
    int fds[2];
    tcp_pair(loop, "127.0.0.1:0", fds);
    hk_stream_t w;
    struct producer p = {0};
    p.s = &w;
    cr_assert_eq(hk_stream_init(loop, &w, fds[0]), 0);
    w.data = &p;
    cr_assert_eq(hk_stream_set_watermarks(&w, 1024 * 1024, 256 * 1024, prod_drain), 0);
    cr_assert_eq(hk_stream_set_watermarks(&w, 10, 20, prod_drain), -EINVAL);
    produce(&p);
    /* The reader (fds[1]) reads nothing for a while: the writer must stop at the watermark. */
    for (int i = 0; i < 50; i++)
        hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_eq(p.full_seen, 1, "the writer saw the high watermark");
    cr_assert_lt(p.next, NREQ, "the writer stopped producing");
    cr_assert_leq(p.max_queued, 1024 * 1024 + CHUNK, "memory bounded by high + one write: %zu",
                  p.max_queued);
    cr_assert_eq(p.drains, 0);
    /* Now the reader drains everything; the producer resumes on each drain callback. */
    size_t total = 0;
    char buf[65536];
    uint64_t end = hk_time_now() + (uint64_t)MS(20000);
    while (total < (size_t)NREQ * CHUNK) {
        cr_assert_lt(hk_time_now(), end);
        ssize_t n = read(fds[1], buf, sizeof buf);
        if (n > 0)
            total += (size_t)n;
        hk_loop_run(loop, HK_RUN_NOWAIT);
    }
    while (p.completed < NREQ)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_geq(p.drains, 1);
    cr_assert_geq(p.full_seen, 2);
    cr_assert_leq(p.max_queued, 1024 * 1024 + CHUNK);
    cr_assert_eq(hk_stream_queued(&w), 0);
    close(fds[1]);
    hk_stream_close(&w, NULL);
    finish_loop(loop);
}

/* Half-close: the client writes and shuts down; the server reads, sees EOF, replies. */
struct half {
    hk_stream_t s;
    struct rx rx;
    hk_write_req_t req;
    struct iovec iov;
    int shut_cb, shut_status;
};

static void half_shut(hk_stream_t *s, int status)
{
    struct half *h = (struct half *)s;
    h->shut_cb++;
    h->shut_status = status;
}

static void server_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    struct half *h = (struct half *)s;
    on_read(s, n, buf);
    if (n == 0) { /* reply after the peer finished: half-close lets us write */
        h->iov = (struct iovec){"bye", 3};
        cr_assert_eq(hk_stream_write(s, &h->req, &h->iov, 1, NULL), 0);
        cr_assert_eq(hk_stream_shutdown(s, half_shut), 0);
    }
}

Test(stream, half_close)
{
    hk_loop_t *loop = new_loop();
    int fds[2];
    tcp_pair(loop, "[::1]:0", fds);
    struct half srv = {0}, cli = {0};
    cr_assert_eq(hk_stream_init(loop, &srv.s, fds[0]), 0);
    cr_assert_eq(hk_stream_init(loop, &cli.s, fds[1]), 0);
    srv.s.data = &srv.rx;
    cli.s.data = &cli.rx;
    cr_assert_eq(hk_stream_read_start(&srv.s, NULL, server_read), 0);
    cr_assert_eq(hk_stream_read_start(&cli.s, NULL, on_read), 0);
    cli.iov = (struct iovec){"hello", 5};
    cr_assert_eq(hk_stream_write(&cli.s, &cli.req, &cli.iov, 1, NULL), 0);
    cr_assert_eq(hk_stream_shutdown(&cli.s, half_shut), 0);
    cr_assert_eq(hk_stream_shutdown(&cli.s, half_shut), -EALREADY);
    cr_assert_eq(hk_stream_write(&cli.s, &cli.req, &cli.iov, 1, NULL), -EPIPE);
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    while (!cli.rx.eof || !srv.shut_cb) {
        cr_assert_lt(hk_time_now(), end);
        hk_loop_run(loop, HK_RUN_ONCE);
    }
    cr_assert_eq(srv.rx.len, 5);
    cr_assert(memcmp(srv.rx.data, "hello", 5) == 0);
    cr_assert_eq(srv.rx.eof, 1);
    cr_assert_eq(cli.rx.len, 3);
    cr_assert(memcmp(cli.rx.data, "bye", 3) == 0);
    cr_assert_eq(cli.shut_cb, 1);
    cr_assert_eq(cli.shut_status, 0);
    cr_assert_eq(srv.shut_status, 0);
    cr_assert_eq(cli.rx.errors + srv.rx.errors, 0);
    hk_stream_close(&srv.s, NULL);
    hk_stream_close(&cli.s, NULL);
    finish_loop(loop);
}

/* Peer reset: the error reaches the read callback once; queued writes fail with it. */
Test(stream, peer_reset)
{
    hk_loop_t *loop = new_loop();
    int fds[2];
    tcp_pair(loop, "127.0.0.1:0", fds);
    hk_stream_t s;
    struct rx rx = {0};
    cr_assert_eq(hk_stream_init(loop, &s, fds[1]), 0);
    s.data = &rx;
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0);
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(fds[0], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fds[0]); /* RST */
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    while (!rx.errors && !rx.eof) {
        cr_assert_lt(hk_time_now(), end);
        hk_loop_run(loop, HK_RUN_ONCE);
    }
    cr_assert_eq(rx.errors, 1);
    cr_assert_eq(rx.last_err, -ECONNRESET, "got %s", hk_err_name(rx.last_err));
    settle(loop);
    cr_assert_eq(rx.errors, 1, "the error is delivered once");
    cr_assert_eq(rx.eof, 0);
    hk_write_req_t req;
    struct iovec iov = {"x", 1};
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 1, on_written), -ECONNRESET,
                 "writes after the error fail at once, without a callback");
    hk_stream_close(&s, NULL);
    finish_loop(loop);
}

/* A write into a reset connection: the queued request fails, the reader hears it once. */
Test(stream, write_to_reset_peer)
{
    hk_loop_t *loop = new_loop();
    int fds[2];
    tcp_pair(loop, "127.0.0.1:0", fds);
    hk_stream_t s;
    struct rx rx = {0};
    cr_assert_eq(hk_stream_init(loop, &s, fds[1]), 0);
    s.data = &rx;
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(fds[0], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fds[0]);
    usleep(10000);
    static hk_write_req_t reqs[64];
    struct wr w = {0};
    int r = 0, queued = 0;
    for (int i = 0; i < 64 && r >= 0; i++) {
        reqs[i].data = &w;
        r = hk_stream_write(&s, &reqs[i], &chunk_iov, 1, on_written);
        if (r >= 0)
            queued++;
    }
    cr_assert_gt(queued, 0);
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0);
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    while (w.done < queued || !rx.errors) {
        cr_assert_lt(hk_time_now(), end);
        hk_loop_run(loop, HK_RUN_ONCE);
    }
    cr_assert_eq(rx.errors, 1);
    cr_assert(w.status == -EPIPE || w.status == -ECONNRESET, "write status %s",
              hk_err_name(w.status));
    hk_stream_close(&s, NULL);
    finish_loop(loop);
}

Test(stream, close_cancels_writes)
{
    hk_loop_t *loop = new_loop();
    int fds[2];
    tcp_pair(loop, "127.0.0.1:0", fds);
    /* Small socket buffers, so that 4 MiB queue whatever the host's tcp_rmem/wmem allow. */
    int small = 64 * 1024;
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    hk_stream_t s;
    struct rx rx = {0};
    cr_assert_eq(hk_stream_init(loop, &s, fds[0]), 0);
    s.data = &rx;
    static hk_write_req_t reqs[64];
    struct wr w = {0};
    for (int i = 0; i < 64; i++) {
        reqs[i].data = &w;
        cr_assert_geq(hk_stream_write(&s, &reqs[i], &chunk_iov, 1, on_written), 0);
    }
    cr_assert_gt(hk_stream_queued(&s), 0, "the peer reads nothing, so writes queue");
    hk_stream_close(&s, on_closed);
    cr_assert_eq(w.done, 0);
    while (!rx.closed)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(w.done, 64, "every request completes before the close callback");
    cr_assert_eq(w.status, -ECANCELED);
    close(fds[1]);
    finish_loop(loop);
}

static void pipe_shut(hk_stream_t *s, int status);

Test(stream, pipe_stream)
{
    hk_loop_t *loop = new_loop();
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    hk_stream_t rd, wr;
    struct rx rx = {0};
    cr_assert_eq(hk_stream_init(loop, &rd, p[0]), 0);
    cr_assert_eq(hk_stream_init(loop, &wr, p[1]), 0);
    rd.data = &rx;
    cr_assert_eq(hk_stream_read_start(&rd, NULL, on_read), 0);
    struct iovec iov = {"pipe", 4};
    cr_assert_eq(hk_stream_try_write(&wr, &iov, 1), 4);
    int st = 1;
    wr.data = &st;
    cr_assert_eq(hk_stream_shutdown(&wr, pipe_shut), 0);
    while (rx.len < 4)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert(memcmp(rx.data, "pipe", 4) == 0);
    hk_stream_close(&wr, NULL); /* the writer closes: the reader sees EOF */
    while (!rx.eof)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(rx.eof, 1);
    hk_stream_close(&rd, NULL);
    finish_loop(loop);
}

static void pipe_shut(hk_stream_t *s, int status)
{
    *(int *)s->data = status;
}

Test(stream, pipe_shutdown_is_enotsock)
{
    hk_loop_t *loop = new_loop();
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    hk_stream_t wr;
    int status = 1;
    cr_assert_eq(hk_stream_init(loop, &wr, p[1]), 0);
    wr.data = &status;
    cr_assert_eq(hk_stream_shutdown(&wr, pipe_shut), 0);
    cr_assert_eq(status, 1, "never from inside the call");
    while (status == 1)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(status, -ENOTSOCK);
    hk_stream_close(&wr, NULL);
    close(p[0]);
    finish_loop(loop);
}

/* The transport seam: a toy transport that XORs every byte both ways. */
static ssize_t xor_read(hk_stream_t *s, void *buf, size_t len)
{
    ssize_t n = read(s->fd, buf, len);
    if (n < 0)
        return -errno;
    for (ssize_t i = 0; i < n; i++)
        ((char *)buf)[i] ^= 0x5a;
    return n;
}

static ssize_t xor_writev(hk_stream_t *s, const struct iovec *iov, int n)
{
    char tmp[256];
    size_t k = 0;
    for (int i = 0; i < n && k < sizeof tmp; i++)
        for (size_t j = 0; j < iov[i].iov_len && k < sizeof tmp; j++)
            tmp[k++] = ((const char *)iov[i].iov_base)[j] ^ 0x5a;
    (*(int *)s->transport_data)++;
    ssize_t w = write(s->fd, tmp, k);
    return w < 0 ? -errno : w;
}

static const hk_stream_transport_t xor_transport = {.read = xor_read, .writev = xor_writev};

Test(stream, transport_seam)
{
    hk_loop_t *loop = new_loop();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    hk_stream_t a, b;
    struct rx rb = {0};
    int calls_a = 0, calls_b = 0;
    cr_assert_eq(hk_stream_init(loop, &a, sv[0]), 0);
    cr_assert_eq(hk_stream_init(loop, &b, sv[1]), 0);
    cr_assert_eq(hk_stream_set_transport(&a, &xor_transport, &calls_a), 0);
    cr_assert_eq(hk_stream_set_transport(&b, &xor_transport, &calls_b), 0);
    b.data = &rb;
    cr_assert_eq(hk_stream_read_start(&b, NULL, on_read), 0);
    struct iovec iov = {"secret", 6};
    hk_write_req_t req;
    cr_assert_eq(hk_stream_write(&a, &req, &iov, 1, NULL), 0);
    while (rb.len < 6)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert(memcmp(rb.data, "secret", 6) == 0);
    cr_assert_eq(calls_a, 1);
    hk_stream_close(&a, NULL);
    hk_stream_close(&b, NULL);
    finish_loop(loop);
}

Test(stream, errors)
{
    hk_loop_t *loop = new_loop();
    hk_stream_t s;
    cr_assert_eq(hk_stream_init(loop, &s, -1), -EBADF);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(hk_stream_init(loop, &s, sv[0]), 0);
    cr_assert(fcntl(sv[0], F_GETFL) & O_NONBLOCK, "init makes the fd non-blocking");
    cr_assert_eq(hk_stream_read_start(&s, NULL, NULL), -EINVAL);
    cr_assert_eq(hk_stream_read_stop(&s), -EALREADY);
    hk_write_req_t req;
    struct iovec iov = {"x", 1};
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 0, NULL), -EINVAL);
    hk_stream_close(&s, NULL);
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 1, NULL), -EBUSY);
    close(sv[1]);
    finish_loop(loop);
}

/* Fills content with letters and returns an unlinked temporary file holding it. */
static int temp_file(char *content, size_t len)
{
    char tmpl[] = "/tmp/hk-sendfile-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0);
    unlink(tmpl);
    for (size_t i = 0; i < len; i++)
        content[i] = (char)('a' + i % 26);
    cr_assert_eq(write(fd, content, len), (ssize_t)len);
    return fd;
}

/*
 * sendfile requests keep their place among byte writes: header, file range,
 * trailer arrive in order; a range past the end of the file fails with -EIO;
 * other transports refuse it.
 */
Test(stream, sendfile_in_order)
{
    hk_loop_t *loop = new_loop();
    int sv[2];
    stream_socketpair(sv);
    static char content[40000];
    int fd = temp_file(content, sizeof content);

    hk_stream_t a, b;
    struct rx ra = {0}, rb = {0};
    stream_open(loop, &a, &ra, sv[0]);
    stream_open(loop, &b, &rb, sv[1]);
    cr_assert_eq(hk_stream_read_start(&b, NULL, on_read), 0);
    struct iovec head = {"HEAD", 4}, tail = {"TAIL", 4};
    hk_write_req_t r1, r2, r3, r4;
    struct wr w1 = {0}, w2 = {0}, w3 = {0}, w4 = {0};
    r1.data = &w1;
    r2.data = &w2;
    r3.data = &w3;
    r4.data = &w4;
    cr_assert_eq(hk_stream_write(&a, &r1, &head, 1, on_written), 0);
    cr_assert_eq(hk_stream_sendfile(&a, &r2, fd, 10, 30000, on_written), 0);
    cr_assert_eq(hk_stream_write(&a, &r3, &tail, 1, on_written), 0);
    while (rb.len < 30008 || !w3.done)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(w1.status + w2.status + w3.status, 0);
    cr_assert_eq(rb.len, 30008);
    cr_assert(memcmp(rb.data, "HEAD", 4) == 0);
    cr_assert(memcmp(rb.data + 4, content + 10, 30000) == 0);
    cr_assert(memcmp(rb.data + 30004, "TAIL", 4) == 0);

    /* A range beyond the end of the file: the request fails, the stream with it. */
    cr_assert_eq(hk_stream_sendfile(&a, &r4, fd, sizeof content - 5, 100, on_written), 0);
    while (!w4.done)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(w4.status, -EIO);
    cr_assert_eq(hk_stream_sendfile(&a, &r4, -1, 0, 1, on_written), -EINVAL);

    hk_stream_close(&a, on_closed);
    hk_stream_close(&b, on_closed);
    while (!ra.closed || !rb.closed)
        hk_loop_run(loop, HK_RUN_ONCE);

    /* A pipe is not a socket: sendfile requests are refused. */
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    hk_stream_t ps;
    cr_assert_eq(hk_stream_init(loop, &ps, p[1]), 0);
    cr_assert_eq(hk_stream_sendfile(&ps, &r1, fd, 0, 1, on_written), -ENOTSUP);
    hk_stream_close(&ps, NULL);
    close(p[0]);
    close(fd);
    finish_loop(loop);
}

static unsigned segs_out(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    return ti.tcpi_segs_out;
}

/*
 * A corked stream sends nothing until hk_stream_uncork; then a header and the
 * file range behind it leave in one TCP segment (the header with MSG_MORE),
 * in order. Counted with TCP_INFO's segs_out on the sending socket.
 */
Test(stream, cork_sends_header_and_file_in_one_segment)
{
    hk_loop_t *loop = new_loop();
    int fds[2];
    tcp_pair(loop, "127.0.0.1:0", fds);
    int one = 1;
    cr_assert_eq(setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    static char content[4000];
    int fd = temp_file(content, sizeof content);

    hk_stream_t a;
    struct rx ra = {0};
    stream_open(loop, &a, &ra, fds[0]);
    struct iovec head = {"HEAD", 4};
    hk_write_req_t r1, r2;
    struct wr w1 = {0}, w2 = {0};
    r1.data = &w1;
    r2.data = &w2;
    unsigned before = segs_out(fds[0]);
    hk_stream_cork(&a);
    cr_assert_eq(hk_stream_write(&a, &r1, &head, 1, on_written), 0);
    cr_assert_eq(hk_stream_sendfile(&a, &r2, fd, 0, sizeof content, on_written), 0);
    /* Corked, the queued writes hold no writable interest: the loop sees no event. */
    hk_loop_stats_t st0, st1;
    cr_assert_eq(hk_loop_stats(loop, &st0), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(hk_loop_stats(loop, &st1), 0);
    cr_assert_eq(st1.events, st0.events, "%llu events while corked",
                 (unsigned long long)(st1.events - st0.events));
    char buf[8192];
    cr_assert_eq(recv(fds[1], buf, sizeof buf, MSG_DONTWAIT), -1, "sent while corked");
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(a.bytes_written, 0);
    cr_assert_eq(segs_out(fds[0]), before);

    hk_stream_uncork(&a);
    cr_assert_eq(a.bytes_written, 4 + sizeof content);
    cr_assert_eq(segs_out(fds[0]) - before, 1, "header and file in %u segments",
                 segs_out(fds[0]) - before);
    size_t got = 0;
    while (got < 4 + sizeof content) {
        ssize_t n = recv(fds[1], buf + got, sizeof buf - got, 0);
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    cr_assert(memcmp(buf, "HEAD", 4) == 0);
    cr_assert(memcmp(buf + 4, content, sizeof content) == 0);
    while (!w1.done || !w2.done)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(w1.status + w2.status, 0);
    hk_stream_uncork(&a); /* not corked: nothing to do */

    hk_stream_close(&a, on_closed);
    while (!ra.closed)
        hk_loop_run(loop, HK_RUN_ONCE);
    close(fds[1]);
    close(fd);
    finish_loop(loop);
}

static int corked_shut_calls, corked_shut_status;
static void corked_shut(hk_stream_t *s, int status)
{
    (void)s;
    corked_shut_calls++;
    corked_shut_status = status;
}

/*
 * A shutdown asked for while the stream is corked waits behind the held
 * write: the peer sees neither the byte nor EOF until hk_stream_uncork, then
 * both, in that order.
 */
Test(stream, shutdown_waits_for_uncork)
{
    int sv[2];
    hk_stream_t a;
    struct rx ra = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &a, &ra);
    struct iovec x = {"X", 1};
    hk_write_req_t r1;
    struct wr w1 = {0};
    r1.data = &w1;
    hk_stream_cork(&a);
    cr_assert_eq(hk_stream_write(&a, &r1, &x, 1, on_written), 0);
    cr_assert_eq(hk_stream_shutdown(&a, corked_shut), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    char buf[4];
    cr_assert_eq(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), -1, "data or EOF while corked");
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(corked_shut_calls, 0);

    hk_stream_uncork(&a);
    while (!corked_shut_calls)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(corked_shut_status, 0);
    cr_assert_eq(recv(sv[1], buf, sizeof buf, 0), 1);
    cr_assert_eq(buf[0], 'X');
    cr_assert_eq(recv(sv[1], buf, sizeof buf, 0), 0, "EOF after the byte");
    while (!w1.done)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(w1.status, 0);

    hk_stream_close(&a, on_closed);
    while (!ra.closed)
        hk_loop_run(loop, HK_RUN_ONCE);
    close(sv[1]);
    finish_loop(loop);
}

struct uncork_wr {
    int done, status;
};

static void uncork_on_written(hk_write_req_t *req, int status)
{
    struct uncork_wr *w = req->data;
    w->done++;
    w->status = status;
}

static int uncork_closed;
static void uncork_on_closed(hk_stream_t *s)
{
    (void)s;
    uncork_closed = 1;
}

/*
 * hk_stream_uncork on a stream already closed (in the same callback, before
 * the close callback): the held writes are sent to whatever fd now has the
 * stream's old number, and complete with that write's status instead of
 * -ECANCELED.
 */
Test(stream, uncork_after_close_sends_nothing)
{
    hk_loop_t *loop = new_loop();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    hk_stream_t a;
    cr_assert_eq(hk_stream_init(loop, &a, sv[0]), 0);
    struct iovec secret = {"SECRET", 6};
    hk_write_req_t r1;
    struct uncork_wr w1 = {0};
    r1.data = &w1;
    hk_stream_cork(&a);
    cr_assert_eq(hk_stream_write(&a, &r1, &secret, 1, uncork_on_written), 0);
    hk_stream_close(&a, uncork_on_closed);
    /* Another connection of the process gets the freed fd number. */
    int other[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, other), 0);
    cr_assert_eq(other[0], sv[0], "fd number not reused (%d vs %d)", other[0], sv[0]);
    hk_stream_uncork(&a); /* e.g. the end of a response handler that closed on an error */
    run_until(loop, &uncork_closed, 5000);
    cr_expect_eq(w1.done, 1);
    cr_expect_eq(w1.status, -ECANCELED, "status %s", hk_err_name(w1.status));
    char buf[16];
    ssize_t n = recv(other[1], buf, sizeof buf, MSG_DONTWAIT);
    cr_expect_eq(n, -1, "the closed stream's bytes reached an unrelated socket: %.*s", (int)n, buf);
    close(other[0]);
    close(other[1]);
    close(sv[1]);
    finish_loop(loop);
}

/*
 * hk_stream_close removes the registration before it closes the fd. The other
 * order made every close's DEL fail with EBADF (a wasted syscall), and when
 * the file lived on through a dup the registration outlived the stream: its
 * next event forced the loop to rebuild its epoll set.
 */
Test(stream, close_with_dup_leaves_no_registration)
{
    hk_loop_t *loop = new_loop();
    int sv[2];
    stream_socketpair(sv);
    int copy = dup(sv[0]);
    cr_assert_geq(copy, 0);
    hk_stream_t s;
    struct rx rx = {0};
    cr_assert_eq(hk_stream_init(loop, &s, sv[0]), 0);
    s.data = &rx;
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    close_and_wait(loop, &s, &rx);
    cr_assert_eq(write(sv[1], "x", 1), 1); /* the file behind the dup becomes readable */
    settle(loop);
    hk_loop_stats_t st;
    hk_loop_stats(loop, &st);
    cr_expect_eq(st.epoll_rebuilds, 0, "the closed stream's registration outlived it");
    cr_expect_eq(rx.len, 0);
    close(copy);
    close(sv[1]);
    finish_loop(loop);
}

/*
 * A write error found after the read side delivered EOF: the read callback is
 * done with (EOF is its last call), so the error reaches the write callback
 * of the request it failed, once, and the next write returns it. It used to
 * reach the read callback too, after the EOF, when reading was still on.
 */
Test(stream, error_after_eof_goes_to_the_writes)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0);
    cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
    run_until(loop, &rx.eof, 5000);
    close(sv[1]); /* now writing to it fails with EPIPE */
    hk_write_req_t req;
    struct wr w = {0};
    req.data = &w;
    struct iovec iov = {"late", 4};
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 1, on_written), 0);
    run_until(loop, &w.done, 5000);
    settle(loop);
    cr_expect_eq(w.done, 1);
    cr_expect_eq(w.status, -EPIPE, "write status %s", hk_err_name(w.status));
    cr_expect_eq(rx.eof, 1);
    cr_expect_eq(rx.errors, 0, "the read callback got %s after EOF", hk_err_name(rx.last_err));
    cr_expect_eq(hk_stream_write(&s, &req, &iov, 1, on_written), -EPIPE);
    close_and_wait(loop, &s, &rx);
    cr_expect_eq(w.done, 1, "the failed write() had no callback");
    finish_loop(loop);
}

static int drain_calls;
static void count_drain(hk_stream_t *s)
{
    (void)s;
    drain_calls++;
}

/* Writes CHUNK requests (reqs[], data w) until the queue reaches high; returns how many. */
static int fill_to_high(hk_stream_t *s, hk_write_req_t *reqs, int max, struct wr *w)
{
    int r = 0, n = 0;
    while (r != HK_STREAM_FULL) {
        cr_assert_lt(n, max, "the queue never reached the high watermark");
        reqs[n].data = w;
        r = hk_stream_write(s, &reqs[n], &chunk_iov, 1, on_written);
        cr_assert_geq(r, 0, "write: %s", hk_err_name(r));
        n++;
    }
    return n;
}

/* Closes the reader sv1: the n queued requests fail, and no drain may follow, then or at close. */
static void fail_and_expect_no_drain(hk_loop_t *loop, hk_stream_t *s, struct rx *rx, int sv1,
                                     struct wr *w, int n)
{
    close(sv1);
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    RUN_LOOP_WHILE(loop, HK_RUN_ONCE, w->done < n, end, "timed out");
    settle(loop);
    cr_expect(w->status == -EPIPE || w->status == -ECONNRESET, "write status %s",
              hk_err_name(w->status));
    cr_expect_eq(drain_calls, 0, "a drain was reported after the writes failed");
    close_and_wait(loop, s, rx);
    cr_expect_eq(drain_calls, 0);
    finish_loop(loop);
}

/*
 * The queue reached the high watermark, then the peer went away: the error
 * empties the queue (every request fails with it), which is no drain. The
 * drain callback used to run all the same, telling the producer to go on.
 */
Test(stream, no_drain_after_an_error)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    drain_calls = 0;
    cr_assert_eq(hk_stream_set_watermarks(&s, 4 * CHUNK, CHUNK, count_drain), 0);
    static hk_write_req_t reqs[64];
    struct wr w = {0};
    int n = fill_to_high(&s, reqs, 64, &w);
    /* The reader goes away without reading: the queued writes fail. */
    fail_and_expect_no_drain(loop, &s, &rx, sv[1], &w, n);
}

/*
 * As above, but bytes are written after HK_STREAM_FULL before the peer goes.
 * A drain needs a write since the full queue (HK__S_WROTE) and the test above
 * gives none, so it passes whether or not the error clears the full state:
 * here only that clearing keeps the emptied queue from looking drained.
 */
Test(stream, no_drain_after_an_error_that_follows_writing)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    /* A small send buffer: one refill takes far less than high - low off the queue. */
    int small = 16 * 1024;
    cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    drain_calls = 0;
    cr_assert_eq(hk_stream_set_watermarks(&s, 8 * CHUNK, CHUNK, count_drain), 0);
    static hk_write_req_t reqs[64];
    struct wr w = {0};
    int n = fill_to_high(&s, reqs, 64, &w);
    /* The reader takes what the kernel holds, so the stream writes more from its queue. */
    uint64_t before = s.bytes_written, end = hk_time_now() + (uint64_t)MS(5000);
    static char sink[CHUNK];
    while (s.bytes_written == before) {
        cr_assert_lt(hk_time_now(), end, "the stream wrote nothing more");
        while (read(sv[1], sink, sizeof sink) > 0)
            ;
        hk_loop_run(loop, HK_RUN_NOWAIT);
    }
    cr_assert_gt(hk_stream_queued(&s), CHUNK, "the queue drained for real: %zu bytes left",
                 hk_stream_queued(&s));
    cr_assert_eq(drain_calls, 0);
    /* Then the reader goes away: what is still queued fails. */
    fail_and_expect_no_drain(loop, &s, &rx, sv[1], &w, n);
}

/*
 * A toy engine transport that, like OpenSSL on a full socket, takes what it
 * is offered, cannot send it, and asks for writability: the stream must offer
 * the bytes again (hk_stream_try_write queues a copy). It stays stuck while
 * *block is set; the test runs the loop only after clearing it.
 */
static ssize_t seal_writev(hk_stream_t *s, const struct iovec *iov, int n)
{
    int *block = s->transport_data;
    if (*block) {
        hk_stream_transport_want(s, HK_WRITABLE);
        return -EAGAIN;
    }
    ssize_t w = writev(s->fd, iov, n);
    return w < 0 ? -errno : w;
}

static ssize_t seal_read(hk_stream_t *s, void *buf, size_t len)
{
    ssize_t n = read(s->fd, buf, len);
    return n < 0 ? -errno : n;
}

static const hk_stream_transport_t seal_transport = {.read = seal_read, .writev = seal_writev};

/* Runs the loop and reads sv1 until want bytes arrived and the stream's queue is empty. */
static size_t read_all(hk_loop_t *loop, hk_stream_t *s, int sv1, char *buf, size_t have,
                       size_t want)
{
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    while (have < want || hk_stream_queued(s) > 0) {
        cr_assert_lt(hk_time_now(), end, "timed out with %zu of %zu bytes", have, want);
        hk_loop_run(loop, HK_RUN_NOWAIT);
        ssize_t n = read(sv1, buf + have, want - have);
        if (n > 0)
            have += (size_t)n;
        else if (n < 0)
            usleep(1000);
    }
    settle(loop);
    return have;
}

/*
 * The copy hk_stream_try_write queues counts against the watermarks, but
 * try_write returns bytes and has no HK_STREAM_FULL to say the queue is full:
 * it must not arm the drain callback for a crossing the caller was never told
 * of (it used to). While the copy is queued, try_write says -EAGAIN and
 * hk_stream_write reports HK_STREAM_FULL, which does arm it.
 */
Test(stream, try_write_copy_arms_no_unreported_drain)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    int block = 1;
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    cr_assert_eq(hk_stream_set_transport(&s, &seal_transport, &block), 0);
    drain_calls = 0;
    cr_assert_eq(hk_stream_set_watermarks(&s, 8, 0, count_drain), 0);
    char got[64];
    struct iovec a = {"ABCDEFGHIJKL", 12};
    cr_assert_eq(hk_stream_try_write(&s, &a, 1), 12, "the copy is queued");
    cr_assert_eq(hk_stream_queued(&s), 12);
    cr_assert_eq(hk_stream_try_write(&s, &a, 1), -EAGAIN, "behind the copy");
    block = 0;
    size_t have = read_all(loop, &s, sv[1], got, 0, 12);
    cr_expect_eq(drain_calls, 0, "a drain for a full queue try_write never reported");

    /* The same, with a write behind the copy: that write reports the full queue. */
    block = 1;
    cr_assert_eq(hk_stream_try_write(&s, &a, 1), 12);
    struct iovec b = {"MNOP", 4};
    hk_write_req_t req;
    struct wr w = {0};
    req.data = &w;
    cr_assert_eq(hk_stream_write(&s, &req, &b, 1, on_written), HK_STREAM_FULL);
    block = 0;
    have = read_all(loop, &s, sv[1], got, have, 28);
    cr_expect_eq(w.done, 1);
    cr_expect_eq(w.status, 0);
    cr_expect_eq(drain_calls, 1, "the reported full queue drained once");
    cr_expect(memcmp(got, "ABCDEFGHIJKLABCDEFGHIJKLMNOP", 28) == 0, "got %.28s", got);
    close_and_finish(loop, &s, &rx, sv[1]);
}

/* A caller's allocator that has no room right now: it pauses reading instead of giving a buffer. */
static int pausing_allocs;
static void alloc_pause(hk_stream_t *s, size_t suggested, hk_buf_t *buf)
{
    (void)suggested;
    pausing_allocs++;
    cr_assert_eq(hk_stream_read_stop(s), 0);
    buf->base = NULL;
    buf->len = 0;
}

/*
 * hk_stream_read_stop called from the alloc callback: reading is paused, not
 * ended, so the stream neither reads nor calls the read callback, and
 * hk_stream_read_start resumes it later. The stream used to deliver -ENOBUFS
 * after the stop and mark the read side done, so reading could never resume.
 */
Test(stream, read_stop_in_alloc_pauses)
{
    int sv[2];
    hk_stream_t b;
    struct rx rb = {0};
    hk_loop_t *loop = open_on_pair(sv, 1, &b, &rb);
    pausing_allocs = 0;
    cr_assert_eq(hk_stream_read_start(&b, alloc_pause, on_read), 0);
    cr_assert_eq(write(sv[0], "0123456789", 10), 10);
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    RUN_LOOP_WHILE(loop, HK_RUN_ONCE, !pausing_allocs, end, "timed out");
    settle(loop);
    cr_expect_eq(pausing_allocs, 1, "the paused stream kept asking for buffers");
    cr_expect_eq(rb.errors, 0, "the read callback got %s after read_stop",
                 hk_err_name(rb.last_err));
    cr_expect_eq(rb.len, 0);
    /* Resumed with a buffer: the bytes the kernel kept arrive. */
    cr_assert_eq(hk_stream_read_start(&b, alloc_small, on_read), 0);
    close(sv[0]);
    run_until(loop, &rb.eof, 5000);
    cr_expect_eq(rb.len, 10);
    cr_expect(memcmp(rb.data, "0123456789", 10) == 0);
    close_and_finish(loop, &b, &rb, -1);
}

/*
 * A transport whose writes never get through (-EAGAIN) and which never touches
 * the fd: the queued write makes the stream ask epoll for writability, a
 * change that is queued and applied before the loop sleeps.
 */
static int stuck_writes;
static ssize_t stuck_writev(hk_stream_t *s, const struct iovec *iov, int n)
{
    (void)s;
    (void)iov;
    (void)n;
    stuck_writes++;
    return -EAGAIN;
}

static const hk_stream_transport_t stuck_transport = {.read = seal_read, .writev = stuck_writev};

/*
 * An epoll change that fails when the loop applies it (here EBADF: the fd was
 * closed behind the stream's back; ENOMEM or ENOSPC take the same path)
 * reaches the stream as a bare HK_ERROR with its watcher stopped. The stream
 * must come out of that failed, once, with the -errno, and not re-queue the
 * change for ever.
 */
Test(stream, failed_epoll_change_fails_the_stream_once)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    cr_assert_eq(hk_stream_set_transport(&s, &stuck_transport, NULL), 0);
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0); /* registered: EPOLLIN */
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    close(sv[0]); /* behind the stream's back: the next epoll_ctl on it says EBADF */
    stuck_writes = 0;
    hk_write_req_t req;
    struct wr w = {0};
    req.data = &w;
    struct iovec iov = {"x", 1};
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 1, on_written), 0); /* queues EPOLLOUT */
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    RUN_LOOP_WHILE(loop, HK_RUN_NOWAIT, !w.done, end, "the failed change never failed the stream");
    hk_loop_stats_t st0, st1;
    hk_loop_stats(loop, &st0);
    settle(loop);
    hk_loop_stats(loop, &st1);
    cr_expect_eq(w.status, -EBADF, "write status %s", hk_err_name(w.status));
    cr_expect_eq(rx.errors, 1);
    cr_expect_eq(rx.last_err, -EBADF, "read error %s", hk_err_name(rx.last_err));
    cr_expect_eq(hk_stream_write(&s, &req, &iov, 1, on_written), -EBADF);
    cr_expect_eq(st1.callbacks, st0.callbacks, "the dead stream is still being called");
    cr_expect_leq(stuck_writes, 1);
    close_and_finish(loop, &s, &rx, sv[1]); /* its close(2) of the number finds EBADF */
}

/*
 * A pipe whose reader has gone: write(2) raises SIGPIPE, whose default action
 * kills the process. Sockets avoid it with MSG_NOSIGNAL; a pipe stream must
 * too, and report -EPIPE instead, leaving no SIGPIPE pending and the thread's
 * signal mask as it was.
 */
Test(stream, pipe_without_reader_is_epipe_not_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    hk_loop_t *loop = new_loop();
    int p[2], q[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_eq(pipe2(q, O_NONBLOCK | O_CLOEXEC), 0);
    close(p[0]);
    close(q[0]);
    hk_stream_t s, t;
    struct rx rs = {0}, rt = {0};
    stream_open(loop, &s, &rs, p[1]);
    stream_open(loop, &t, &rt, q[1]);
    hk_write_req_t req;
    struct wr w = {0};
    req.data = &w;
    struct iovec iov = {"gone", 4};
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 1, on_written), 0); /* tried at once */
    cr_assert_eq(hk_stream_try_write(&t, &iov, 1), -EPIPE);
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    RUN_LOOP_WHILE(loop, HK_RUN_NOWAIT, !w.done, end, "timed out");
    cr_expect_eq(w.status, -EPIPE, "write status %s", hk_err_name(w.status));
    sigset_t pending, mask;
    cr_assert_eq(sigpending(&pending), 0);
    cr_expect(!sigismember(&pending, SIGPIPE), "a SIGPIPE was left pending");
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
    cr_expect(!sigismember(&mask, SIGPIPE), "SIGPIPE was left blocked");
    hk_stream_close(&s, on_closed);
    hk_stream_close(&t, on_closed);
    run_until(loop, &rs.closed, 5000);
    run_until(loop, &rt.closed, 5000);
    finish_loop(loop);
}

/*
 * hk_stream_try_write on a corked stream: the cork holds every write for the
 * uncork, and try_write cannot queue, so it says -EAGAIN (as for a full fd)
 * rather than send the bytes ahead of the segment the cork is building.
 */
Test(stream, try_write_waits_for_uncork)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    struct iovec iov = {"hdr", 3};
    hk_stream_cork(&s);
    cr_expect_eq(hk_stream_try_write(&s, &iov, 1), -EAGAIN);
    char buf[8];
    cr_expect_eq(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), -1, "sent while corked");
    cr_expect_eq(s.bytes_written, 0);
    hk_stream_uncork(&s);
    cr_expect_eq(hk_stream_try_write(&s, &iov, 1), 3);
    cr_expect_eq(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), 3);
    close_and_finish(loop, &s, &rx, sv[1]);
}

/*
 * low == high is allowed: a write that brings the queue exactly to high
 * returns HK_STREAM_FULL, and the queue is then already "at low". The drain
 * callback must still wait until bytes are written, not fire at the next
 * notification (here: a read) with nothing sent.
 */
Test(stream, drain_needs_a_write_when_low_equals_high)
{
    int sv[2];
    hk_stream_t s;
    struct rx rx = {0};
    hk_loop_t *loop = open_on_pair(sv, 0, &s, &rx);
    drain_calls = 0;
    static char hundred[100];
    struct iovec iov = {hundred, sizeof hundred};
    cr_assert_eq(hk_stream_set_watermarks(&s, sizeof hundred, sizeof hundred, count_drain), 0);
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0);
    hk_stream_cork(&s); /* nothing can be written: the queue stays at 100 */
    hk_write_req_t req;
    struct wr w = {0};
    req.data = &w;
    cr_assert_eq(hk_stream_write(&s, &req, &iov, 1, on_written), HK_STREAM_FULL);
    cr_assert_eq(write(sv[1], "r", 1), 1); /* wakes the stream: its notify runs */
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    RUN_LOOP_WHILE(loop, HK_RUN_ONCE, rx.len < 1, end, "timed out");
    settle(loop);
    cr_expect_eq(s.bytes_written, 0);
    cr_expect_eq(drain_calls, 0, "drain reported with nothing written");
    hk_stream_uncork(&s);
    RUN_LOOP_WHILE(loop, HK_RUN_ONCE, !w.done, end, "timed out");
    settle(loop);
    cr_expect_eq(w.status, 0);
    cr_expect_eq(drain_calls, 1, "no drain after the queue was written");
    close_and_finish(loop, &s, &rx, sv[1]);
}
