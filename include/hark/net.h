/*
 * hark/net.h: buffered byte streams, TCP and Unix listeners and connectors,
 * and multi-loop accept.
 *
 * A stream (hk_stream_t) wraps any non-blocking fd: TCP or Unix sockets,
 * pipes, ptys. Reading hands the caller either a library buffer (one per
 * thread, valid during the callback only: no allocation per connection) or a
 * buffer the caller supplies. Writing queues caller-embedded requests that
 * point at the caller's bytes (zero copy, no allocation) and flushes them with
 * one writev per wake-up; high and low watermarks on the queued bytes give
 * backpressure. Errors and end-of-file are delivered once.
 *
 * Everything here follows loop.h: structs are embedded by the caller, calls
 * return >= 0 or -errno, a call that fails never invokes its callback, and
 * memory may be reused only after the close callback. Nothing here is
 * thread-safe except where stated (hk_accept_group_*).
 *
 * The transport seam (for TLS): a stream moves bytes through a transport
 * (hk_stream_transport_t), by default read(2) and writev(2)/sendmsg(2) on the
 * fd. A TLS layer installs its own transport with hk_stream_set_transport():
 * its read returns plaintext, its writev encrypts, and when the TLS engine
 * needs the other direction (a handshake or renegotiation reading to write,
 * or writing to read) it returns -EAGAIN and sets the wanted readiness with
 * hk_stream_transport_want(). Plaintext the engine has buffered (epoll cannot
 * see it) is reported by the transport's pending() and read without waiting
 * for the fd. The stream's queue, watermarks, EOF/error rules and close stay
 * the same above the transport.
 */
#ifndef HARK_NET_H
#define HARK_NET_H

#include "hark/api.h"
#include "hark/loop.h"
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Parses a numeric address: "127.0.0.1:8080", "[::1]:0", "[fe80::1%2]:80"
 * (scope as a number), or ":8080" / "*:8080" (IPv4 any) and "[::]:8080".
 * No name resolution (that is hark/dns.h). Errors: -EINVAL.
 */
HK_API int hk_addr_parse(const char *str, struct sockaddr_storage *ss, socklen_t *len);

/*
 * Formats an IPv4/IPv6/Unix address as "1.2.3.4:80", "[::1]:80" or the Unix
 * path into buf (size >= 64 recommended). Returns the length, or -ENOSPC /
 * -EAFNOSUPPORT.
 */
HK_API int hk_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Streams                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct hk_stream hk_stream_t;
typedef struct hk_write_req hk_write_req_t;

typedef struct hk_buf {
    char *base;
    size_t len;
} hk_buf_t;

/*
 * Supplies the buffer for the next read (suggested = the library's buffer
 * size, 64 KiB). Leave buf->len 0 (or base NULL) to skip this read: the
 * read callback then gets -ENOBUFS, once, and reading stops. To pause instead
 * (no room now, more later), call hk_stream_read_stop here: the read is
 * skipped without a read callback (a buffer set anyway is not used) and
 * hk_stream_read_start resumes.
 */
typedef void (*hk_stream_alloc_cb)(hk_stream_t *stream, size_t suggested, hk_buf_t *buf);

/*
 * The result of a read:
 *   nread > 0        buf->base[0 .. nread) holds the data. A library buffer
 *                    is valid only until the callback returns.
 *   nread == 0       end of file: the peer shut down its side. Delivered
 *                    once; reading stops (writing may go on: half-close).
 *   nread == -EAGAIN nothing was there after all (caller buffers only: the
 *                    buffer is handed back unused). Not an error.
 *   nread < 0        -errno (-ECONNRESET, ...). Delivered once; the stream
 *                    is dead: close it. Pending writes fail with the same code.
 * EOF, an error and -ENOBUFS are each the read callback's last call. An error
 * found after EOF (a write to a peer that has gone) is not a read result: it
 * reaches the user once per pending operation, as the status of the write
 * requests it fails and of a pending shutdown, and later calls
 * (hk_stream_write, hk_stream_shutdown) return it.
 */
