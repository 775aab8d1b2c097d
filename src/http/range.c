/*
 * Range headers (RFC 9110 section 14.2), one byte range at most.
 *
 * Why only one: a multipart/byteranges answer costs the server a boundary
 * per range and lets a client ask for the same bytes many times over (the
 * "Apache Killer" attack asked for hundreds of overlapping ranges). RFC 9110
 * lets a server ignore Range; it is ignored (answer 200) when it holds several
 * ranges, another unit or bad syntax, and only refused (416) when it is a
 * well-formed single range that the representation cannot satisfy. Numbers
 * too large for 64 bits saturate: they are well-formed, just out of range.
 */
#include "http/internal.h"

/* 1*DIGIT at s[*i]: returns 0 with *v set (saturated), or -1 without a digit. */
static int number(const char *s, size_t n, size_t *i, uint64_t *v)
{
    size_t start = *i;
    uint64_t x = 0;
    for (; *i < n && s[*i] >= '0' && s[*i] <= '9'; (*i)++) {
        unsigned d = (unsigned)(s[*i] - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    *v = x;
    return *i > start ? 0 : -1;
}

int hk_http_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first,
                        uint64_t *last)
{
    size_t n = len;
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    while (n > 0 && (value[0] == ' ' || value[0] == '\t')) {
        value++;
        n--;
    }
    size_t i = 0;
    while (i < n && hk__http_tchar[(unsigned char)value[i]])
        i++;
    if (i == 0 || i == n || value[i] != '=')
        return -EINVAL;
    if (i != 5 || !hk__http_ieq(value, "bytes", 5))
        return -ENOTSUP;
    i++;
    /*
     * The range set is a list, whose empty elements a recipient ignores (RFC
     * 9110 section 5.6.1.2): "bytes=0-5," is the one range 0-5. The list is
     * walked once, so any number of them costs one pass.
     */
    size_t start = 0, end = 0;
    int ranges = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && value[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (value[a] == ' ' || value[a] == '\t'))
            a++;
        while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t'))
            b--;
        if (b > a) {
            if (++ranges > 1)
                return -ENOTSUP;
            start = a;
            end = b;
        }
        i = j + 1;
    }
    if (ranges == 0)
        return -EINVAL;
    i = start;
    n = end;

    uint64_t a, b;
    if (i < n && value[i] == '-') { /* suffix: the last b bytes */
        i++;
        if (number(value, n, &i, &b) < 0 || i != n)
            return -EINVAL;
        if (b == 0)
            return -ERANGE;
        if (size == 0) /* satisfiable (RFC 9110 section 14.1.3), but no byte to send in a 206 */
            return -ENODATA;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 0;
    }
    if (number(value, n, &i, &a) < 0 || i == n || value[i] != '-')
        return -EINVAL;
    i++;
    b = UINT64_MAX;
    if (i < n && (number(value, n, &i, &b) < 0 || i != n))
        return -EINVAL;
    if (a > b)
        return -EINVAL;
    if (a >= size)
        return -ERANGE;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return 0;
}
