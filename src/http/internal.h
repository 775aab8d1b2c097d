/* Module-private parts of hark/http.h: the line scanner and the head driver. */
#ifndef HK_HTTP_INTERNAL_H
#define HK_HTTP_INTERNAL_H

#include "hark/http.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Character classes (scan.c): nonzero when the byte belongs to the class. */
extern const uint8_t hk__http_tchar[256]; /* token characters (RFC 9110 section 5.6.2) */
extern const uint8_t hk__http_vchar[256]; /* field-value bytes: VCHAR, obs-text, SP, HTAB */
extern const uint8_t hk__http_hostc[256]; /* bytes of a Host value or an authority */
extern const uint8_t hk__http_hex1[256];  /* hex digit value + 1; 0 for other bytes */

/* authority.c: host [":" port] per RFC 3986 (no userinfo); 1 if valid. An empty value is valid. */
int hk__http_authority_ok(const char *a, size_t n);

/* The value of a hex digit, -1 for another byte. */
static inline int hk__http_hex(unsigned char c)
{
    return hk__http_hex1[c] - 1;
}

/*
 * Scanner states. Each line of a head is scanned byte by byte from one of
 * these; the state alone says what the next byte may be, so a scan can stop
 * at any byte and resume later with only the new bytes.
 */
enum hk__http_state {
    HK__ST_RL_START,      /* first byte of the request line, or of an empty line before it */
    HK__ST_RL_EMPTY,      /* CR of an empty line before the request line */
    HK__ST_METHOD,        /* inside the method */
    HK__ST_TARGET0,       /* first byte of the request-target */
    HK__ST_TARGET,        /* inside the request-target */
    HK__ST_RL_CR,         /* CR after the version */
    HK__ST_LINE_LF,       /* LF ending a line */
    HK__ST_H_START,       /* first byte of a field line, or CR of the empty line */
    HK__ST_H_NAME,        /* inside a field name */
    HK__ST_H_VALUE,       /* after the colon */
    HK__ST_END_LF,        /* LF of the empty line ending the head */
    HK__ST_SL_SP,         /* SP after the version in a status line */
    HK__ST_SL_AFTER_CODE, /* SP (or CR) after the status code */
    HK__ST_SL_REASON,     /* inside the reason phrase */
    HK__ST_DONE,          /* the head (or trailer section) is complete */
    /* "HTTP/d.d": one state per byte, 8 each. */
    HK__ST_RQ_VERSION = 16, /* ... 23, in a request line */
    HK__ST_SL_VERSION = 24, /* ... 31, at the start of a status line */
    HK__ST_SL_CODE = 32,    /* ... 34, the three digits of a status code */
    HK__ST_COUNT = 40,      /* every state is below this */
};

/* What hk__http_scan stopped at. */
enum hk__http_scan_result {
    HK__SCAN_ERROR = -1, /* *why says what */
    HK__SCAN_MORE = 0,   /* the input ended inside a line */
    HK__SCAN_LINE = 1,   /* a non-empty line ended: *pos is just past its LF */
    HK__SCAN_EMPTY = 2,  /* an empty line ended (leading CRLF, or the end of the head) */
};

/*
 * Scans from *state at *pos up to end, stopping after the first line that
 * ends. Updates *state and *pos unless it fails. When it passes the colon of
 * a field line, sets *colon to it (left alone otherwise).
 */
int hk__http_scan(unsigned *state, const char **pos, const char *end, const char **why,
                  const char **colon);

/*
 * For a call that cannot resume (a fresh struct, last_len > 0): 1 when the
 * answer is -EAGAIN without a parse, because buf[last_len - 3 .. len) holds
 * no end of head, no byte that is wrong anywhere in a head (control
 * characters, a bare CR or LF), and len crosses no limit (max_line counted
 * from buf[0]; 0 for none). Otherwise the caller parses from buf[0]: then
 * the whole head is scanned once more, but only once it can give an answer.
 */
int hk__http_no_end_yet(const char *buf, size_t len, size_t last_len, size_t max_head,
                        size_t max_line);

/* Case-insensitive equality of s[0..n) with lower, which holds lower-case letters,
 * digits and '-' only (s holds no control characters). */
static inline int hk__http_ieq(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] | 0x20) != (unsigned char)lower[i])
            return 0;
    return 1;
}

/* Facts the header lines establish (hk__http_parse.at.facts). */
#define HK__F_CL 0x001u         /* Content-Length seen */
#define HK__F_TE 0x002u         /* Transfer-Encoding: chunked seen */
#define HK__F_HOST 0x004u       /* Host seen */
#define HK__F_CLOSE 0x008u      /* Connection: close */
#define HK__F_KEEP_ALIVE 0x010u /* Connection: keep-alive */
#define HK__F_CONN_UPG 0x020u   /* Connection: upgrade */
#define HK__F_UPGRADE 0x040u    /* an Upgrade header */
#define HK__F_CONTINUE 0x080u   /* Expect: 100-continue */
#define HK__F_LINE1 0x100u      /* the first line (request or status line) is done */
#define HK__F_ABSOLUTE 0x200u   /* absolute-form target: host is its authority */

/*
 * One head being parsed: what request and response parsing share. The public
 * structs are copied into this and back on every call.
 */
struct hk__http_parse {
    const char *buf;
    hk_http_header_t *headers;
    size_t max_headers;
    size_t max_head; /* bytes of the whole head */
    size_t max_line; /* bytes of the first line with its CRLF; 0: only max_head */
    int request;
    /* What a later call resumes from: the line being scanned, the scanner
     * state, the facts, headers, length and version so far (seen and base
     * are only kept in the public struct's copy). */
    hk_http_resume_t at;
    const char *host;
    size_t host_len;
    /* Called once the first line is complete (line[0..len) includes CRLF). */
    int (*first_line)(void *ctx, struct hk__http_parse *ps, const char *line, size_t len);
    void *ctx;
    int status;        /* on failure: 400, 414, 431, 501 or 505 */
    const char *error; /* on failure */
};

/*
 * Starts a call on ps (set to the state of a head's start): 1 when the call
 * continues the previous one, whose state rs gives to ps; -EAGAIN when a
 * call that cannot resume need not parse (hk__http_no_end_yet); 0 when the
 * head must be parsed from buf[0].
 */
int hk__http_start(struct hk__http_parse *ps, hk_http_resume_t *rs, size_t len, size_t last_len);

/*
 * Parses from offset from (a previous call scanned up to there) to len.
 * Returns the head's length, -EAGAIN or -EBADMSG (ps->status, ps->error).
 */
int hk__http_head(struct hk__http_parse *ps, size_t from, size_t len);

/* Keeps ps's state in rs after a call that returned r for len bytes. */
void hk__http_stop(const struct hk__http_parse *ps, hk_http_resume_t *rs, int r, size_t len);

/* Sets the failure and returns -EBADMSG. */
static inline int hk__http_fail(struct hk__http_parse *ps, int status, const char *why)
{
    ps->status = status;
    ps->error = why;
    return -EBADMSG;
}

/* The HK_HTTP_KEEP_ALIVE flag from the version and the Connection facts. */
static inline unsigned hk__http_keep_alive(int minor_version, unsigned facts)
{
    if (facts & HK__F_CLOSE)
        return 0;
    if (minor_version >= 1 || (facts & HK__F_KEEP_ALIVE))
        return HK_HTTP_KEEP_ALIVE;
    return 0;
}

#endif