typedef void (*hk_stream_read_cb)(hk_stream_t *stream, ssize_t nread, const hk_buf_t *buf);

/* A write request finished: status 0 (all bytes written), or -errno, or -ECANCELED (closed). */
typedef void (*hk_write_cb)(hk_write_req_t *req, int status);

/*
 * The queue fell to the low watermark after having reached the high one, by
 * being written. Never after an error or close emptied it: the failed
 * requests' callbacks report that, and no drain callback follows.
 */
typedef void (*hk_stream_drain_cb)(hk_stream_t *stream);

/* The queued writes are flushed and the write side is shut down (status 0 or -errno). */
typedef void (*hk_stream_shutdown_cb)(hk_stream_t *stream, int status);

typedef void (*hk_stream_close_cb)(hk_stream_t *stream);

/*
 * A transport moves bytes between the stream and the fd (see the top of this
 * file). Every function returns >= 0 or -errno; -EAGAIN means "not now".
 * read returns 0 at end of file. writev may write part of the data.
 * shutdown (may be NULL) ends the write side once the queue is flushed; it
 * may return -EAGAIN to be called again when the fd is writable (a TLS
 * close_notify). pending (may be NULL) returns bytes readable without the fd.
 * close (may be NULL) releases the transport's state; the stream closes the fd.
 */
typedef struct hk_stream_transport {
    ssize_t (*read)(hk_stream_t *stream, void *buf, size_t len);
    ssize_t (*writev)(hk_stream_t *stream, const struct iovec *iov, int iovcnt);
    int (*shutdown)(hk_stream_t *stream);
    size_t (*pending)(hk_stream_t *stream);
    void (*close)(hk_stream_t *stream);
} hk_stream_transport_t;

struct hk_write_req {
    void *data;          /* free for the caller */
    hk_stream_t *stream; /* read-only */
    const struct iovec *_iov;
    int _iovcnt;
    int _idx;     /* first iovec not fully written */
    size_t _off;  /* bytes of _iov[_idx] already written */
    size_t _left; /* bytes not yet written */
    int _status;
    int _file_fd;      /* hk_stream_sendfile: the file, else -1 */
    int64_t _file_off; /* its next offset */
    hk_write_cb _cb;
    hk_write_req_t *_next;
};

struct hk_stream {
    hk_io_t _io; /* first member: the stream's fd watcher */
    void *data;  /* free for the caller */
    int fd;      /* read-only */
    unsigned _flags;
    hk_stream_alloc_cb _alloc_cb;
    hk_stream_read_cb _read_cb;
    hk_stream_drain_cb _drain_cb;
    hk_stream_shutdown_cb _shutdown_cb;
    hk_stream_close_cb _close_cb;
    hk_write_req_t *_head, *_tail;      /* queue */
    hk_write_req_t *_done, *_done_tail; /* finished, callbacks pending */
    size_t _queued;                     /* bytes not yet written */
    size_t _high, _low;
    int _error;       /* first error seen (sticky) */
    int _shut_status; /* result of the shutdown, for its callback */
    unsigned _want;   /* readiness the transport asked for */
    const hk_stream_transport_t *_transport;
    void *transport_data; /* for the transport */
    hk_defer_t _defer;
    uint64_t bytes_read, bytes_written; /* read-only counters */
};

/* Default watermarks: writes report "full" at 1 MiB queued, drain at 256 KiB. */
#define HK_STREAM_HIGH_DEFAULT ((size_t)1 << 20)
#define HK_STREAM_LOW_DEFAULT ((size_t)256 << 10)
/* The library read buffer (one per thread). */
#define HK_STREAM_READ_BUF ((size_t)64 << 10)

/* hk_stream_write() returns this (> 0, a success) when the queue reached the high watermark. */
#define HK_STREAM_FULL 1

/*
 * Wraps a non-blocking fd (set O_NONBLOCK yourself, or let hark: init sets
 * it). The stream owns the fd from now on: hk_stream_close closes it. No
 * reading until hk_stream_read_start. Errors: -EBADF.
 */
