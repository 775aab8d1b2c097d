/*
 * One client connection, and the batches its responses are written in.
 *
 * Reading uses the library's per-thread buffer, so an idle keep-alive
 * connection owns no buffer at all: only a head that arrives in pieces is
 * copied into a buffer of the connection's own, freed once it is complete.
 * Every complete request found in one read (pipelining) gets its response
 * appended to one batch: header bytes in the batch, bodies as iovecs
 * pointing at cached file bytes, and the whole batch leaves in one writev.
 * A large file body ends a batch with a sendfile request.
 */
#ifndef HTTPD_CONN_H
#define HTTPD_CONN_H

#include "fcache.h"
#include "httpd.h"

/* Header fields per request (Apache's LimitRequestFields default): more is a 431. */
#define HTTPD_MAX_HEADERS 100
#define HTTPD_BATCH_IOV 32
#define HTTPD_BATCH_HDR 6144
#define HTTPD_BATCH_REFS 16

typedef struct httpd_batch {
    struct httpd_batch *next; /* worker free list */
    httpd_conn_t *conn;
    hk_write_req_t req;
    union {
        hk_write_req_t file_req;
        hk_tls_sendfile_t tls_req;
    };
    unsigned writes; /* write requests in flight */
    int niov;
    size_t hdr_used;
    unsigned nrefs;
    httpd_file_t *refs[HTTPD_BATCH_REFS]; /* files whose bytes or fds the batch uses */
    char *owned;                          /* a malloc'd body (status page, metrics) */
    httpd_file_t *file;                   /* sendfile part, NULL if none */
    uint64_t file_off, file_len;
    struct iovec iov[HTTPD_BATCH_IOV];
    char hdr[HTTPD_BATCH_HDR];
} httpd_batch_t;

/* Connection flags. */
#define HTTPD_C_TLS 0x001u
#define HTTPD_C_CLOSE_AFTER 0x002u /* close once what is queued is written */
#define HTTPD_C_CLOSING 0x004u
#define HTTPD_C_WAITING 0x008u   /* a file open is in flight: requests wait in order */
#define HTTPD_C_READING 0x010u   /* reading started */
#define HTTPD_C_PAUSED 0x020u    /* reading stopped: the write queue is full */
#define HTTPD_C_HANDSHAKE 0x040u /* TLS handshake not finished */
#define HTTPD_C_FS_BUSY 0x080u   /* the fs request is in flight (the memory must stay) */
#define HTTPD_C_EOF 0x100u       /* the client shut down its side */
#define HTTPD_C_HTTP10 0x200u    /* the request being answered is HTTP/1.0 */
#define HTTPD_C_LINGER 0x400u    /* a request body was not all read: linger when closing */
#define HTTPD_C_LINGERING 0x800u /* write side shut down; reading and discarding until close */
#define HTTPD_C_HELD 0x1000u     /* reading stopped: input ran far ahead of a waiting request */

typedef struct httpd_open httpd_open_t;       /* static.c: an open in flight */
typedef struct httpd_proxy httpd_proxy_t;     /* proxy.c: a proxied request in flight */
typedef struct httpd_listing httpd_listing_t; /* autoindex.c: a directory being listed */

struct httpd_conn {
    hk_stream_t stream; /* first member */
    httpd_worker_t *w;
    httpd_gen_t *gen;
    httpd_conn_t *prev, *next;
    hk_timer_t timer;
    uint64_t deadline;    /* the real deadline; the timer may be earlier (re-armed lazily) */
    uint64_t sent_mark;   /* stream.bytes_written when the send deadline was set */
    uint64_t head_start;  /* when the first byte of the pending head arrived */
    uint64_t linger_left; /* bytes still discarded while lingering before the close */
    unsigned flags;
    unsigned closes; /* handles still closing */
    unsigned listen_index;
    unsigned requests;
    unsigned writes; /* batches in flight */
    int last_status; /* the last response's status and body bytes, for the access log */
    uint64_t last_bytes;
    char *in; /* bytes of requests not handled yet (own copy), or NULL */
    size_t in_len, in_cap, last_len;
    httpd_batch_t *batch;     /* responses being gathered */
    httpd_open_t *open;       /* static.c: the last open and its result, for the retried request */
    httpd_proxy_t *proxy;     /* proxy.c: the request being proxied, or NULL */
    httpd_listing_t *listing; /* autoindex.c: the last listing and its result */
    struct sockaddr_storage peer;
};

/* conn.c */
void httpd_conn_start(httpd_worker_t *w, int fd, unsigned listen_index);
void httpd_conn_close(httpd_conn_t *c);
/*
 * Closes after the last response was written: with a lingering close when a
 * request body was left unread (HTTPD_C_LINGER), else at once.
 */
void httpd_conn_close_written(httpd_conn_t *c);
/* Sets the connection's deadline, moving its timer earlier when needed. */
void httpd_conn_arm(httpd_conn_t *c, uint64_t deadline);
void httpd_conn_resume(httpd_conn_t *c); /* an open finished: handle the waiting requests */
void httpd_conn_drain(httpd_conn_t *c);  /* SIGTERM: close when idle */

