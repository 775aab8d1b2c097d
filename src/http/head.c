/*
 * The head driver shared by requests and responses: limits, field lines and
 * the framing headers.
 *
 * Why so strict about framing: when two parties along a path (a proxy and a
 * server, a cache and an origin) disagree on where a message ends, the bytes
 * one takes for a body the other takes for a new request: request smuggling.
 * Every disagreement known comes from a head that admits two readings:
 * Content-Length with Transfer-Encoding, two Content-Lengths, a list or a sign
 * in one, a transfer coding other than a single "chunked", a folded line, a
 * bare CR or LF that one side ends a line at and the other does not,
 * whitespace before the colon that one side strips. Each of those is refused
 * here, never repaired.
 *
 * Limits are positions: the head may not need a byte at or past max_head, the
 * request line none at or past its start + max_request_line + 2 (its CRLF).
 * So a result depends only on the bytes, never on how they were split.
 */
#include "http/internal.h"

enum field {
    FIELD_OTHER,
    FIELD_HOST,
    FIELD_EXPECT,
    FIELD_UPGRADE,
    FIELD_CONNECTION,
    FIELD_CONTENT_LENGTH,
    FIELD_TRANSFER_ENCODING,
};

/* The fields the parser acts on, by the length of their name. */
static const struct {
    const char *name;
    enum field field;
} fields_by_len[18] = {
    [4] = {"host", FIELD_HOST},
    [6] = {"expect", FIELD_EXPECT},
    [7] = {"upgrade", FIELD_UPGRADE},
    [10] = {"connection", FIELD_CONNECTION},
    [14] = {"content-length", FIELD_CONTENT_LENGTH},
    [17] = {"transfer-encoding", FIELD_TRANSFER_ENCODING},
};

static enum field classify(const char *name, size_t len)
{
    if (len < 18 && fields_by_len[len].name && hk__http_ieq(name, fields_by_len[len].name, len))
        return fields_by_len[len].field;
    return FIELD_OTHER;
}

/* 1*DIGIT, no sign, no list, at most INT64_MAX. Returns the value or -1. */
static int64_t parse_length(const char *s, size_t n)
{
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9 || v > (INT64_MAX - (int64_t)d) / 10)
            return -1;
        v = v * 10 + d;
    }
    return v;
}

/* The Connection options we act on, from a comma-separated list. */
static unsigned connection_facts(const char *s, size_t n)
{
    unsigned facts = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ',' || s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t start = i;
        while (i < n && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
            i++;
        size_t len = i - start;
        if (len == 5 && hk__http_ieq(s + start, "close", 5))
            facts |= HK__F_CLOSE;
        else if (len == 10 && hk__http_ieq(s + start, "keep-alive", 10))
            facts |= HK__F_KEEP_ALIVE;
        else if (len == 7 && hk__http_ieq(s + start, "upgrade", 7))
            facts |= HK__F_CONN_UPG;
    }
    return facts;
}

static int content_length(struct hk__http_parse *ps, const char *v, size_t n)
{
    int64_t cl = parse_length(v, n);
    if (cl < 0)
        return hk__http_fail(ps, 400, "bad Content-Length");
    if (ps->at.facts & HK__F_CL) {
        /* A response may repeat an equal value (RFC 9110 section 8.6); a request may not. */
        if (ps->request || cl != ps->at.content_length)
            return hk__http_fail(ps, 400, "several Content-Length");
    }
    if (ps->at.facts & HK__F_TE)
        return hk__http_fail(ps, 400, "Content-Length with Transfer-Encoding");
    ps->at.facts |= HK__F_CL;
    ps->at.content_length = cl;
    return 0;
}

static int transfer_encoding(struct hk__http_parse *ps, const char *v, size_t n)
{
    if (ps->at.minor_version == 0)
        return hk__http_fail(ps, 400, "Transfer-Encoding in HTTP/1.0");
    if (ps->at.facts & HK__F_CL)
        return hk__http_fail(ps, 400, "Content-Length with Transfer-Encoding");
    if (ps->at.facts & HK__F_TE)
        return hk__http_fail(ps, 400, "chunked applied twice");
    if (n == 0)
        return hk__http_fail(ps, 400, "empty Transfer-Encoding");
    if (n != 7 || !hk__http_ieq(v, "chunked", 7))
        return hk__http_fail(ps, 501, "transfer coding other than chunked");
    ps->at.facts |= HK__F_TE;
    return 0;
}

static int host(struct hk__http_parse *ps, const char *v, size_t n)
{
    if (ps->at.facts & HK__F_HOST)
        return hk__http_fail(ps, 400, "several Host");
    /*
     * An empty value is allowed (a target without an authority), a port with
     * no host before it is not: RFC 9110 section 4.2.1 makes an http URI with
     * an empty host invalid, and a recipient must reject it.
     */
    if (!hk__http_authority_ok(v, n) || (n > 0 && v[0] == ':'))
        return hk__http_fail(ps, 400, "bad Host");
    ps->at.facts |= HK__F_HOST;
    if (!(ps->at.facts & HK__F_ABSOLUTE)) {
        ps->host = v;
        ps->host_len = n;
    }
    return 0;
}