HK_API int hk_stream_init(hk_loop_t *loop, hk_stream_t *stream, int fd);

/*
 * hk_stream_init for an fd the caller knows to be a non-blocking socket, as
 * hk_listener, hk_accept_group and hk_connect hand out: it skips the two
 * system calls (fcntl F_GETFL, fstat) hk_stream_init spends finding that
 * out. Anything else is a caller bug: a blocking fd would block the loop.
 */
HK_API int hk_stream_init_socket(hk_loop_t *loop, hk_stream_t *stream, int fd);

/*
 * Starts reading. alloc_cb NULL: the library's per-thread buffer (valid only
 * during the read callback; copy what you keep). Errors: -EINVAL (no
 * read_cb), -EPIPE (EOF or an error was already delivered), -EBUSY (closing).
 */
HK_API int hk_stream_read_start(hk_stream_t *stream, hk_stream_alloc_cb alloc_cb,
                                hk_stream_read_cb read_cb);

/* Stops reading (data stays in the kernel: backpressure). 0 or -EALREADY. */
HK_API int hk_stream_read_stop(hk_stream_t *stream);

/*
 * Queues iov[0..iovcnt) for writing. Zero copy: the iovec array and the bytes
 * it points at must stay valid and unchanged until cb(req, status) runs. When
 * nothing is queued the data is written at once (no epoll_ctl when it all
 * fits); either way cb runs later from the loop, never from inside this call.
 * Requests complete in order. Returns 0, or HK_STREAM_FULL when the queue
 * now holds at least the high watermark (stop producing until the drain
 * callback). Errors: -EINVAL (iovcnt < 1 or > IOV_MAX), -EPIPE (after
 * shutdown), -EBUSY (closing), or the stream's earlier -errno (a dead peer).
 * A peer that has gone is -EPIPE (or -ECONNRESET), never SIGPIPE: sockets
 * are written with MSG_NOSIGNAL, and a pipe's writes run with SIGPIPE blocked
 * in the calling thread (a signal they raise is consumed, unless the thread
 * blocked SIGPIPE itself; hk_stream_sendfile is the exception, see there).
 */
HK_API int hk_stream_write(hk_stream_t *stream, hk_write_req_t *req, const struct iovec *iov,
                           int iovcnt, hk_write_cb cb);

/*
 * Queues len bytes of the file fd from offset, sent with sendfile(2) in order
 * with the other writes: the kernel moves page-cache pages to the socket, no
 * copy through user space. fd must stay open until cb. Counted by the
 * watermarks like any write. For the fd's own transport only (a TLS stream
 * has hk_tls_sendfile). A file shorter than offset + len fails the request
 * with -EIO. sendfile(2) has no MSG_NOSIGNAL: a process that sends files to
 * peers that may reset must ignore SIGPIPE (the failure is then -EPIPE).
 * Returns 0 or HK_STREAM_FULL. Errors: -EINVAL (len 0, fd < 0),
 * -ENOTSUP (another transport), and those of hk_stream_write.
 */
HK_API int hk_stream_sendfile(hk_stream_t *stream, hk_write_req_t *req, int fd, int64_t offset,
                              size_t len, hk_write_cb cb);

/*
 * Corks the stream: writes queue without being sent until hk_stream_uncork,
 * which sends them together, in as few system calls and TCP segments as it
 * can. For a response whose header and body are two requests (a header, then
 * hk_stream_sendfile of the body): uncorked, the header leaves at once in a
 * small segment of its own (TCP_NODELAY); corked, it goes out with MSG_MORE
 * and shares a segment with the file's first bytes. Corks do not nest; a
 * corked stream still counts its queue against the watermarks, and
 * hk_stream_try_write on it sends nothing and returns -EAGAIN. After
 * hk_stream_close an uncork sends nothing: the held writes are cancelled.
 */
HK_API void hk_stream_cork(hk_stream_t *stream);
HK_API void hk_stream_uncork(hk_stream_t *stream);

