/*
 * Request heads: the request line's meaning (method, target form, version)
 * and the checks that need the whole head (Host, keep-alive).
 *
 * The target forms (RFC 9112 section 3.2) are tied to methods: "*" only for
 * OPTIONS, host:port only (and always) for CONNECT, origin-form "/..." or
 * absolute-form "http(s)://authority/..." for the rest. A server that routes
 * on the path must not be handed "*" or an authority as if it were one.
 */
#include "http/internal.h"

#include <limits.h>

static const struct {
    const char *name;
    size_t len;
    hk_http_method_t id;
} methods[] = {
    {"GET", 3, HK_HTTP_GET},     {"HEAD", 4, HK_HTTP_HEAD},       {"POST", 4, HK_HTTP_POST},
    {"PUT", 3, HK_HTTP_PUT},     {"DELETE", 6, HK_HTTP_DELETE},   {"OPTIONS", 7, HK_HTTP_OPTIONS},
    {"PATCH", 5, HK_HTTP_PATCH}, {"CONNECT", 7, HK_HTTP_CONNECT}, {"TRACE", 5, HK_HTTP_TRACE},
};

static hk_http_method_t method_id(const char *m, size_t n)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (methods[i].len == n && memcmp(m, methods[i].name, n) == 0)
            return methods[i].id;
    return HK_HTTP_OTHER;
}

/* Splits t[0..n) (starting with '/' or '?') into path and query. */
static void split_path(hk_http_request_t *req, const char *t, size_t n)
{
    const char *q = memchr(t, '?', n);
    size_t plen = q ? (size_t)(q - t) : n;
    req->path = t;
    req->path_len = plen;
    if (plen == 0) { /* "http://host?x": the path is "/" */
        req->path = "/";
        req->path_len = 1;
    }
    if (q) {
        req->query = q + 1;
        req->query_len = n - plen - 1;
    }
}

/*
 * An authority with a host: RFC 9110 section 4.2.1 makes an http(s) URI with
 * an empty host invalid, and a recipient must reject it. The host is empty
 * exactly when the authority starts with the port's ':'.
 */
static int authority_ok(const char *a, size_t n)
{
    return n > 0 && a[0] != ':' && hk__http_authority_ok(a, n);
}

/*
 * CONNECT's authority-form, uri-host ":" port (RFC 9112 section 3.2.3). The
 * port is what follows the last ':'; what is before it must be one host, with
 * no ':' of its own outside an IP literal's brackets: "h:80:443" is not a
 * host and a port, and a tunnel must not be opened to one reading of it.
 */
