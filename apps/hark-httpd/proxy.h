/*
 * The reverse proxy's parts shared by proxy.c (the exchange), proxy_body.c
 * (the request body), proxy_resp.c (the response) and proxy_head.c (the
 * heads as they are forwarded in each direction).
 */
#ifndef HTTPD_PROXY_H
#define HTTPD_PROXY_H

#include "conn.h"
#include "upstream.h"

#define HTTPD_PROXY_NBUF 4                        /* response buffers per request ... */
#define HTTPD_PROXY_BUF ((size_t)64 << 10)        /* ... of this size: 256 KiB in flight at most */
#define HTTPD_PROXY_CLIENT_LOW ((size_t)64 << 10) /* read the upstream again below this */
#define HTTPD_PROXY_RES_HEADERS 64                /* response head fields parsed in place ... */
#define HTTPD_PROXY_RES_HEADERS_MAX 256 /* ... and at most, in a larger array: more is a 502 */

/* How a body is delimited. */
typedef enum httpd_frame {
    HTTPD_FRAME_NONE,
    HTTPD_FRAME_LENGTH,
    HTTPD_FRAME_CHUNKED,
    HTTPD_FRAME_CLOSE,
} httpd_frame_t;

/* Where the exchange is. */
enum { HTTPD_PX_CONNECT, HTTPD_PX_HEAD, HTTPD_PX_BODY, HTTPD_PX_DONE, HTTPD_PX_FAILED };

/* Body bytes on their way: a request chunk to the upstream, or a response buffer. */
typedef struct httpd_pbuf {
    hk_write_req_t wr;
    httpd_proxy_t *p;
    struct httpd_pbuf *next; /* request chunks waiting for the connection */
    struct iovec iov[3];
    int niov;
    bool busy; /* response buffer: being written to the client */
    size_t len, cap;
    char line[24]; /* chunk-size line */
    char data[];
} httpd_pbuf_t;

struct httpd_proxy {
    httpd_conn_t *c; /* NULL once the connection is done with us */
    httpd_worker_t *w;
    httpd_ups_t *ups;
    httpd_userver_t *server;
    httpd_uconn_t *u;
    int state;
    unsigned client_pending, up_pending; /* writes in flight on each side */
    unsigned tries;
    uint64_t tried;   /* servers tried, by index */
    uint64_t started; /* when this server was picked (passive health) */
    bool ka, head_req, client_10, idempotent, has_body, retried, free_deferred;
    hk_defer_t free_defer;
    /* The request. */
    char *req_head;
    size_t req_head_len;
    unsigned head_writes;
    hk_write_req_t head_wr[2]; /* a retry writes the head again while the first may be pending */
    struct iovec head_iov;
    hk_write_req_t cont_wr;
    int64_t body_left; /* Content-Length bytes still to come */
    bool body_chunked, body_done, client_eof, client_paused; /* paused: by us */
    hk_http_chunked_t body_dec;
    uint64_t body_total;
    httpd_pbuf_t *q_head, *q_tail; /* chunks waiting for the connection */
    size_t q_bytes;
    /* The response. */
    hk_http_response_t res;
    hk_http_header_t res_hdrs[HTTPD_PROXY_RES_HEADERS];
    hk_http_header_t *res_big; /* a head with more fields: up to HTTPD_PROXY_RES_HEADERS_MAX */
    size_t res_big_n;
    size_t hlen, res_last;
    bool responded; /* the head went to the client */
    bool got_bytes; /* the upstream sent something */
    bool up_reuse, up_reading, client_full;
    httpd_frame_t in, out;
    uint64_t resp_left;
    hk_http_chunked_t resp_dec;
    httpd_pbuf_t *bufs[HTTPD_PROXY_NBUF];
    httpd_pbuf_t *cur; /* the buffer of the read in progress */
    char *resp_head;
    hk_write_req_t resp_wr, end_wr;
    struct iovec resp_iov;
    uint64_t read_deadline, send_deadline;
    uint64_t up_sent_mark; /* the upstream stream's bytes_written when send_deadline was set */
    /* The access log's copy of the request line, Referer and User-Agent (the head is gone by
     * the time the response ends); NULL when the log is off. */
    hk_http_request_t log_req;
    hk_http_header_t log_hdrs[2];
    char *log_buf;
    uint64_t log_bytes; /* body bytes written to the client */
};