/*
 * Writes what the fd takes now, without queueing: returns the bytes written
 * (maybe fewer than asked), or -EAGAIN when the queue is not empty (ordering),
 * the stream is corked (writes wait for the uncork) or the fd is full, or
 * -errno. Over TLS, a full socket may leave OpenSSL with
 * the first bytes sealed in a record it must be offered again: the stream then
 * queues a copy of the rest of iov and returns its whole length, so that the
 * caller never has to offer the same bytes twice. That copy (at most one: it
 * is only made into an empty queue) counts in hk_stream_queued and against
 * the high watermark, but try_write has no HK_STREAM_FULL to return, so it
 * never arms the drain callback: while the copy is queued, try_write returns
 * -EAGAIN and hk_stream_write returns HK_STREAM_FULL if the queue is at the
 * high watermark, and only then does the drain callback follow.
 */
HK_API ssize_t hk_stream_try_write(hk_stream_t *stream, const struct iovec *iov, int iovcnt);

/*
 * Backpressure: hk_stream_write returns HK_STREAM_FULL once the queued bytes
 * reach high; cb runs (once per crossing) when they are written down to low
 * or below, not when an error fails them. low == high is allowed: cb then
 * runs once bytes were written after the last HK_STREAM_FULL and the queue is
 * at low or below. Errors: -EINVAL (low > high or high == 0).
 */
HK_API int hk_stream_set_watermarks(hk_stream_t *stream, size_t high, size_t low,
                                    hk_stream_drain_cb cb);

/* Bytes queued and not yet written. */
HK_API size_t hk_stream_queued(const hk_stream_t *stream);

/*
 * Half-close: once every queued write is flushed, shuts down the write side
 * (shutdown(SHUT_WR) for sockets; for a pipe or pty, -ENOTSOCK is reported
 * to cb). Reading goes on. Errors: -EALREADY (shutdown pending or done),
 * -EBUSY (closing), the stream's earlier -errno.
 */
HK_API int hk_stream_shutdown(hk_stream_t *stream, hk_stream_shutdown_cb cb);

/*
 * Closes the stream and its fd. Pending write requests complete with
 * -ECANCELED (written ones with 0), then cb (may be NULL) runs; the memory
 * may be reused from cb on. Closing twice is misuse.
 */
HK_API void hk_stream_close(hk_stream_t *stream, hk_stream_close_cb cb);

/*
 * Installs a transport (NULL restores the fd's own). Call before reading or
 * writing. transport_data is the transport's own pointer.
 */
HK_API int hk_stream_set_transport(hk_stream_t *stream, const hk_stream_transport_t *transport,
                                   void *transport_data);

/*
 * For transports: the readiness (HK_READABLE, HK_WRITABLE, or 0 to clear) the
 * engine needs before its last -EAGAIN can make progress. The stream adds it
 * to its interest until the next transport call.
 */
HK_API void hk_stream_transport_want(hk_stream_t *stream, unsigned events);

/* Socket options for connected TCP sockets. Errors: -errno of setsockopt. */
HK_API int hk_tcp_nodelay(int fd, int on);
/* idle_s > 0: probes after idle_s seconds, every idle_s/3 (>= 1), 3 probes. 0 turns it off. */
HK_API int hk_tcp_keepalive(int fd, int idle_s);

/* ------------------------------------------------------------------------ */
/* Listeners                                                                */
/* ------------------------------------------------------------------------ */

typedef struct hk_listener hk_listener_t;

/*
 * A connection was accepted: fd is non-blocking and close-on-exec, and is
 * the callback's to keep (wrap it with hk_stream_init_socket) or close.
 */
typedef void (*hk_listen_cb)(hk_listener_t *listener, int fd);
typedef void (*hk_listener_close_cb)(hk_listener_t *listener);

