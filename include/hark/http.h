/*
 * hark/http.h: HTTP/1.x message parsing, zero copy and strict (RFC 9112).
 *
 * The caller owns the buffer; parsed fields point into it, so they stay valid
 * only while the buffer is unchanged. A request head that is not complete yet
 * returns -EAGAIN; call again with the grown buffer (same start) and the
 * length seen last time, and only the new bytes are scanned for the end of
 * the head. Every rejection carries the status code a server should answer
 * (400, 414, 431, 501, 505) so that the server never has to guess.
 *
 * Thread safety: all functions are pure and reentrant.
 */
#ifndef HARK_HTTP_H
#define HARK_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "hark/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parser state kept between the calls for one head (inside the request and
 * response structs; callers never touch it). A call with last_len == 0, or
 * one whose buf or last_len does not match the previous call, starts over.
 */
typedef struct hk_http_resume {
    size_t seen;            /* len of the previous call; 0: nothing to resume */
    uintptr_t base;         /* buf of the previous call */
    size_t line;            /* offset of the line being scanned */
    size_t num_headers;     /* headers so far */
    int64_t content_length; /* so far */
    unsigned state;         /* scanner state at seen */
    unsigned facts;         /* header facts so far (Connection tokens, Upgrade, Expect...) */
    int minor_version;
} hk_http_resume_t;

typedef struct hk_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
} hk_http_header_t;

typedef enum hk_http_method {
    HK_HTTP_OTHER = 0,
    HK_HTTP_GET,
    HK_HTTP_HEAD,
    HK_HTTP_POST,
    HK_HTTP_PUT,
    HK_HTTP_DELETE,
    HK_HTTP_OPTIONS,
    HK_HTTP_PATCH,
    HK_HTTP_CONNECT,
    HK_HTTP_TRACE,
} hk_http_method_t;

/* Request flags derived from the headers. */
#define HK_HTTP_KEEP_ALIVE 0x01u      /* the connection may carry another request */
#define HK_HTTP_CHUNKED 0x02u         /* Transfer-Encoding: chunked body */
#define HK_HTTP_EXPECT_CONTINUE 0x04u /* Expect: 100-continue */
#define HK_HTTP_UPGRADE 0x08u         /* Connection: upgrade with an Upgrade header */

/* Limits the parser enforces; zero fields take the defaults below. */
typedef struct hk_http_limits {
    size_t max_request_line; /* bytes of the request line, empty lines before it included: over ->
                                414 */
    size_t max_head;         /* bytes of the whole head: over -> 431 */
} hk_http_limits_t;

#define HK_HTTP_MAX_REQUEST_LINE_DEFAULT 8192
#define HK_HTTP_MAX_HEAD_DEFAULT 32768

typedef struct hk_http_request {
    /* Inputs, set before the first call. */
    hk_http_header_t *headers; /* caller's array ... */
    size_t max_headers;        /* ... and its capacity: more headers -> 431 */
    hk_http_limits_t limits;

    /* Outputs. */
    hk_http_method_t method_id;
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent (origin-form or absolute-form) */
    size_t target_len;
    const char *path; /* target's path, before '?', still percent-encoded */
    size_t path_len;
    const char *query; /* after '?', NULL when absent */
    size_t query_len;
    int minor_version; /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    size_t num_headers;
    const char *host; /* Host header value, NULL when absent (allowed on 1.0 only) */
    size_t host_len;
    int64_t content_length; /* -1 when absent */
    unsigned flags;         /* HK_HTTP_KEEP_ALIVE ... */
    int status;             /* on failure: the status to answer (400, 414, 431, 501, 505) */
    const char *error;      /* on failure: a short static reason, for logs */

    hk_http_resume_t _resume; /* private */
} hk_http_request_t;

/*
 * Parses a request head from buf[0 .. len). last_len is the length given to
 * the previous call for the same request (0 the first time). Returns the
 * number of bytes the head took (> 0; the body, if any, starts there),
 * -EAGAIN when the head is incomplete, or -EBADMSG with req->status and
 * req->error set. Leading empty lines before the request line are skipped
 * (RFC 9112 section 2.2) and counted in the return value. Best with the same
 * struct for every call of one head: the parse resumes where it stopped and
 * an error shows at the first byte that proves it. With a new struct per
 * call, the new bytes are checked for the end of the head, for bytes that are
 * wrong anywhere and for the limits, and the head is parsed once it can give
 * an answer (rules and statuses: docs/http.md).
 */
HK_API int hk_http_parse_request(hk_http_request_t *req, const char *buf, size_t len,
                                 size_t last_len);

/* Looks up a header by name, case-insensitively; NULL when absent. */
HK_API const hk_http_header_t *hk_http_find_header(const hk_http_header_t *headers, size_t n,
                                                   const char *name);