/* respond.c: building responses into the connection's batch. */
typedef struct httpd_resp {
    int status;
    bool keep_alive;
    bool head;         /* HEAD: headers only */
    const char *type;  /* Content-Type or NULL */
    uint64_t length;   /* Content-Length */
    const char *extra; /* more header lines, each ending in CRLF, or NULL */
    size_t extra_len;
    size_t page_len; /* bytes appended to the header buffer after the head (an error page) */
} httpd_resp_t;

httpd_batch_t *httpd_batch_get(httpd_conn_t *c);
/*
 * Appends the status line and headers; a full batch is flushed first and a
 * new one started. -ENOSPC only for a header larger than a batch, -EPIPE
 * when that flush found the connection dead.
 */
int httpd_resp_head(httpd_conn_t *c, const httpd_resp_t *r);
int httpd_resp_body_mem(httpd_conn_t *c, const void *p, size_t len, httpd_file_t *ref);
void httpd_resp_body_file(httpd_conn_t *c, httpd_file_t *f, uint64_t off, uint64_t len);
void httpd_resp_body_owned(httpd_conn_t *c, char *p, size_t len);
/* A 301 with location_line ("Location: ...\r\n", len bytes) as its only extra header. */
void httpd_resp_redirect(httpd_conn_t *c, bool keep_alive, bool head, const char *location_line,
                         size_t len);
/* A complete error response with a small HTML body. */
void httpd_resp_error(httpd_conn_t *c, int status, bool keep_alive, bool head);
/* httpd_resp_error with allow (an "Allow: ...\r\n" line) for a 405 or 501 instead of the static
 * one. */
void httpd_resp_error_allow(httpd_conn_t *c, int status, bool keep_alive, bool head,
                            const char *allow);
/* Writes the gathered batch (if any). */
void httpd_batch_flush(httpd_conn_t *c);
void httpd_batch_release(httpd_worker_t *w, httpd_batch_t *b);
void httpd_batch_cache_free(void); /* at worker exit: frees the thread's spare batches */
/* Counts a response of this status in the worker's counters. */
void httpd_count_status(httpd_worker_t *w, int status);

/* static.c / proxy.c: the handlers. Return 0 when answered, 1 when waiting for an open. */
int httpd_static_handle(httpd_conn_t *c, const hk_http_request_t *req, const httpd_location_t *loc,
                        int root_fd, const char *path, size_t len, bool keep_alive);
void httpd_static_cancel(httpd_conn_t *c);
void httpd_static_free(httpd_conn_t *c);  /* the connection is freed: its open state too */
void httpd_conn_fs_done(httpd_conn_t *c); /* an open ended after the connection closed */

/*
 * autoindex.c: directory listings. start opens dir (relative to root_fd, ""
 * for the root) beneath the root and reads it off the loop: 1 (waiting, the
 * request is parsed again when done) or -errno. take returns 1 with the page
 * (caller frees), 0 when no listing of that directory is ready, or -errno.
 */
int httpd_autoindex_start(httpd_conn_t *c, int root_fd, const char *dir, size_t len,
                          const char *url, size_t url_len);
int httpd_autoindex_take(httpd_conn_t *c, int root_fd, const char *dir, size_t len, char **html,
                         size_t *html_len);
void httpd_autoindex_cancel(httpd_conn_t *c);
void httpd_autoindex_free(httpd_conn_t *c);

/*
 * The proxy seam (proxy.c). A request routed to an upstream is offered with
 * its head and the body bytes that arrived with it (body[0 .. body_avail),
 * possibly including the start of pipelined requests after it).
 * httpd_proxy_handle returns the bytes of body it consumed (>= 0) after
 * taking the request: the connection then sets HTTPD_C_WAITING, keeps the
 * rest of its input for later, and feeds every byte it reads from then on
 * to httpd_proxy_client_data (which returns how many it took; the rest is
 * kept as the next requests). Both must take every byte of the request's
 * body they are given (buffer it, then pause reading the client for
 * backpressure). Or it returns -errno after answering the
 * request itself (e.g. 502): the connection goes on with the next request.
 * The proxy writes the response on &c->stream itself (and counts its status
 * with httpd_count_status), and calls httpd_conn_proxy_done after the write
 * callback of its last write (keep_alive false: the connection closes).
 * eof true in httpd_proxy_client_data: the client shut down its side. httpd_proxy_abort is called
 * when the connection closes first: the proxy must drop every reference to
 * c (its write callbacks on c->stream still run, with -ECANCELED).
 */
int httpd_proxy_handle(httpd_conn_t *c, const hk_http_request_t *req, const char *head,
                       size_t head_len, const char *body, size_t body_avail,
                       const httpd_location_t *loc, bool keep_alive);
size_t httpd_proxy_client_data(httpd_conn_t *c, const char *p, size_t len, bool eof);
void httpd_proxy_abort(httpd_conn_t *c);
void httpd_conn_proxy_done(httpd_conn_t *c, bool keep_alive);
/* Backpressure on the client's request body: stop or restart reading the client. */
void httpd_conn_pause_reading(httpd_conn_t *c, bool pause);

#endif