/* Flags of hk_tcp_listen, hk_unix_listen and hk_listener_open. */
#define HK_LISTEN_REUSEPORT 0x01u /* SO_REUSEPORT before bind */
#define HK_LISTEN_V6ONLY 0x02u    /* IPV6_V6ONLY on an IPv6 socket */
/* Set on the listening socket, which Linux copies into every accepted one (no call per accept). */
#define HK_LISTEN_NODELAY 0x04u   /* TCP_NODELAY on every accepted socket */
#define HK_LISTEN_KEEPALIVE 0x08u /* keep-alive (60 s) on every accepted socket */
#define HK_LISTEN_EXCLUSIVE 0x10u /* watch with EPOLLEXCLUSIVE (fd shared by loops) */
#define HK_LISTEN_SHARED 0x20u    /* hk_listener_open: the fd is not ours; close leaves it open */

/* Accepts per wake-up by default, and the EMFILE/ENFILE back-off. */
#define HK_LISTEN_BATCH_DEFAULT 32u
#define HK_LISTEN_BACKOFF_NS (UINT64_C(100) * 1000 * 1000)

/* Per-listener counters (read-only). */
typedef struct hk_listen_stats {
    uint64_t wakeups;  /* times the listener's callback ran */
    uint64_t accepts;  /* connections accepted */
    uint64_t empty;    /* wake-ups whose accept queue was empty (the herd); not back-offs */
    uint64_t backoffs; /* EMFILE/ENFILE/ENOBUFS/ENOMEM: accepting paused */
    uint64_t errors;   /* other accept errors (ECONNABORTED, ...) */
} hk_listen_stats_t;

struct hk_listener {
    hk_io_t _io;
    void *data; /* free for the caller */
    int fd;     /* read-only: the listening socket */
    unsigned _flags;
    unsigned _batch;
    unsigned _state;
    uint64_t _backoff_ns;
    hk_listen_cb _cb;
    hk_listener_close_cb _close_cb;
    hk_timer_t _timer;
    hk_listen_stats_t stats; /* read-only */
};

/*
 * Binds and listens on a numeric address ("127.0.0.1:0", "[::1]:0"; see
 * hk_addr_parse) and starts accepting: up to a batch of accept4 calls per
 * wake-up; on EMFILE/ENFILE (and ENOBUFS/ENOMEM) accepting pauses for
 * HK_LISTEN_BACKOFF_NS and resumes on a timer, counted in stats.backoffs,
 * never a busy loop. SO_REUSEADDR is always set. backlog <= 0 gives SOMAXCONN.
 * Errors: -EINVAL (address, flags), the -errno of socket/bind/listen
 * (-EADDRINUSE, ...), or of hk_io_start.
 */
HK_API int hk_tcp_listen(hk_loop_t *loop, hk_listener_t *listener, const char *addr, int backlog,
                         unsigned flags, hk_listen_cb cb);

/*
 * Listens on a Unix socket path (an existing socket file is not removed:
 * -EADDRINUSE; a leading '@' gives the abstract namespace). Errors as above,
 * -ENAMETOOLONG.
 */
HK_API int hk_unix_listen(hk_loop_t *loop, hk_listener_t *listener, const char *path, int backlog,
                          unsigned flags, hk_listen_cb cb);

/*
 * Accepts on an already listening fd (made non-blocking here). With
 * HK_LISTEN_SHARED the fd stays open on close (for one fd in several loops);
 * HK_LISTEN_EXCLUSIVE watches it with EPOLLEXCLUSIVE.
 * If hk_io_start fails (-EEXIST, -ENOMEM, -ENOSPC), the listener's internal handles
 * were already opened and are closed again: run the loop once before hk_loop_free.
 */
HK_API int hk_listener_open(hk_loop_t *loop, hk_listener_t *listener, int fd, unsigned flags,
                            hk_listen_cb cb);

/* Accepts per wake-up (1 .. 1024). Errors: -EINVAL. */
HK_API int hk_listener_set_batch(hk_listener_t *listener, unsigned batch);
/* Pause after EMFILE and the like (>= 1 ms). Errors: -EINVAL. */
HK_API int hk_listener_set_backoff(hk_listener_t *listener, uint64_t ns);

/* The bound port (host order), or -errno; for Unix sockets -EAFNOSUPPORT. */
HK_API int hk_listener_port(const hk_listener_t *listener);

