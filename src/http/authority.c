/*
 * The authority of a request: the Host field value, the host of an
 * absolute-form target and of CONNECT's target. RFC 9112 section 3.2 wants a
 * 400 for a Host value that is not valid, and "valid" is RFC 3986's grammar:
 *
 *     authority = host [ ":" port ]      (no userinfo in http URIs)
 *     host      = "[" IPv6 or IPvFuture "]" / reg-name (IPv4 is a reg-name)
 *     reg-name  = *( unreserved / pct-encoded / sub-delims )
 *     port      = *DIGIT
 *
 * Checking the byte classes alone (what the scanner does) let "x:abc" and
 * "[::1" through. Inside brackets only the bytes an IPv6 address or an
 * IPvFuture can hold are accepted; the address itself is not parsed.
 */
#include <stdbool.h>

#include "http/internal.h"

static int unreserved_or_sub_delim(unsigned char c)
{
    return hk__http_hostc[c] && c != ':' && c != '[' && c != ']' && c != '%';
}

/* reg-name bytes from a[*i]; stops at ':' or the end. 0, or -1 on a bad byte or escape. */
static int reg_name(const char *a, size_t n, size_t *i)
{
    while (*i < n && a[*i] != ':') {
        unsigned char c = (unsigned char)a[*i];
        if (c == '%') {
            if (*i + 2 >= n || !hk__http_hex1[(unsigned char)a[*i + 1]] ||
                !hk__http_hex1[(unsigned char)a[*i + 2]])
                return -1;
            *i += 3;
        } else if (unreserved_or_sub_delim(c)) {
            (*i)++;
        } else {
            return -1;
        }
    }
    return 0;
}

/* "[...]" from a[*i] = '['; 0 with *i past ']', or -1. */
static int ip_literal(const char *a, size_t n, size_t *i)
{
    size_t s = ++*i;
    bool future = s < n && (a[s] == 'v' || a[s] == 'V');
    while (*i < n && a[*i] != ']') {
        unsigned char c = (unsigned char)a[*i];
        bool ok =
            hk__http_hex1[c] || c == ':' || c == '.' || (future && unreserved_or_sub_delim(c));
        if (!ok)
            return -1;
        (*i)++;
    }
    if (*i == n || *i == s)
        return -1;
    (*i)++;
    return 0;
}

int hk__http_authority_ok(const char *a, size_t n)
{
    size_t i = 0;
    if (n > 0 && a[0] == '[') {
        if (ip_literal(a, n, &i) < 0)
            return 0;
    } else if (reg_name(a, n, &i) < 0) {
        return 0;
    }
    if (i == n)
        return 1;
    if (a[i] != ':')
        return 0;
    for (i++; i < n; i++)
        if (a[i] < '0' || a[i] > '9')
            return 0;
    return 1;
}
