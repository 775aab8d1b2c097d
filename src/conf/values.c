/*
 * Typed values and messages of hark/conf.h.
 *
 * Why every getter writes its own message: "invalid value" sends a person
 * hunting through the file; "hark.conf:12:16: expected a duration such as
 * 10s, got "ten"" does not. So each getter knows the argument's position
 * and says what it wanted. Numbers are read digit by digit with an overflow
 * check before each multiplication (strtoull accepts signs, spaces and hex,
 * and saturates silently), and what is quoted in a message is escaped and
 * cut, because it may be anything the fuzzer or an attacker wrote.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conf/internal.h"

#define HK__QUOTE_CUT 40 /* input bytes shown before "..." */

const char *hk_conf_quote(const char *s, size_t len, char *buf, size_t buflen)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[HK_CONF_QUOTE_MAX];
    size_t o = 0;
    tmp[o++] = '"';
    size_t shown = len > HK__QUOTE_CUT ? HK__QUOTE_CUT : len;
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            tmp[o++] = '\\';
            tmp[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            tmp[o++] = '\\';
            tmp[o++] = 'x';
            tmp[o++] = hex[c >> 4];
            tmp[o++] = hex[c & 15];
        } else {
            tmp[o++] = (char)c;
        }
    }
    tmp[o++] = '"';
    if (shown < len) {
        memcpy(tmp + o, "...", 3);
        o += 3;
    }
    tmp[o] = '\0';
    if (buflen) {
        size_t n = o < buflen - 1 ? o : buflen - 1;
        memcpy(buf, tmp, n);
        buf[n] = '\0';
    }
    return buf;
}

static int vformat(char *err, size_t errlen, const hk_conf_pos_t *pos, const char *fmt, va_list ap)
{
    if (!err || !errlen)
        return -EINVAL;
    int n = snprintf(err, errlen, "%s:%u:%u: ", pos->file ? pos->file : "(config)", pos->line,
                     pos->col);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    return -EINVAL;
}

int hk_conf_errorf(char *err, size_t errlen, const hk_conf_pos_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat(err, errlen, pos, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *describe(const hk_conf_arg_t *a, char *buf, size_t buflen)
{
    if (a->end && a->len == 0)
        return "end of file";
    return hk_conf_quote(a->str, a->len, buf, buflen);
}

int hk_conf_error_arg(char *err, size_t errlen, const hk_conf_arg_t *a, const char *what)
{
    char q[HK_CONF_QUOTE_MAX];
    return hk_conf_errorf(err, errlen, &a->pos, "expected %s, got %s", what,
                          describe(a, q, sizeof q));
}

const hk_conf_arg_t *hk_conf_arg(const hk_conf_node_t *d, size_t i)
{
    return i < d->nargs ? &d->args[i] : &d->end;
}

int hk_conf_expect(const hk_conf_node_t *d, size_t min_args, size_t max_args, hk_conf_block_t block,
                   char *err, size_t errlen)
{
    char what[128];
    const char *ender = block == HK_CONF_NO_BLOCK ? "\";\"" : "\";\" or \"{\"";
    if (d->nargs < min_args) {
        snprintf(what, sizeof what, "%zu argument%s to \"%.40s\"", min_args,
                 min_args == 1 ? "" : "s", d->name);
        return hk_conf_error_arg(err, errlen, &d->end, what);
    }
    if (d->nargs > max_args) {
        if (max_args == 0)
            snprintf(what, sizeof what, "%s after \"%.40s\"", ender, d->name);
        else
            snprintf(what, sizeof what, "%s after %zu argument%s of \"%.40s\"", ender, max_args,
                     max_args == 1 ? "" : "s", d->name);
        return hk_conf_error_arg(err, errlen, &d->args[max_args], what);
    }
    if (block == HK_CONF_BLOCK && !d->block) {
        snprintf(what, sizeof what, "a block \"{ ... }\" after \"%.40s\"", d->name);
        return hk_conf_error_arg(err, errlen, &d->end, what);
    }
    if (block == HK_CONF_NO_BLOCK && d->block) {
        snprintf(what, sizeof what, "\";\" to end \"%.40s\" (it takes no block)", d->name);
        return hk_conf_error_arg(err, errlen, &d->end, what);
    }
    return 0;
}

/* Reads the leading decimal digits of s; *end = the first byte after them. */
static int read_digits(const char *s, uint64_t *v, const char **end)
{
    uint64_t x = 0;
    const char *p = s;
    int rc = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            rc = -ERANGE; /* keep reading: the unit may still be wrong */
        else
            x = x * 10 + d;
    }
    *end = p;
    *v = x;
    return p == s ? -EINVAL : rc;
}

static int scaled(uint64_t v, uint64_t unit, uint64_t *out)
{
    if (v > UINT64_MAX / unit)
        return -ERANGE;
    *out = v * unit;
    return 0;
}

int hk_conf_duration(const hk_conf_arg_t *a, uint64_t *ns, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1},        {"us", 1000},          {"ms", 1000000},         {"s", 1000000000},
        {"", 1000000000}, {"m", 60000000000ull}, {"h", 3600000000000ull},
    };
    const char *rest;
    uint64_t v;
    int rc = a->end ? -EINVAL : read_digits(a->str, &v, &rest);
    if (rc != -EINVAL) {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (strcmp(rest, units[i].name) != 0)
                continue;
            /*
             * At most HK_CONF_DURATION_MAX (2^62 ns, about 146 years): a
             * deadline "now + d" (even two such terms) must not wrap, or a
             * huge timeout would fire at once. 5124095h once passed and
             * closed every connection of hark-httpd as it was accepted.
             */
            if (rc == 0 && scaled(v, units[i].ns, ns) == 0 && *ns <= HK_CONF_DURATION_MAX)
                return 0;
            hk_conf_error_arg(err, errlen, a, "a duration of at most 1281023h");
            return -ERANGE;
        }
    }
    return hk_conf_error_arg(err, errlen, a,
                             "a duration such as 10s (a number and ns, us, ms, s, m or h)");
}