/* Stops accepting, closes the fd (unless shared), then cb (may be NULL). */
HK_API void hk_listener_close(hk_listener_t *listener, hk_listener_close_cb cb);

/* ------------------------------------------------------------------------ */
/* Connecting                                                               */
/* ------------------------------------------------------------------------ */

typedef struct hk_connect hk_connect_t;

/*
 * fd >= 0: connected (non-blocking, close-on-exec, now the callback's to
 * keep); or -errno: -ECONNREFUSED, -ETIMEDOUT (deadline), -ECANCELED, ...
 * The request's memory may be reused from the callback on.
 */
typedef void (*hk_connect_cb)(hk_connect_t *req, int fd);

/* Flags of hk_tcp_connect. */
#define HK_CONNECT_NODELAY 0x01u   /* TCP_NODELAY */
#define HK_CONNECT_KEEPALIVE 0x02u /* keep-alive (60 s) */

struct hk_connect {
    void *data; /* free for the caller */
    hk_io_t _io;
    hk_timer_t _timer;
    hk_connect_cb _cb;
    int _result;
    int _pending; /* handles not yet closed */
    unsigned _flags;
};

/*
 * Starts a non-blocking connect to a numeric address. deadline_ns is an
 * absolute CLOCK_MONOTONIC time (HK_FOREVER: none; a past deadline fails with
 * -ETIMEDOUT unless the connection is made at once). The callback always runs
 * from the loop, even when the connection was made at once.
 * Errors: -EINVAL (address, flags, deadline), or -errno of socket().
 */
HK_API int hk_tcp_connect(hk_loop_t *loop, hk_connect_t *req, const char *addr,
                          uint64_t deadline_ns, unsigned flags, hk_connect_cb cb);

/* The same for a Unix socket path ('@' for the abstract namespace). */
HK_API int hk_unix_connect(hk_loop_t *loop, hk_connect_t *req, const char *path,
                           uint64_t deadline_ns, hk_connect_cb cb);

/*
 * Cancels a connect in progress: cb gets -ECANCELED (from the loop). Returns 0, or
 * -EALREADY when the request is already finishing. Only for a request whose callback
 * has not run yet.
 */
HK_API int hk_connect_cancel(hk_connect_t *req);

/* ------------------------------------------------------------------------ */
/* Multi-loop accept                                                        */
/* ------------------------------------------------------------------------ */

/*
 * N loops, one per thread, serving one address. The modes:
 *   HK_ACCEPT_PLAIN      one listen fd in every loop's epoll set, level-
 *                        triggered: every loop wakes for every connection
 *                        (the thundering herd; a baseline, not for use).
 *   HK_ACCEPT_EXCLUSIVE  one listen fd, EPOLLEXCLUSIVE in every loop: the
 *                        kernel wakes one (or a few) of the idle loops; it
 *                        favours the loops that registered first.
 *   HK_ACCEPT_REUSEPORT  one SO_REUSEPORT listener per loop; the kernel
 *                        spreads connections by a hash of the 4-tuple.
 *   HK_ACCEPT_HANDOFF    loop 0 accepts for all and passes each fd round-
 *                        robin to a loop (itself included) through a queue
 *                        and that loop's async wake-up.
 * HK_ACCEPT_DEFAULT is the mode hark recommends (docs/net.md has the figures).
 */
typedef enum hk_accept_mode {
    HK_ACCEPT_PLAIN = 0,
    HK_ACCEPT_EXCLUSIVE = 1,
    HK_ACCEPT_REUSEPORT = 2,
    HK_ACCEPT_HANDOFF = 3,
} hk_accept_mode_t;

#define HK_ACCEPT_DEFAULT HK_ACCEPT_REUSEPORT

/* The name of a mode ("plain", "exclusive", "reuseport", "handoff"), or NULL. */
HK_API const char *hk_accept_mode_name(hk_accept_mode_t mode);

typedef struct hk_accept_group hk_accept_group_t;
typedef struct hk_accept_member hk_accept_member_t;

