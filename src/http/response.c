/*
 * Response heads from an upstream: the status line, then the same field-line
 * rules and framing checks as requests (a proxy that reads a response body
 * differently from its client is as exposed as one that misreads requests).
 */
#include "http/internal.h"

#include <limits.h>

/* The complete status line, valid in shape: HTTP/d.d SP 3DIGIT [SP reason] CRLF. */
static int status_line(void *ctx, struct hk__http_parse *ps, const char *line, size_t len)
{
    hk_http_response_t *res = ctx;
    if (line[5] != '1')
        return hk__http_fail(ps, 502, "HTTP version not supported");
    ps->at.minor_version = line[7] == '0' ? 0 : 1;
    int code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (code < 100 || code > 599)
        return hk__http_fail(ps, 502, "bad status code");
    res->status = code;
    /* "HTTP/1.1 200\r\n" (no SP, no reason) is 14 bytes; the reason starts at 13. */
    res->reason = len >= 15 ? line + 13 : line + 12;
    res->reason_len = len >= 15 ? len - 15 : 0;
    return 0;
}

int hk_http_parse_response(hk_http_response_t *res, const char *buf, size_t len, size_t last_len)
{
    size_t max_head = res->max_head ? res->max_head : HK_HTTP_MAX_HEAD_DEFAULT;
    res->error = NULL;
    struct hk__http_parse ps = {
        .buf = buf,
        .headers = res->headers,
        .max_headers = res->headers ? res->max_headers : 0,
        .max_head = max_head > INT_MAX ? INT_MAX : max_head,
        .at = {.state = HK__ST_SL_VERSION, .content_length = -1},
        .first_line = status_line,
        .ctx = res,
    };
    int s = hk__http_start(&ps, &res->_resume, len, last_len);
    if (s < 0)
        return s;
    if (s == 0) {
        res->status = 0;
        res->reason = NULL;
        res->reason_len = 0;
        res->flags = 0;
    }
    int r = hk__http_head(&ps, s == 1 ? last_len : 0, len);
    if (r > 0) {
        res->flags = hk__http_keep_alive(ps.at.minor_version, ps.at.facts);
        if (ps.at.facts & HK__F_TE)
            res->flags |= HK_HTTP_CHUNKED;
    }
    hk__http_stop(&ps, &res->_resume, r, len);
    res->minor_version = ps.at.minor_version;
    res->num_headers = ps.at.num_headers;
    res->content_length = ps.at.content_length;
    if (r == -EBADMSG)
        res->error = ps.error;
    return r;
}
