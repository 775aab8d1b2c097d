/*
 * The access log: formats a line per request and hands it to hk_log_access.
 *
 * Why the escaping: every field but the status and the byte count comes from
 * the client, and a log line is parsed later by tools that trust its shape.
 * A raw '"' in a User-Agent would end the quoted field early, a raw newline
 * would start a forged line, an escape sequence would reach an operator's
 * terminal. So text formats escape as nginx does ('"', '\', control bytes
 * and everything from 0x7f up as \xHH, which keeps a line pure ASCII) and
 * JSON escapes as JSON requires, keeping valid UTF-8 and replacing invalid
 * bytes with U+FFFD so that every line parses.
 *
 * Why fields are cut: the logger refuses a line longer than
 * HK_LOG_ACCESS_LINE_MAX, and an escaped byte may take six. Each field has a
 * budget of output bytes, the budgets add up to less than a record, and a
 * field is cut before the first escape that would not fit, never inside one.
 *
 * Why the time is cached: a busy worker logs thousands of lines a second and
 * the formatted time changes once a second; each thread keeps the last
 * second it formatted (CLOCK_REALTIME_COARSE, read from the vDSO).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"

/* Output bytes a field may take; with the fixed parts they stay below one record. */
#define BUDGET_REMOTE 64
#define BUDGET_METHOD 64
#define BUDGET_TARGET 4096
#define BUDGET_HEADER 1024 /* referer, user agent */

_Static_assert(BUDGET_REMOTE + BUDGET_METHOD + BUDGET_TARGET + 2 * BUDGET_HEADER + 256 <
                   HK_LOG_ACCESS_LINE_MAX,
               "an access line must fit one record");

typedef struct out {
    char *p;
    char *end;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (n > (size_t)(o->end - o->p))
        n = (size_t)(o->end - o->p);
    memcpy(o->p, s, n);
    o->p += n;
}

static void put_str(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_num(out_t *o, int64_t v)
{
    char tmp[24];
    char *t = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--t = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--t = '-';
    put(o, t, (size_t)(tmp + sizeof tmp - t));
}

static const char hex_upper[] = "0123456789ABCDEF";

/* nginx's default escaping, into at most budget bytes. */
static void put_text(out_t *o, const char *s, size_t n, size_t budget)
{
    char *limit = (size_t)(o->end - o->p) < budget ? o->end : o->p + budget;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        if (limit - o->p < (plain ? 1 : 4))
            break;
        if (plain) {
            *o->p++ = (char)c;
            continue;
        }
        o->p[0] = '\\';
        o->p[1] = 'x';
        o->p[2] = hex_upper[c >> 4];
        o->p[3] = hex_upper[c & 15];
        o->p += 4;
    }
}

/*
 * Bytes of the well-formed UTF-8 sequence at s (2 to 4), 0 if there is none:
 * RFC 3629's table, whose second-byte ranges exclude overlong forms,
 * surrogates and code points above U+10FFFF.
 */
static size_t utf8_valid(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* A JSON string's contents, into at most budget bytes. */
static void put_json(out_t *o, const char *str, size_t n, size_t budget)
{
    const unsigned char *s = (const unsigned char *)str;
    char *limit = (size_t)(o->end - o->p) < budget ? o->end : o->p + budget;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        char esc[8];
        const char *src = esc;
        size_t len, take = 1;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
            src = (const char *)s + i;
            len = 1;
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            len = 2;
        } else if (c >= 0x80 && (take = utf8_valid(s + i, n - i)) != 0) {
            src = (const char *)s + i;
            len = take;
        } else if (c >= 0x80) {
            src = "\\ufffd";
            len = 6;
            take = 1;
        } else {
            /* Control bytes and DEL: \n, \r, \t or \u00XX. */
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 'u';
            len = 2;
            if (esc[1] == 'u') {
                memcpy(esc + 2, "00", 2);
                esc[4] = hex_upper[c >> 4];
                esc[5] = hex_upper[c & 15];
                len = 6;
            }
        }
        if ((size_t)(limit - o->p) < len)
            break;
        memcpy(o->p, src, len);
        o->p += len;
        i += take;
    }
}

/* The calendar second, formatted once per thread per second. */
typedef struct tcache {
    time_t sec;
    char clf[80]; /* 27/Nov/2026:13:15:39 +0000 */
    char iso[80]; /* 2026-11-27T13:15:39Z */
} tcache_t;

static _Thread_local tcache_t tcache = {.sec = (time_t)-1};

static const tcache_t *now_formatted(void)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != tcache.sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(tcache.clf, sizeof tcache.clf, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        snprintf(tcache.iso, sizeof tcache.iso, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        tcache.sec = ts.tv_sec;
    }
    return &tcache;
}

/* The client's address without its port, as nginx's $remote_addr: 10.0.0.1, ::1, unix:. */
static size_t remote_addr(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    if (ss->ss_family == AF_UNIX) {
        snprintf(buf, size, "unix:");
        return 5;
    }
    int n = hk_addr_format((const struct sockaddr *)ss, sizeof *ss, buf, size);
    if (n <= 0) {
        snprintf(buf, size, "-");
        return 1;
    }
    char *end = strrchr(buf, ':'); /* "1.2.3.4:80", "[::1]:80" */
    size_t len = end ? (size_t)(end - buf) : (size_t)n;
    if (ss->ss_family == AF_INET6 && len >= 2 && buf[0] == '[' && buf[len - 1] == ']') {
        len -= 2;
        memmove(buf, buf + 1, len);
    }
    return len;
}

typedef struct fields {
    char remote[96];
    size_t remote_len;
    const char *method, *target, *proto;
    size_t method_len, target_len;
    const hk_http_header_t *referer, *ua;
} fields_t;