/*
 * A complete field line line[0..len), CRLF included, already valid in shape;
 * colon is its colon when the scan saw it in this call, NULL otherwise.
 */
static int field_line(struct hk__http_parse *ps, const char *line, size_t len, const char *colon)
{
    if (!colon)
        colon = memchr(line, ':', len);
    const char *v = colon + 1, *ve = line + len - 2;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    size_t name_len = (size_t)(colon - line), n = (size_t)(ve - v);
    hk_http_header_t *h = &ps->headers[ps->at.num_headers++];
    h->name = line;
    h->name_len = name_len;
    h->value = v;
    h->value_len = n;

    switch (classify(line, name_len)) {
    case FIELD_CONTENT_LENGTH:
        return content_length(ps, v, n);
    case FIELD_TRANSFER_ENCODING:
        return transfer_encoding(ps, v, n);
    case FIELD_CONNECTION:
        ps->at.facts |= connection_facts(v, n);
        return 0;
    case FIELD_UPGRADE:
        ps->at.facts |= HK__F_UPGRADE;
        return 0;
    case FIELD_HOST:
        return ps->request ? host(ps, v, n) : 0;
    case FIELD_EXPECT:
        if (n == 12 && hk__http_ieq(v, "100-continue", 12))
            ps->at.facts |= HK__F_CONTINUE;
        return 0;
    default:
        return 0;
    }
}

/*
 * The scan stopped at p inside a line without an error: the input ended, or a
 * limit did. A limit reached is an error at once, whatever follows.
 */
static int stopped(struct hk__http_parse *ps, size_t p, size_t line_lim)
{
    if (p == line_lim)
        return hk__http_fail(ps, 414, "request line too long");
    if (p == ps->max_head)
        return hk__http_fail(ps, 431, "head too large");
    return -EAGAIN;
}

int hk__http_head(struct hk__http_parse *ps, size_t from, size_t len)
{
    const char *buf = ps->buf;
    const char *p = buf + from;
    size_t head_lim = len < ps->max_head ? len : ps->max_head;

    for (;;) {
        int first = !(ps->at.facts & HK__F_LINE1);
        size_t line_lim = SIZE_MAX, lim = head_lim;
        /*
         * The request line's limit counts from the start of the head, empty
         * lines before it included: hk__http_no_end_yet, which may not look
         * back, checks it at that position, so one-shot and split parses of
         * the same bytes agree (counted from the line's own start, a call
         * that could not resume once missed a 414 after leading CRLFs).
         */
        if (first && ps->max_line && ps->max_line <= ps->max_head) {
            line_lim = ps->max_line;
            if (line_lim < lim)
                lim = line_lim;
        }
        if (ps->at.state == HK__ST_H_START && p < buf + lim && hk__http_tchar[(unsigned char)*p] &&
            ps->at.num_headers == ps->max_headers)
            return hk__http_fail(ps, 431, "too many header fields");

        const char *why = NULL, *colon = NULL;
        int r = hk__http_scan(&ps->at.state, &p, buf + lim, &why, &colon);
        if (r == HK__SCAN_ERROR)
            return hk__http_fail(ps, 400, why);
        if (r == HK__SCAN_MORE)
            return stopped(ps, (size_t)(p - buf), line_lim);

        const char *line = buf + ps->at.line;
        size_t n = (size_t)(p - line);
        ps->at.line = (size_t)(p - buf);
        if (r == HK__SCAN_EMPTY) {
            if (ps->at.state == HK__ST_DONE)
                return (int)ps->at.line;
            continue; /* an empty line before the request line */
        }
        int e;
        if (first) {
            ps->at.facts |= HK__F_LINE1;
            e = ps->first_line(ps->ctx, ps, line, n);
        } else {
            e = field_line(ps, line, n, colon);
        }
        if (e < 0)
            return e;
    }
}

int hk__http_start(struct hk__http_parse *ps, hk_http_resume_t *rs, size_t len, size_t last_len)
{
    if (last_len && last_len == rs->seen && last_len <= len && rs->base == (uintptr_t)ps->buf) {
        ps->at = *rs;
        return 1;
    }
    rs->seen = 0;
    if (last_len && last_len <= len &&
        hk__http_no_end_yet(ps->buf, len, last_len, ps->max_head, ps->max_line))
        return -EAGAIN;
    return 0;
}

void hk__http_stop(const struct hk__http_parse *ps, hk_http_resume_t *rs, int r, size_t len)
{
    *rs = ps->at;
    rs->seen = r == -EAGAIN ? len : 0; /* a finished or failed head is parsed again from 0 */
    rs->base = (uintptr_t)ps->buf;
}
