/*
 * Request paths to file-system-safe paths: percent-decoding, then dot-segment
 * removal on the decoded bytes.
 *
 * Why decode first: a server that normalises the encoded path and decodes
 * afterwards serves "/%2e%2e/etc/passwd" from outside its root, because the
 * normaliser never saw a "..". Here each segment is decoded before it is
 * judged, so "%2e%2e" is "..", and an encoded "%2f" is a '/' like any other
 * (it separates segments; a name holding a '/' cannot exist on Linux). A ".."
 * that would climb above the root is refused rather than clamped, so a
 * probing request gets an error instead of a file. An encoded NUL is refused
 * because C file APIs would cut the path at it.
 */
#include "http/internal.h"

ssize_t hk_http_path_decode(const char *path, size_t len, char *out, size_t out_size)
{
    if (len == 0 || path[0] != '/')
        return -EINVAL;
    if (out_size < 2)
        return -ENAMETOOLONG;
    size_t i = 1, o = 1, cap = out_size - 1; /* out[o - 1] is always '/' at a segment start */
    out[0] = '/';
    while (i < len) {
        size_t seg = o;
        int sep = 0;
        while (i < len) { /* one segment, decoded into out[seg .. o) */
            unsigned char c = (unsigned char)path[i++];
            if (c == '%') {
                int hi = len - i >= 2 ? hk__http_hex((unsigned char)path[i]) : -1;
                int lo = len - i >= 2 ? hk__http_hex((unsigned char)path[i + 1]) : -1;
                if (hi < 0 || lo < 0)
                    return -EINVAL;
                c = (unsigned char)(hi << 4 | lo);
                i += 2;
            }
            if (c == '\0')
                return -EINVAL;
            if (c == '/') {
                sep = 1;
                break;
            }
            if (o == cap)
                return -ENAMETOOLONG;
            out[o++] = (char)c;
        }
        size_t n = o - seg;
        if (n == 1 && out[seg] == '.') {
            o = seg; /* "." */
        } else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            if (seg == 1)
                return -EINVAL; /* above the root */
            o = seg - 1;        /* back over the previous segment and its '/' */
            while (out[o - 1] != '/')
                o--;
        } else if (n > 0 && sep) {
            if (o == cap)
                return -ENAMETOOLONG;
            out[o++] = '/';
        }
    }
    out[o] = '\0';
    return (ssize_t)o;
}