/* A connection for this member's loop (called on that loop's thread). */
typedef void (*hk_accept_cb)(hk_accept_member_t *member, int fd);
typedef void (*hk_accept_close_cb)(hk_accept_member_t *member);

/* Per-loop counters: read them on the member's thread, or after it stopped. */
typedef struct hk_accept_stats {
    uint64_t wakeups;  /* listener callbacks plus hand-off wake-ups on this loop */
    uint64_t accepts;  /* connections this loop received */
    uint64_t empty;    /* listener wake-ups that found the accept queue empty */
    uint64_t backoffs; /* EMFILE/ENFILE pauses */
} hk_accept_stats_t;

#define HK_ACCEPT_QUEUE                                                                            \
    1024 /* hand-off queue per member (a full queue: the acceptor keeps the fd) */

struct hk_accept_member {
    void *data;               /* free for the caller */
    hk_accept_group_t *group; /* read-only */
    hk_loop_t *loop;          /* read-only */
    unsigned index;           /* read-only */
    hk_listener_t _listener;
    hk_async_t _async;
    hk_accept_cb _cb;
    hk_accept_close_cb _close_cb;
    int _ready; /* under _lock: accepting hand-offs */
    pthread_mutex_t _lock;
    unsigned _head, _tail;
    int _queue[HK_ACCEPT_QUEUE];
    int _pending; /* handles still closing */
    uint64_t _handoff_wakeups;
    uint64_t _received; /* fds delivered to this member (hand-off mode) */
};

struct hk_accept_group {
    hk_accept_mode_t mode; /* read-only */
    unsigned nmembers;     /* read-only */
    hk_accept_member_t *members;
    int port; /* read-only: the bound port (TCP) */
    unsigned _flags;
    int _fd;      /* the shared listen fd (not REUSEPORT) */
    int *_fds;    /* REUSEPORT: one per member */
    unsigned _rr; /* hand-off round robin */
};

/*
 * Creates the listening socket(s) of a group of n members (the caller's
 * array, n >= 1) for a TCP address: one socket, or n SO_REUSEPORT sockets on
 * one port, all bound before this returns (so group->port is known and no
 * connection is lost while threads start). flags: HK_LISTEN_NODELAY,
 * HK_LISTEN_KEEPALIVE, HK_LISTEN_V6ONLY. Call from any one thread before the
 * members start. Errors: -EINVAL, -ENOMEM, the -errno of socket/bind/listen.
 */
HK_API int hk_accept_group_open(hk_accept_group_t *group, hk_accept_mode_t mode, const char *addr,
                                int backlog, unsigned flags, hk_accept_member_t *members,
                                unsigned n);

/*
 * Starts member index on loop; call on the loop's thread. Thread-safe with
 * respect to the other members. Errors: -EINVAL (index), -EBUSY (started,
 * or an earlier failed start's handles are still closing), or the -errno of
 * hk_io_start/hk_async_init. A start that fails after opening handles closes
 * them in the loop's next iteration: run that loop once before starting the
 * member again (on the same loop) or freeing the loop.
 */
HK_API int hk_accept_member_start(hk_accept_group_t *group, unsigned index, hk_loop_t *loop,
                                  hk_accept_cb cb);

/*
 * Stops the member (on its loop's thread); fds handed to it and not yet
 * delivered are closed. cb (may be NULL) runs when its handles are closed.
 */
HK_API void hk_accept_member_close(hk_accept_member_t *member, hk_accept_close_cb cb);

/* The member's counters. */
HK_API void hk_accept_member_stats(const hk_accept_member_t *member, hk_accept_stats_t *out);

/*
 * Closes the group's listening sockets, after every member has closed, and
 * nothing else: new connections are refused from now on (a draining server)
 * while the members' counters stay readable. hk_accept_group_close is still
 * needed to free the rest.
 */
HK_API void hk_accept_group_stop_listening(hk_accept_group_t *group);

/* Closes the group's sockets, after every member has closed. */
HK_API void hk_accept_group_close(hk_accept_group_t *group);

#ifdef __cplusplus
}
#endif

#endif
