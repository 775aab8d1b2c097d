/*
 * The heads a proxy forwards. Hop-by-hop headers describe one connection,
 * not the message (RFC 9110 section 7.6.1): Connection itself, every header
 * it names, and the fixed list below. Forwarding them would let a client
 * steer the proxy's own connection to the upstream (Connection: close on a
 * pooled connection, Upgrade, Transfer-Encoding that no longer matches the
 * framing we send), so each direction drops them and states its own.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

typedef struct out {
    char *p;
    size_t len, cap;
    bool over;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->over || n > o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_str(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_header(out_t *o, const hk_http_header_t *h)
{
    put(o, h->name, h->name_len);
    put(o, ": ", 2);
    put(o, h->value, h->value_len);
    put(o, "\r\n", 2);
}

static bool name_is(const hk_http_header_t *h, const char *name)
{
    return strlen(name) == h->name_len && strncasecmp(h->name, name, h->name_len) == 0;
}

/* Is name one of the comma-separated tokens of v? */
static bool token_listed(const char *v, size_t vlen, const char *name, size_t nlen)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == nlen && nlen > 0 && strncasecmp(v + start, name, nlen) == 0)
            return true;
    }
    return false;
}

/*
 * A connection option may not name a header meant for every recipient (RFC
 * 9110 section 7.6.1); the framing and Host of what we forward are never
 * dropped for one: "Connection: Content-Length" once sent a body upstream
 * without its length, to be read there as the next request.
 */
static bool end_to_end(const hk_http_header_t *h)
{
    return name_is(h, "Content-Length") || name_is(h, "Host");
}

static bool hop_by_hop(const hk_http_header_t *h, const hk_http_header_t *all, size_t n)
{
    static const char *const fixed[] = {"Connection", "Keep-Alive",        "Proxy-Connection", "TE",
                                        "Trailer",    "Transfer-Encoding", "Upgrade"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (name_is(h, fixed[i]))
            return true;
    }
    if (end_to_end(h))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (name_is(&all[i], "Connection") &&
            token_listed(all[i].value, all[i].value_len, h->name, h->name_len))
            return true;
    }
    return false;
}

int64_t httpd_proxy_max_forwards(const hk_http_request_t *req)
{
    if (req->method_id != HK_HTTP_OPTIONS && req->method_id != HK_HTTP_TRACE)
        return -1;
    const hk_http_header_t *h = hk_http_find_header(req->headers, req->num_headers, "Max-Forwards");
    if (!h || h->value_len == 0 || h->value_len > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return -1; /* not ours to repair: forwarded as it came */
        v = v * 10 + (h->value[i] - '0');
    }
    return v;
}

size_t httpd_proxy_request_head_max(const hk_http_request_t *req, size_t head_len,
                                    const httpd_proxy_reqinfo_t *info)
{
    return head_len + 4 * req->num_headers + strlen(info->host) + strlen(info->client_addr) + 256;
}

