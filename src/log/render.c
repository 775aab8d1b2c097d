/*
 * The writer's side of formatting: a record becomes one text or JSON line.
 *
 * Why here and not in the caller: escaping, the level name and the calendar
 * date cost more than the copy they replace, and the writer has the time.
 * The caller stores the raw CLOCK_REALTIME nanoseconds and the unescaped
 * bytes with their lengths; this file owns the output syntax.
 *
 * What must never happen is a value that breaks the line: a newline that
 * starts a fake line, a quote that closes a string early, a control byte
 * that a terminal interprets, or invalid UTF-8 that makes a JSON parser
 * reject the line. So every byte is checked: text values are quoted when
 * they hold anything but plain characters, JSON strings escape quotes,
 * backslashes and control bytes, and bytes that are not valid UTF-8 become
 * \xNN in text and U+FFFD in JSON. Each input byte becomes at most six output
 * bytes, which bounds a line (HK__LINE_MAX).
 */
#include <stdio.h>
#include <string.h>

#include "log/internal.h"

static const char hexd[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at s (2 to 4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static char *put_u(char *o, uint64_t v)
{
    char tmp[24];
    int n = sizeof tmp;
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(o, tmp + n, sizeof tmp - (size_t)n);
    return o + (sizeof tmp - (size_t)n);
}

static char *put_s(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

static char *put2(char *o, unsigned v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
    return o + 2;
}

/* 2026-11-27T10:59:01.123456Z; the date part is cached per second. */
static char *put_ts(char *o, uint64_t ns)
{
    static _Thread_local uint64_t cached_sec = UINT64_MAX;
    static _Thread_local char cached[20];
    uint64_t sec = ns / 1000000000u;
    if (sec != cached_sec) {
        /* Days to civil date: Howard Hinnant's algorithm, no time zone, no locale. */
        int64_t z = (int64_t)(sec / 86400) + 719468;
        int64_t era = z / 146097;
        unsigned doe = (unsigned)(z - era * 146097);
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t y = (int64_t)yoe + era * 400;
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        unsigned mp = (5 * doy + 2) / 153;
        unsigned d = doy - (153 * mp + 2) / 5 + 1;
        unsigned m = mp < 10 ? mp + 3 : mp - 9;
        y += m <= 2;
        unsigned sod = (unsigned)(sec % 86400);
        char *c = cached;
        c = put2(c, (unsigned)(y / 100 % 100));
        c = put2(c, (unsigned)(y % 100));
        *c++ = '-';
        c = put2(c, m);
        *c++ = '-';
        c = put2(c, d);
        *c++ = 'T';
        c = put2(c, sod / 3600);
        *c++ = ':';
        c = put2(c, sod / 60 % 60);
        *c++ = ':';
        c = put2(c, sod % 60);
        *c++ = '.';
        cached_sec = sec;
    }
    memcpy(o, cached, 20);
    o += 20;
    unsigned us = (unsigned)(ns % 1000000000u / 1000u);
    for (int i = 5; i >= 0; i--) {
        o[i] = (char)('0' + us % 10);
        us /= 10;
    }
    o += 6;
    *o++ = 'Z';
    return o;
}

/* Escapes s into o without the surrounding quotes; json selects the dialect. */
static char *put_escaped(char *o, const unsigned char *s, size_t n, int json)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = utf8_seq(s + i, n - i);
            if (len) {
                memcpy(o, s + i, len);
                o += len;
                i += len;
            } else if (json) {
                o = put_s(o, "\\ufffd");
                i++;
            } else {
                *o++ = '\\';
                *o++ = 'x';
                *o++ = hexd[c >> 4];
                *o++ = hexd[c & 15];
                i++;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hexd[c >> 4];
            *o++ = hexd[c & 15];
            break;
        }
        i++;
    }
    return o;
}

static char *put_quoted(char *o, const unsigned char *s, size_t n, int json)
{
    *o++ = '"';
    o = put_escaped(o, s, n, json);
    *o++ = '"';
    return o;
}

/* A text value goes bare only when it is non-empty plain printable ASCII without '=' or quotes. */
static int text_bare(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return 0;
    }
    return 1;
}

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int json_number(const unsigned char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return 0;
    }
    if (i < n && s[i] == '.') {
        size_t j = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t j = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return 0;
    }
    return i == n;
}