static void gather(fields_t *f, const httpd_conn_t *c, const hk_http_request_t *req)
{
    memset(f, 0, sizeof *f);
    f->remote_len = remote_addr(&c->peer, f->remote, sizeof f->remote);
    if (!req)
        return;
    if (req->method) {
        f->method = req->method;
        f->method_len = req->method_len;
        f->proto = req->minor_version == 0 ? "HTTP/1.0" : "HTTP/1.1";
    }
    if (req->target) {
        f->target = req->target;
        f->target_len = req->target_len;
    }
    if (req->headers) {
        f->referer = hk_http_find_header(req->headers, req->num_headers, "Referer");
        f->ua = hk_http_find_header(req->headers, req->num_headers, "User-Agent");
    }
}

/* " \"value\"" of a header in combined format, "-" when absent. */
static void put_text_header(out_t *o, const hk_http_header_t *h)
{
    put_str(o, " \"");
    if (h)
        put_text(o, h->value, h->value_len, BUDGET_HEADER);
    else
        put_str(o, "-");
    put_str(o, "\"");
}

static void format_text(out_t *o, const fields_t *f, const tcache_t *t, int status, uint64_t bytes,
                        bool combined)
{
    put_text(o, f->remote, f->remote_len, BUDGET_REMOTE);
    put_str(o, " - - [");
    put_str(o, t->clf);
    put_str(o, "] \"");
    if (f->method) {
        put_text(o, f->method, f->method_len, BUDGET_METHOD);
        put_str(o, " ");
        put_text(o, f->target, f->target_len, BUDGET_TARGET);
        put_str(o, " ");
        put_str(o, f->proto);
    } else {
        put_str(o, "-");
    }
    put_str(o, "\" ");
    put_num(o, status);
    put_str(o, " ");
    put_num(o, (int64_t)(bytes > INT64_MAX ? INT64_MAX : bytes));
    if (combined) {
        put_text_header(o, f->referer);
        put_text_header(o, f->ua);
    }
}

/* ,"key":"value" with the value escaped for JSON. */
static void put_json_field(out_t *o, const char *key, const char *v, size_t n, size_t budget)
{
    put_str(o, ",\"");
    put_str(o, key);
    put_str(o, "\":\"");
    put_json(o, v, n, budget);
    put_str(o, "\"");
}

static void format_json(out_t *o, const fields_t *f, const tcache_t *t, int status, uint64_t bytes)
{
    put_str(o, "{\"time\":\"");
    put_str(o, t->iso);
    put_str(o, "\"");
    put_json_field(o, "remote", f->remote, f->remote_len, BUDGET_REMOTE);
    put_json_field(o, "method", f->method, f->method_len, BUDGET_METHOD);
    put_json_field(o, "target", f->target, f->target_len, BUDGET_TARGET);
    put_json_field(o, "proto", f->proto, f->proto ? strlen(f->proto) : 0, BUDGET_METHOD);
    put_str(o, ",\"status\":");
    put_num(o, status);
    put_str(o, ",\"bytes\":");
    put_num(o, (int64_t)(bytes > INT64_MAX ? INT64_MAX : bytes));
    put_json_field(o, "referer", f->referer ? f->referer->value : NULL,
                   f->referer ? f->referer->value_len : 0, BUDGET_HEADER);
    put_json_field(o, "ua", f->ua ? f->ua->value : NULL, f->ua ? f->ua->value_len : 0,
                   BUDGET_HEADER);
    put_str(o, "}");
}

void httpd_access_log(const httpd_conn_t *c, const hk_http_request_t *req, int status,
                      uint64_t bytes)
{
    const httpd_config_t *cfg = c->gen->cfg;
    if (!cfg->access_log)
        return;
    fields_t f;
    gather(&f, c, req);
    const tcache_t *t = now_formatted();
    char line[HK_LOG_ACCESS_LINE_MAX];
    out_t o = {line, line + sizeof line - 1}; /* hk_log_access adds the newline */
    if (cfg->access_format == HTTPD_LOG_JSON)
        format_json(&o, &f, t, status, bytes);
    else
        format_text(&o, &f, t, status, bytes, cfg->access_format == HTTPD_LOG_COMBINED);
    /* A refused line is counted by the logger; the request is not the place to retry. */
    (void)hk_log_access(line, (size_t)(o.p - line));
}

/* The access_log path in effect (control thread only). */
static char *current_path;

int httpd_access_open(const httpd_config_t *cfg)
{
    if (!cfg->access_log)
        return 0;
    int r = hk_log_access_open(cfg->access_log);
    if (r < 0)
        return r;
    free(current_path);
    current_path = strdup(cfg->access_log);
    return current_path ? 0 : -ENOMEM;
}

int httpd_access_reload(const httpd_config_t *cfg)
{
    if (!cfg->access_log)
        return 0;
    if (!current_path)
        return httpd_access_open(cfg);
    if (strcmp(current_path, cfg->access_log) == 0)
        return 0;
    /* hk_log_access_reopen takes paths: "-" would be a file named "-". */
    if (strcmp(current_path, "-") == 0 || strcmp(cfg->access_log, "-") == 0)
        return -ENOTSUP;
    /*
     * The writer opens the new path later and keeps the old sink if it
     * cannot: find that out now, or current_path would name a file that is
     * not the sink, and a later reload to the same path would change nothing.
     */
    int fd = open(cfg->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    char *copy = strdup(cfg->access_log);
    if (!copy)
        return -ENOMEM;
    int r = hk_log_access_reopen(copy);
    if (r < 0) {
        free(copy);
        return r;
    }
    free(current_path);
    current_path = copy;
    return 0;
}