static int connect_target(const char *t, size_t n)
{
    size_t colon = n;
    while (colon > 0 && t[colon - 1] != ':')
        colon--;
    if (colon < 2 || colon == n || !authority_ok(t, colon - 1))
        return 0;
    if (t[0] == '[' ? t[colon - 2] != ']' : memchr(t, ':', colon - 1) != NULL)
        return 0;
    for (size_t i = colon; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return 0;
    return 1;
}

/* absolute-form: "http://" or "https://", an authority, then an optional path and query. */
static int absolute_target(hk_http_request_t *req, struct hk__http_parse *ps, const char *t,
                           size_t n)
{
    size_t s;
    if (n >= 7 && hk__http_ieq(t, "http://", 7))
        s = 7;
    else if (n >= 8 && hk__http_ieq(t, "https://", 8))
        s = 8;
    else
        return 0;
    size_t a = s;
    while (a < n && t[a] != '/' && t[a] != '?')
        a++;
    if (!authority_ok(t + s, a - s))
        return 0;
    ps->host = t + s; /* RFC 9112 section 3.2.2: the target's authority wins over Host */
    ps->host_len = a - s;
    ps->at.facts |= HK__F_ABSOLUTE;
    split_path(req, t + a, n - a);
    return 1;
}

static int target_form(hk_http_request_t *req, struct hk__http_parse *ps)
{
    const char *t = req->target;
    size_t n = req->target_len;
    if (t[0] == '/') {
        if (req->method_id == HK_HTTP_CONNECT)
            return hk__http_fail(ps, 400, "CONNECT needs host:port");
        split_path(req, t, n);
        return 0;
    }
    if (req->method_id == HK_HTTP_CONNECT) {
        if (!connect_target(t, n))
            return hk__http_fail(ps, 400, "CONNECT needs host:port");
        req->path = "";
        return 0;
    }
    if (t[0] == '*' && n == 1) {
        if (req->method_id != HK_HTTP_OPTIONS)
            return hk__http_fail(ps, 400, "'*' is for OPTIONS only");
        req->path = t;
        req->path_len = 1;
        return 0;
    }
    if (!absolute_target(req, ps, t, n))
        return hk__http_fail(ps, 400, "bad request-target");
    return 0;
}

/* The complete request line, valid in shape: method SP target SP HTTP/d.d CRLF. */
static int request_line(void *ctx, struct hk__http_parse *ps, const char *line, size_t len)
{
    hk_http_request_t *req = ctx;
    const char *sp = memchr(line, ' ', len);
    const char *version = line + len - 10;
    req->method = line;
    req->method_len = (size_t)(sp - line);
    req->method_id = method_id(line, req->method_len);
    req->target = sp + 1;
    req->target_len = (size_t)(version - 1 - req->target);
    if (version[5] != '1')
        return hk__http_fail(ps, 505, "HTTP version not supported");
    /* HTTP/1.2 and later minors are answered as 1.1 (RFC 9110 section 2.5). */
    ps->at.minor_version = version[7] == '0' ? 0 : 1;
    return target_form(req, ps);
}

/* Checks that need the whole head, and the flags. */
static int finish(hk_http_request_t *req, struct hk__http_parse *ps)
{
    if (!(ps->at.facts & HK__F_HOST) && ps->at.minor_version == 1)
        return hk__http_fail(ps, 400, "no Host");
    unsigned flags = hk__http_keep_alive(ps->at.minor_version, ps->at.facts);
    if (ps->at.facts & HK__F_TE)
        flags |= HK_HTTP_CHUNKED;
    if (ps->at.minor_version == 1) { /* both are ignored in HTTP/1.0 */
        if (ps->at.facts & HK__F_CONTINUE)
            flags |= HK_HTTP_EXPECT_CONTINUE;
        if ((ps->at.facts & HK__F_CONN_UPG) && (ps->at.facts & HK__F_UPGRADE))
            flags |= HK_HTTP_UPGRADE;
    }
    req->flags = flags;
    return 0;
}

int hk_http_parse_request(hk_http_request_t *req, const char *buf, size_t len, size_t last_len)
{
    size_t max_head = req->limits.max_head ? req->limits.max_head : HK_HTTP_MAX_HEAD_DEFAULT;
    size_t max_line = req->limits.max_request_line ? req->limits.max_request_line
                                                   : HK_HTTP_MAX_REQUEST_LINE_DEFAULT;
    if (max_head > INT_MAX)
        max_head = INT_MAX;
    if (max_line > max_head)
        max_line = max_head;
    req->status = 0;
    req->error = NULL;
    struct hk__http_parse ps = {
        .buf = buf,
        .headers = req->headers,
        .max_headers = req->headers ? req->max_headers : 0,
        .max_head = max_head,
        .max_line = max_line + 2,
        .at = {.state = HK__ST_RL_START, .content_length = -1},
        .request = 1,
        .first_line = request_line,
        .ctx = req,
    };
    int s = hk__http_start(&ps, &req->_resume, len, last_len);
    if (s < 0)
        return s;
    if (s == 1) {
        ps.host = req->host;
        ps.host_len = req->host_len;
    } else {
        req->method_id = HK_HTTP_OTHER;
        req->method = req->target = req->path = req->query = NULL;
        req->method_len = req->target_len = req->path_len = req->query_len = 0;
        req->flags = 0;
    }
    int r = hk__http_head(&ps, s == 1 ? last_len : 0, len);
    if (r > 0)
        r = finish(req, &ps) < 0 ? -EBADMSG : r;
    hk__http_stop(&ps, &req->_resume, r, len);
    req->minor_version = ps.at.minor_version;
    req->num_headers = ps.at.num_headers;
    req->content_length = ps.at.content_length;
    req->host = ps.host;
    req->host_len = ps.host_len;
    if (r == -EBADMSG) {
        req->status = ps.status;
        req->error = ps.error;
    }
    return r;
}

static unsigned lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

const hk_http_header_t *hk_http_find_header(const hk_http_header_t *headers, size_t n,
                                            const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++) {
        const hk_http_header_t *h = &headers[i];
        if (h->name_len != len)
            continue;
        size_t j = 0;
        while (j < len && lower((unsigned char)h->name[j]) == lower((unsigned char)name[j]))
            j++;
        if (j == len)
            return h;
    }
    return NULL;
}
