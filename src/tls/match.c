/*
 * Matching peer-supplied names: the client's SNI name against the
 * configured certificate names, and its ALPN list against ours.
 *
 * Why this is its own file: both inputs come straight from a ClientHello,
 * before any authentication, so these functions must be correct for any
 * bytes. They are pure and fuzzed (tests/tls/fuzz_tls.c).
 */
#include <string.h>

#include "tls/internal.h"

/*
 * ASCII-only lower case: DNS names fold A-Z alone (RFC 4343), whatever
 * locale the program set (in a Turkish one, tolower('I') is not 'i').
 */
static unsigned char hk__tls_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Case-insensitive equality of a[0..n) and b[0..n). */
static int hk__tls_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (hk__tls_lower((unsigned char)a[i]) != hk__tls_lower((unsigned char)b[i]))
            return 0;
    }
    return 1;
}

int hk__tls_name_match(const char *pattern, const char *name)
{
    size_t plen = strlen(pattern), nlen = strlen(name);
    if (!plen || !nlen)
        return 0;
    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.com" stands for exactly one non-empty label. */
        const char *dot = strchr(name, '.');
        if (!dot || dot == name)
            return 0;
        size_t rest = nlen - (size_t)(dot - name);
        return rest == plen - 1 && hk__tls_ieq(dot, pattern + 1, rest);
    }
    return plen == nlen && hk__tls_ieq(pattern, name, nlen);
}

int hk__tls_alpn_select(const unsigned char *server, unsigned server_len,
                        const unsigned char *client, unsigned client_len, const unsigned char **out,
                        unsigned char *outlen)
{
    /* The client's list must be well formed as a whole before we pick from it. */
    for (unsigned j = 0; j < client_len; j += 1u + client[j]) {
        if (client[j] == 0 || j + 1u + client[j] > client_len)
            return 0;
    }
    for (unsigned i = 0; i + 1u <= server_len && i + 1u + server[i] <= server_len;
         i += 1u + server[i]) {
        for (unsigned j = 0; j < client_len; j += 1u + client[j]) {
            if (client[j] == server[i] && memcmp(client + j + 1, server + i + 1, server[i]) == 0) {
                *out = client + j + 1;
                *outlen = client[j];
                return 1;
            }
        }
    }
    return 0;
}