int hk_conf_size(const hk_conf_arg_t *a, uint64_t *bytes, char *err, size_t errlen)
{
    const char *rest;
    uint64_t v;
    int rc = a->end ? -EINVAL : read_digits(a->str, &v, &rest);
    if (rc != -EINVAL && strlen(rest) <= 1) {
        unsigned shift = 64;
        switch (rest[0]) {
        case '\0':
            shift = 0;
            break;
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        }
        if (shift < 64) {
            if (rc == 0 && scaled(v, (uint64_t)1 << shift, bytes) == 0)
                return 0;
            hk_conf_error_arg(err, errlen, a, "a size of at most 17179869183g");
            return -ERANGE;
        }
    }
    return hk_conf_error_arg(err, errlen, a, "a size such as 32k (a number and k, m or g)");
}

int hk_conf_bool(const hk_conf_arg_t *a, bool *v, char *err, size_t errlen)
{
    if (!a->end && strcmp(a->str, "on") == 0) {
        *v = true;
        return 0;
    }
    if (!a->end && strcmp(a->str, "off") == 0) {
        *v = false;
        return 0;
    }
    return hk_conf_error_arg(err, errlen, a, "on or off");
}

int hk_conf_uint(const hk_conf_arg_t *a, uint64_t min, uint64_t max, uint64_t *v, char *err,
                 size_t errlen)
{
    const char *rest;
    uint64_t x;
    int rc = a->end ? -EINVAL : read_digits(a->str, &x, &rest);
    if (rc == 0 && *rest == '\0' && x >= min && x <= max) {
        *v = x;
        return 0;
    }
    char what[96];
    snprintf(what, sizeof what, "an integer from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    hk_conf_error_arg(err, errlen, a, what);
    return rc == -EINVAL || *rest != '\0' ? -EINVAL : -ERANGE;
}

int hk_conf_string(const hk_conf_arg_t *a, const char *what, char *err, size_t errlen)
{
    if (!a->end && a->len > 0)
        return 0;
    return hk_conf_error_arg(err, errlen, a, what);
}

int hk_conf_kv(const hk_conf_arg_t *a, const char *key, hk_conf_arg_t *value)
{
    size_t klen = strlen(key);
    if (a->end || a->len <= klen || memcmp(a->str, key, klen) != 0 || a->str[klen] != '=')
        return 0;
    *value = *a;
    value->str = a->str + klen + 1;
    value->len = a->len - klen - 1;
    value->pos.col += (unsigned)(klen + 1 + (a->quoted ? 1 : 0));
    return 1;
}