static char *put_text_key(char *o, const unsigned char *k, size_t n)
{
    if (n == 0) {
        *o++ = '_';
        return o;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned c = k[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-' || c == ':' || c == '/' || c == '@';
        *o++ = ok ? (char)c : '_';
    }
    return o;
}

static uint16_t get_u16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

size_t hk__log_render(char *out, const hk__log_rec_t *rec, int format)
{
    const unsigned char *p = (const unsigned char *)rec + HK__REC_HDR;
    const unsigned char *end = (const unsigned char *)rec + rec->size;
    int json = format == HK_LOG_JSON;
    const char *lvl = hk_log_level_name((hk_log_level_t)rec->level);
    size_t mlen = get_u16(p);
    const unsigned char *msg = p + 2;
    p = msg + mlen;

    char *o = out;
    if (json) {
        o = put_s(o, "{\"ts\":\"");
        o = put_ts(o, rec->ts_ns);
        o = put_s(o, "\",\"level\":\"");
        o = put_s(o, lvl);
        o = put_s(o, "\",\"msg\":");
    } else {
        o = put_ts(o, rec->ts_ns);
        o = put_s(o, " level=");
        o = put_s(o, lvl);
        o = put_s(o, " msg=");
    }
    o = put_quoted(o, msg, mlen, json);

    while (end - p >= (ptrdiff_t)HK__FIELD_HDR) {
        unsigned flags = p[0];
        size_t klen = get_u16(p + 1), vlen = get_u16(p + 3);
        const unsigned char *k = p + HK__FIELD_HDR, *v = k + klen;
        if ((size_t)(end - k) < klen + vlen)
            break; /* cannot happen with records from fmt.c */
        p = v + vlen;
        if (json) {
            *o++ = ',';
            if (klen)
                o = put_quoted(o, k, klen, 1);
            else
                o = put_s(o, "\"_\"");
            *o++ = ':';
            if ((flags & HK__FIELD_NUMERIC) && json_number(v, vlen)) {
                memcpy(o, v, vlen);
                o += vlen;
            } else {
                o = put_quoted(o, v, vlen, 1);
            }
        } else {
            *o++ = ' ';
            o = put_text_key(o, k, klen);
            *o++ = '=';
            if (text_bare(v, vlen)) {
                memcpy(o, v, vlen);
                o += vlen;
            } else {
                o = put_quoted(o, v, vlen, 0);
            }
        }
    }
    if (rec->flags & HK__REC_TRUNCATED)
        o = put_s(o, json ? ",\"truncated\":true" : " truncated=true");
    if (json)
        *o++ = '}';
    *o++ = '\n';
    return (size_t)(o - out);
}

static unsigned char *note_field(unsigned char *p, const char *k, const char *v, unsigned flags)
{
    size_t klen = strlen(k), vlen = strlen(v);
    if (vlen > 1024)
        vlen = 1024;
    uint16_t k16 = (uint16_t)klen, v16 = (uint16_t)vlen;
    p[0] = (unsigned char)flags;
    memcpy(p + 1, &k16, 2);
    memcpy(p + 3, &v16, 2);
    memcpy(p + HK__FIELD_HDR, k, klen);
    memcpy(p + HK__FIELD_HDR + klen, v, vlen);
    return p + HK__FIELD_HDR + klen + vlen;
}

size_t hk__log_render_note(char *out, int format, int level, uint64_t ts_ns, const char *msg,
                           const char *k1, uint64_t v1, const char *k2, const char *v2)
{
    _Alignas(8) unsigned char buf[HK__REC_HDR + 2 + 3 * 1024 + 3 * HK__FIELD_HDR + 64];
    unsigned char *p = buf + HK__REC_HDR;
    size_t mlen = strnlen(msg, 1024);
    uint16_t m16 = (uint16_t)mlen;
    memcpy(p, &m16, 2);
    memcpy(p + 2, msg, mlen);
    p += 2 + mlen;
    char num[24];
    *put_u(num, v1) = '\0';
    p = note_field(p, k1, num, HK__FIELD_NUMERIC);
    if (k2 && v2)
        p = note_field(p, k2, v2, 0);
    hk__log_rec_t h = {
        .size = (uint32_t)(p - buf), .kind = HK__REC_LINE, .level = (uint8_t)level, .ts_ns = ts_ns};
    memcpy(buf, &h, sizeof h);
    return hk__log_render(out, (const hk__log_rec_t *)buf, format);
}