ssize_t httpd_proxy_request_head(char *buf, size_t cap, const hk_http_request_t *req,
                                 const httpd_proxy_reqinfo_t *info)
{
    out_t o = {buf, 0, cap, false};
    put(&o, req->method, req->method_len);
    put(&o, " ", 1);
    /*
     * An absolute-form target ("http://a/p") names the host, and it wins over
     * Host (RFC 9112 section 3.2.2): the upstream gets the origin form and a
     * Host made from that authority, so that it cannot see two different hosts.
     */
    bool absolute = req->target_len > 0 && req->target[0] != '/' && req->target[0] != '*';
    if (absolute) {
        put(&o, req->path, req->path_len);
        if (req->query) {
            put(&o, "?", 1);
            put(&o, req->query, req->query_len);
        }
    } else {
        put(&o, req->target, req->target_len);
    }
    put_str(&o, " HTTP/1.1\r\n");
    const hk_http_header_t *hs = req->headers;
    /* OPTIONS and TRACE count their hops down (RFC 9110 section 7.6.2); 0 never gets here. */
    int64_t max_forwards = httpd_proxy_max_forwards(req);
    for (size_t i = 0; i < req->num_headers; i++) {
        const hk_http_header_t *h = &hs[i];
        if ((max_forwards > 0 && name_is(h, "Max-Forwards")) || (absolute && name_is(h, "Host")) ||
            hop_by_hop(h, hs, req->num_headers) || name_is(h, "Expect") ||
            name_is(h, "X-Forwarded-For") || name_is(h, "X-Forwarded-Proto") ||
            (info->chunked && name_is(h, "Content-Length")))
            continue;
        put_header(&o, h);
    }
    if (absolute && req->host) {
        put_str(&o, "Host: ");
        put(&o, req->host, req->host_len);
        put(&o, "\r\n", 2);
    } else if (!req->host) {
        char line[300];
        bool v6 = strchr(info->host, ':') && info->host[0] != '[';
        int n =
            info->port > 0
                ? snprintf(line, sizeof(line), v6 ? "Host: [%s]:%d\r\n" : "Host: %s:%d\r\n",
                           info->host, info->port)
                : snprintf(line, sizeof(line), v6 ? "Host: [%s]\r\n" : "Host: %s\r\n", info->host);
        if (n < 0 || (size_t)n >= sizeof(line))
            return -ENOSPC;
        put(&o, line, (size_t)n);
    }
    if (max_forwards > 0) {
        char line[48];
        int n = snprintf(line, sizeof(line), "Max-Forwards: %lld\r\n", (long long)max_forwards - 1);
        put(&o, line, (size_t)n);
    }
    /* Earlier proxies' addresses first (unless Connection names the field), then the client's. */
    put_str(&o, "X-Forwarded-For: ");
    for (size_t i = 0; i < req->num_headers; i++) {
        if (name_is(&hs[i], "X-Forwarded-For") && hs[i].value_len > 0 &&
            !hop_by_hop(&hs[i], hs, req->num_headers)) {
            put(&o, hs[i].value, hs[i].value_len);
            put(&o, ", ", 2);
        }
    }
    put_str(&o, info->client_addr);
    put_str(&o,
            info->https ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
    /* Via names the protocol the message came in with (RFC 9110 section 7.6.3), not ours. */
    put_str(&o, req->minor_version == 0 ? "Via: 1.0 hark\r\n" : "Via: 1.1 hark\r\n");
    if (info->chunked)
        put_str(&o, "Transfer-Encoding: chunked\r\n");
    if (info->close)
        put_str(&o, "Connection: close\r\n");
    put(&o, "\r\n", 2);
    return o.over ? -ENOSPC : (ssize_t)o.len;
}

size_t httpd_proxy_response_head_max(const hk_http_response_t *res, size_t head_len)
{
    return head_len + 4 * res->num_headers + 320;
}

ssize_t httpd_proxy_response_head(char *buf, size_t cap, const hk_http_response_t *res,
                                  const httpd_proxy_respinfo_t *info)
{
    out_t o = {buf, 0, cap, false};
    char line[32];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %03d ", res->status);
    put(&o, line, (size_t)n);
    put(&o, res->reason, res->reason_len);
    put(&o, "\r\n", 2);
    const hk_http_header_t *hs = res->headers;
    bool dated = false, length = false;
    for (size_t i = 0; i < res->num_headers; i++) {
        const hk_http_header_t *h = &hs[i];
        bool cl = name_is(h, "Content-Length");
        /*
         * A repeated Content-Length (the parser lets equal values through,
         * RFC 9110 section 8.6) goes once: two lines read as "5, 5", which a
         * sender must not forward.
         */
        if (hop_by_hop(h, hs, res->num_headers) || (cl && (info->drop_length || length)))
            continue;
        length = length || cl;
        dated = dated || name_is(h, "Date");
        put_header(&o, h);
    }
    /* A recipient with a clock adds the Date an origin left out (RFC 9110 section 6.6.1). */
    if (!dated && info->date) {
        put_str(&o, "Date: ");
        put_str(&o, info->date);
        put(&o, "\r\n", 2);
    }
    if (info->chunked)
        put_str(&o, "Transfer-Encoding: chunked\r\n");
    if (!info->keep_alive)
        put_str(&o, "Connection: close\r\n");
    else if (info->client_10)
        put_str(&o, "Connection: keep-alive\r\n");
    put_str(&o, res->minor_version == 0 ? "Via: 1.0 hark\r\n\r\n" : "Via: 1.1 hark\r\n\r\n");
    return o.over ? -ENOSPC : (ssize_t)o.len;
}