/* proxy.c */
void httpd_proxy_up_failed(httpd_proxy_t *p, int err); /* retry elsewhere, 502/504, or close */
void httpd_proxy_error(httpd_proxy_t *p, int status);  /* answers when nothing was sent yet */
void httpd_proxy_drop_upstream(httpd_proxy_t *p);      /* closes the upstream connection */
/* The send timeout starts over: a write goes into an empty queue, or bytes went out. */
void httpd_proxy_send_mark(httpd_proxy_t *p);
void httpd_proxy_up_written(httpd_proxy_t *p, const hk_stream_t *stream, int status);
void httpd_proxy_arm(httpd_proxy_t *p);
void httpd_proxy_touch(httpd_proxy_t *p);
void httpd_proxy_finish(httpd_proxy_t *p);
bool httpd_proxy_keep_alive(const httpd_proxy_t *p); /* the client connection goes on after */
void httpd_proxy_maybe_free(httpd_proxy_t *p);
void httpd_proxy_client_written(httpd_proxy_t *p, int status);       /* a client write completed */
void httpd_proxy_on_client_written(hk_write_req_t *req, int status); /* req->data is p */
void httpd_proxy_log(httpd_proxy_t *p, int status, uint64_t bytes);  /* once, while p->c is set */

/* proxy_body.c */
void httpd_proxy_pause_client(httpd_proxy_t *p, bool pause);
void httpd_proxy_up_write(httpd_proxy_t *p, httpd_pbuf_t *b); /* a body chunk to the upstream */
void httpd_proxy_on_up_drain(hk_stream_t *stream);
/* Takes the request body's bytes from data: how many were the body's, or -errno. */
ssize_t httpd_proxy_body_take(httpd_proxy_t *p, const char *data, size_t len);

/* proxy_resp.c */
void httpd_proxy_resp_start(httpd_proxy_t *p); /* reads the response on p->u */
void httpd_proxy_flow(httpd_proxy_t *p);       /* reads the upstream, or stops: backpressure */

/* What the upstream request head needs besides the client's head. */
typedef struct httpd_proxy_reqinfo {
    const char *client_addr; /* appended to X-Forwarded-For */
    bool https;              /* X-Forwarded-Proto */
    const char *host;        /* Host for a request without one (HTTP/1.0) ... */
    int port;                /* ... and its port, or 0 for none */
    bool chunked;            /* the body goes re-chunked: Transfer-Encoding, no Content-Length */
    bool close;              /* no keep-alive to the upstream: Connection: close */
} httpd_proxy_reqinfo_t;

/* What the client response head needs besides the upstream's head. */
typedef struct httpd_proxy_respinfo {
    bool chunked;     /* the client gets the body chunked */
    bool drop_length; /* the upstream's Content-Length does not describe what the client gets */
    bool keep_alive;  /* else Connection: close */
    bool client_10;   /* an HTTP/1.0 client: keep-alive must be said */
    const char *date; /* the worker's Date value, added when the upstream sent none */
} httpd_proxy_respinfo_t;

/* Max-Forwards of an OPTIONS or TRACE request, or -1 (another method, none, not a number). */
int64_t httpd_proxy_max_forwards(const hk_http_request_t *req);

/* Bytes that always suffice for the rewritten request head. */
size_t httpd_proxy_request_head_max(const hk_http_request_t *req, size_t head_len,
                                    const httpd_proxy_reqinfo_t *info);
/*
 * Writes the request head for the upstream: the client's request line as
 * HTTP/1.1, its headers without the hop-by-hop ones (Connection and those
 * it names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 * Upgrade) and without Expect (the proxy answers 100-continue itself), with
 * the Max-Forwards of OPTIONS and TRACE decremented, then X-Forwarded-For
 * (appended), X-Forwarded-Proto, Via. Returns the length or
 * -ENOSPC.
 */
ssize_t httpd_proxy_request_head(char *out, size_t cap, const hk_http_request_t *req,
                                 const httpd_proxy_reqinfo_t *info);

size_t httpd_proxy_response_head_max(const hk_http_response_t *res, size_t head_len);
/* The same for the response to the client. Returns the length or -ENOSPC. */
ssize_t httpd_proxy_response_head(char *out, size_t cap, const hk_http_response_t *res,
                                  const httpd_proxy_respinfo_t *info);

#endif
