/*
 * Content-coding lists (Accept-Encoding, RFC 9110 section 12.5.3): the
 * weight a client gives one coding.
 *
 * Why a parser of its own and not a substring search: "gzip;q=0" refuses
 * gzip, "*;q=0.5" accepts it when it is not named, and "x-gzipped" is not
 * gzip. An element that does not parse (a bad q-value, stray bytes) is
 * skipped, as if the client had not sent it; the rest of the list still
 * counts.
 */
#include <stdbool.h>

#include "http/internal.h"

static size_t skip_ows(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

static size_t skip_token(const char *s, size_t n, size_t i)
{
    while (i < n && hk__http_tchar[(unsigned char)s[i]])
        i++;
    return i;
}

/* A quoted-string at s[i] (a parameter value): the index past it, or 0 when unterminated. */
static size_t skip_quoted(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ): thousandths, or -1. */
static int qvalue(const char *s, size_t n)
{
    if (n == 0 || (s[0] != '0' && s[0] != '1') || n > 5 || (n > 1 && s[1] != '.'))
        return -1;
    int q = (s[0] - '0') * 1000, scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

static bool same_token(const char *s, size_t n, const char *t)
{
    size_t tl = strlen(t);
    if (n != tl)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)t[i];
        if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b))
            return false;
    }
    return true;
}

int hk_http_coding_weight(const char *value, size_t len, const char *coding, int *star)
{
    int found = -1, any = -1;
    size_t i = 0;
    while (i < len) {
        i = skip_ows(value, len, i);
        if (i < len && value[i] == ',') {
            i++;
            continue;
        }
        size_t t0 = i;
        i = skip_token(value, len, i);
        size_t t1 = i;
        int q = t1 > t0 ? 1000 : -1;
        /* Parameters: only q counts, and it must be a valid qvalue. */
        for (;;) {
            i = skip_ows(value, len, i);
            if (i >= len || value[i] != ';')
                break;
            i = skip_ows(value, len, i + 1);
            size_t p0 = i;
            i = skip_token(value, len, i);
            size_t p1 = i;
            i = skip_ows(value, len, i);
            if (p1 == p0 || i >= len || value[i] != '=') {
                q = -1;
                break;
            }
            i = skip_ows(value, len, i + 1);
            size_t v0 = i;
            i = i < len && value[i] == '"' ? skip_quoted(value, len, i) : skip_token(value, len, i);
            if (i <= v0) {
                q = -1; /* no value (skipped to the next element), or a quote that never ends */
                if (i < v0)
                    i = len;
                break;
            }
            if (p1 - p0 == 1 && (value[p0] == 'q' || value[p0] == 'Q') && q >= 0)
                q = qvalue(value + v0, i - v0);
        }
        i = skip_ows(value, len, i);
        if (i < len && value[i] != ',') {
            q = -1; /* stray bytes: skip the element */
            while (i < len && value[i] != ',')
                i++;
        }
        if (q < 0)
            continue;
        if (found < 0 && same_token(value + t0, t1 - t0, coding))
            found = q;
        else if (any < 0 && t1 - t0 == 1 && value[t0] == '*')
            any = q;
    }
    if (star)
        *star = any;
    return found;
}