typedef struct hk_http_response {
    /* Inputs, as for requests. */
    hk_http_header_t *headers;
    size_t max_headers;
    size_t max_head; /* 0: HK_HTTP_MAX_HEAD_DEFAULT */
    /* Outputs. */
    int minor_version;
    int status;
    const char *reason;
    size_t reason_len;
    size_t num_headers;
    int64_t content_length; /* -1 when absent */
    unsigned flags;         /* HK_HTTP_KEEP_ALIVE, HK_HTTP_CHUNKED */
    const char *error;      /* on failure */

    hk_http_resume_t _resume; /* private */
} hk_http_response_t;

/*
 * Parses a response head (from an upstream), same contract as requests:
 * bytes taken, -EAGAIN, or -EBADMSG. The caller knows whether the request
 * was HEAD, or the status 1xx/204/304, which have no body whatever the
 * headers say.
 */
HK_API int hk_http_parse_response(hk_http_response_t *res, const char *buf, size_t len,
                                  size_t last_len);

/*
 * Chunked transfer coding decoder, incremental. Zero the struct to start.
 * Decodes buf[0 .. *len) in place: on return buf[0 .. *len) holds the payload
 * bytes found in this input. Returns 0 when all the input was consumed and
 * more is needed; 1 when the message is complete (last chunk and trailers
 * read): dec->end_offset is then the offset in the original input where the
 * next message starts, and the bytes from there on are left untouched;
 * -EBADMSG on malformed input (bad size, missing CRLF, size overflow,
 * trailer section over 8 KiB, a chunk-size line with its extensions over
 * 4 KiB). Once complete, further calls consume nothing and return 1.
 */
typedef struct hk_http_chunked {
    uint64_t remaining; /* payload bytes left in the current chunk */
    unsigned state;
    size_t trailer_bytes;
    size_t end_offset; /* see above */
    size_t line_bytes; /* bytes of the current chunk-size line: over 4 KiB -> -EBADMSG */
} hk_http_chunked_t;

HK_API int hk_http_chunked_decode(hk_http_chunked_t *dec, char *buf, size_t *len);

/* The reason phrase of a status code ("Not Found"), "Unknown" when not known. */
HK_API const char *hk_http_status_text(int status);

/*
 * Formats t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into
 * buf[0..29] plus a NUL: buf must hold HK_HTTP_DATE_LEN + 1 bytes.
 */
#define HK_HTTP_DATE_LEN 29
HK_API void hk_http_date_format(time_t t, char *buf);

/*
 * Parses an HTTP date (IMF-fixdate; also the obsolete RFC 850 and asctime
 * forms, as RFC 9110 asks recipients to). Returns 0 and *t, or -EINVAL.
 */
HK_API int hk_http_date_parse(const char *s, size_t len, time_t *t);

/*
 * Percent-decodes a request path into out (out_size bytes, NUL added) and
 * normalises it: collapses repeated '/', removes "." segments, and refuses
 * ".." segments that would climb above the root. Returns the decoded length,
 * or -EINVAL for an encoded NUL, a bad %-escape, a path that does not start
 * with '/', or one that escapes the root; -ENAMETOOLONG when out is too small.
 */
HK_API ssize_t hk_http_path_decode(const char *path, size_t len, char *out, size_t out_size);

/*
 * Parses a Range header value against a representation of size bytes.
 * Only a single byte range is served (first-last, first-, -suffix):
 *   0             *first and *last (inclusive) are set: answer 206
 *   -ERANGE       not satisfiable: answer 416
 *   -ENODATA      a suffix range (-N, N > 0) of an empty representation: satisfiable,
 *                 but a 206 cannot carry zero bytes; answer 200
 *   -ENOTSUP      several ranges (empty list elements do not count) or another
 *                 unit: ignore it, answer 200
 *   -EINVAL       malformed: ignore it, answer 200 (RFC 9110 section 14.2)
 */
HK_API int hk_http_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first,
                               uint64_t *last);

/*
 * The weight a list of content codings (an Accept-Encoding value, RFC 9110
 * section 12.5.3) gives coding, compared case-insensitively: its q-value in
 * thousandths (0 = refused, 1000 = the default), or -1 when the list does not
 * name it. *star (when not NULL) gets the weight of "*" the same way. The
 * first mention counts; an element that does not parse (a bad q-value, stray
 * bytes) is skipped. The caller decides: gzip is acceptable when its weight
 * is above 0, or it is not named and "*" is above 0.
 */
HK_API int hk_http_coding_weight(const char *value, size_t len, const char *coding, int *star);

#ifdef __cplusplus
}
#endif

#endif
