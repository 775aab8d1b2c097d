/*
 * The caller's side of formatting: printf conversions into a record.
 *
 * Why not vsnprintf: once a whole "k=%s" string is formatted, nothing tells
 * where a value ends, so a value with a space, a quote or a newline would
 * break the line structure, and escaping after the fact is guesswork. So we
 * walk the format ourselves: spaces in the format (not in the output) split
 * fields, the first literal '=' splits key from value, and each conversion
 * appends its output to the current value. The writer later escapes keys and
 * values knowing exactly where each one starts and ends.
 *
 * This is also the hot path. The common conversions (%d %u %x %s %c %p with
 * length modifiers, %.*s) are formatted inline; anything with flags, a width
 * or a precision goes through snprintf for that one conversion, with its
 * argument fetched by va_arg at the type printf would use (that keeps the
 * va_list valid, which passing it on to vsnprintf would not). %n writes
 * nothing. Everything is cut at the record's size and marked truncated.
 */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#include "log/internal.h"

typedef struct fbuf {
    unsigned char *p;
    unsigned char *end;
    int trunc;
} fbuf_t;

static inline void put_byte(fbuf_t *b, unsigned char c)
{
    if (b->p < b->end)
        *b->p++ = c;
    else
        b->trunc = 1;
}

static inline void put_mem(fbuf_t *b, const void *s, size_t n)
{
    size_t room = (size_t)(b->end - b->p);
    if (n > room) {
        n = room;
        b->trunc = 1;
    }
    /* s may be NULL when n is 0 (a NULL message), and memcpy(p, NULL, 0) is undefined. */
    if (n == 0)
        return;
    memcpy(b->p, s, n);
    b->p += n;
}

static void put_u64(fbuf_t *b, uint64_t v, unsigned base, int upper)
{
    static const char lo[] = "0123456789abcdef";
    static const char up[] = "0123456789ABCDEF";
    const char *digits = upper ? up : lo;
    char tmp[24];
    int n = sizeof tmp;
    do {
        tmp[--n] = digits[v % base];
        v /= base;
    } while (v);
    put_mem(b, tmp + n, sizeof tmp - (size_t)n);
}

static void put_i64(fbuf_t *b, int64_t v)
{
    if (v < 0) {
        put_byte(b, '-');
        put_u64(b, (uint64_t)0 - (uint64_t)v, 10, 0);
    } else {
        put_u64(b, (uint64_t)v, 10, 0);
    }
}

/* Argument classes: the type printf reads for a conversion and length. */
enum {
    A_INT,
    A_LONG,
    A_LLONG,
    A_INTMAX,
    A_SIZE,
    A_PTRDIFF,
    A_DOUBLE,
    A_LDOUBLE,
    A_WINT,
    A_PTR,
};

typedef union arg {
    long long ll;
    intmax_t im;
    size_t sz;
    ptrdiff_t pd;
    long l;
    int i;
    double d;
    long double ld;
    wint_t wc;
    const void *p;
} arg_t;

static void fetch(arg_t *a, int cls, va_list *ap)
{
    switch (cls) {
    case A_INT:
        a->i = va_arg(*ap, int);
        break;
    case A_LONG:
        a->l = va_arg(*ap, long);
        break;
    case A_LLONG:
        a->ll = va_arg(*ap, long long);
        break;
    case A_INTMAX:
        a->im = va_arg(*ap, intmax_t);
        break;
    case A_SIZE:
        a->sz = va_arg(*ap, size_t);
        break;
    case A_PTRDIFF:
        a->pd = va_arg(*ap, ptrdiff_t);
        break;
    case A_DOUBLE:
        a->d = va_arg(*ap, double);
        break;
    case A_LDOUBLE:
        a->ld = va_arg(*ap, long double);
        break;
    case A_WINT:
        a->wc = va_arg(*ap, wint_t);
        break;
    default:
        a->p = va_arg(*ap, const void *);
        break;
    }
}

/* One conversion through snprintf, straight into the buffer. */
static void put_spec(fbuf_t *b, const char *spec, int cls, const arg_t *a)
{
    size_t room = (size_t)(b->end - b->p);
    if (room < 2) {
        b->trunc = 1;
        return;
    }
    char *out = (char *)b->p;
    int n;
    switch (cls) {
    case A_INT:
        n = snprintf(out, room, spec, a->i);
        break;
    case A_LONG:
        n = snprintf(out, room, spec, a->l);
        break;
    case A_LLONG:
        n = snprintf(out, room, spec, a->ll);
        break;
    case A_INTMAX:
        n = snprintf(out, room, spec, a->im);
        break;
    case A_SIZE:
        n = snprintf(out, room, spec, a->sz);
        break;
    case A_PTRDIFF:
        n = snprintf(out, room, spec, a->pd);
        break;
    case A_DOUBLE:
        n = snprintf(out, room, spec, a->d);
        break;
    case A_LDOUBLE:
        n = snprintf(out, room, spec, a->ld);
        break;
    case A_WINT:
        n = snprintf(out, room, spec, a->wc);
        break;
    default:
        n = snprintf(out, room, spec, a->p);
        break;
    }
    if (n < 0)
        return; /* an encoding error (wide characters): the conversion gives nothing */
    if ((size_t)n >= room) {
        b->p += room - 1;
        b->trunc = 1;
    } else {
        b->p += n;
    }
}

/*
 * Formats the conversion at f (f[0] == '%', f[1] != '%'); returns the format
 * position after it. *isnum is set for conversions that print a number.
 */
static const char *conv(fbuf_t *b, const char *f, va_list *ap, int *isnum)
{
    const char *start = f++;
    char flags[8];
    size_t nflags = 0;
    while (*f == '-' || *f == '+' || *f == ' ' || *f == '#' || *f == '0' || *f == '\'') {
        if (nflags < sizeof flags - 2)
            flags[nflags++] = *f;
        f++;
    }
    int width = -1, prec = -1;
    if (*f == '*') {
        width = va_arg(*ap, int);
        if (width < 0) {
            flags[nflags++] = '-';
            width = width == INT_MIN ? 0 : -width;
        }
        f++;
    } else {
        while (*f >= '0' && *f <= '9')
            width = (width < 0 ? 0 : width) * 10 % 100000 + (*f++ - '0');
    }
    if (*f == '.') {
        f++;
        prec = 0;
        if (*f == '*') {
            prec = va_arg(*ap, int); /* negative: as if omitted */
            f++;
        } else {
            while (*f >= '0' && *f <= '9')
                prec = prec * 10 % 100000 + (*f++ - '0');
        }
    }
    const char *len = f;
    int lcls = A_INT; /* for integers */
    switch (*f) {
    case 'h':
        f += f[1] == 'h' ? 2 : 1;
        break;
    case 'l':
        if (f[1] == 'l') {
            lcls = A_LLONG;
            f += 2;
        } else {
            lcls = A_LONG;
            f++;
        }
        break;
    case 'q':
    case 'L':
        lcls = A_LLONG;
        f++;
        break;
    case 'j':
        lcls = A_INTMAX;
        f++;
        break;
    case 'z':
        lcls = A_SIZE;
        f++;
        break;
    case 't':
        lcls = A_PTRDIFF;
        f++;
        break;
    }
    size_t nlen = (size_t)(f - len);
    char c = *f;
    if (!c) {
        put_mem(b, start, (size_t)(f - start)); /* a dangling '%': printed as is */
        return f;
    }
    f++;
    int plain = nflags == 0 && width < 0 && prec < 0;
    int cls;
    *isnum = 0;
    switch (c) {
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o':
        *isnum = c == 'd' || c == 'i' || c == 'u';
        cls = lcls;
        break;
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G':
    case 'a':
    case 'A':
        *isnum = c != 'a' && c != 'A';
        cls = *len == 'L' ? A_LDOUBLE : A_DOUBLE;
        break;
    case 'c':
        cls = *len == 'l' ? A_WINT : A_INT;
        break;
    case 's':
    case 'p':
    case 'n':
        cls = A_PTR;
        break;
    default:
        put_mem(b, start, (size_t)(f - start)); /* unknown: printed as is, no argument */
        return f;
    }
    arg_t a;
    fetch(&a, cls, ap);
    if (c == 'n')
        return f; /* never write through a pointer from a log call */
    if (c == 's' && nflags == 0 && width < 0 && *len != 'l') {
        const char *s = a.p ? (const char *)a.p : "(null)";
        put_mem(b, s, prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s));
        return f;
    }
    if (plain && (c == 'd' || c == 'i' || c == 'u' || c == 'x' || c == 'X')) {
        int sign = c == 'd' || c == 'i';
        uint64_t u = 0;
        int64_t s = 0;
        switch (cls) {
        case A_INT:
            if (len[0] == 'h' && len[1] == 'h')
                s = sign ? (signed char)a.i : 0, u = (unsigned char)a.i;
            else if (len[0] == 'h')
                s = sign ? (short)a.i : 0, u = (unsigned short)a.i;
            else
                s = a.i, u = (unsigned)a.i;
            break;
        case A_LONG:
            s = a.l, u = (unsigned long)a.l;
            break;
        case A_LLONG:
            s = a.ll, u = (unsigned long long)a.ll;
            break;
        case A_INTMAX:
            s = a.im, u = (uintmax_t)a.im;
            break;
        case A_SIZE:
            s = (int64_t)a.sz, u = a.sz;
            break;
        default:
            s = a.pd, u = (uint64_t)a.pd;
            break;
        }
        if (sign)
            put_i64(b, s);
        else
            put_u64(b, u, c == 'u' ? 10 : 16, c == 'X');
        return f;
    }
    if (plain && c == 'c' && cls == A_INT) {
        put_byte(b, (unsigned char)a.i);
        return f;
    }
    if (plain && c == 'p') {
        if (!a.p) {
            put_mem(b, "(nil)", 5);
        } else {
            put_mem(b, "0x", 2);
            put_u64(b, (uint64_t)(uintptr_t)a.p, 16, 0);
        }
        return f;
    }
    /* Anything else: rebuild the spec with the stars resolved. */
    char spec[48];
    size_t n = 0;
    spec[n++] = '%';
    memcpy(spec + n, flags, nflags);
    n += nflags;
    if (width >= 0)
        n += (size_t)snprintf(spec + n, 12, "%d", width);
    if (prec >= 0)
        n += (size_t)snprintf(spec + n, 13, ".%d", prec);
    memcpy(spec + n, len, nlen);
    n += nlen;
    spec[n++] = c;
    spec[n] = '\0';
    put_spec(b, spec, cls, &a);
    return f;
}

static void put_u16(unsigned char *p, size_t v)
{
    uint16_t x = (uint16_t)v;
    memcpy(p, &x, sizeof x);
}

uint32_t hk__log_format(unsigned char *buf, int level, uint64_t ts_ns, const char *msg,
                        const char *fields, va_list *ap)
{
    fbuf_t b = {buf + HK__REC_HDR, buf + HK__REC_HDR + 2 + HK_LOG_LINE_MAX, 0};
    size_t mlen = msg ? strnlen(msg, HK_LOG_LINE_MAX + 1) : 0;
    b.p += 2;
    put_mem(&b, msg, mlen);
    put_u16(buf + HK__REC_HDR, (size_t)(b.p - buf) - HK__REC_HDR - 2);

    const char *f = fields ? fields : "";
    while (*f && !b.trunc) {
        if (*f == ' ') {
            f++;
            continue;
        }
        if (b.end - b.p < (ptrdiff_t)HK__FIELD_HDR + 1) {
            b.trunc = 1;
            break;
        }
        unsigned char *fh = b.p;
        b.p += HK__FIELD_HDR;
        unsigned char *kstart = b.p, *vstart = NULL;
        int nconv = 0, numeric = 0, literal = 0;
        while (*f && *f != ' ' && !b.trunc) {
            if (*f == '%' && f[1] != '%' && f[1]) {
                int isnum = 0;
                f = conv(&b, f, ap, &isnum);
                nconv++;
                numeric = isnum;
            } else if (*f == '=' && !vstart) {
                vstart = b.p;
                nconv = 0;
                literal = 0;
                f++;
            } else {
                put_byte(&b, (unsigned char)*f);
                f += *f == '%' && f[1] == '%' ? 2 : 1;
                literal = 1;
            }
        }
        size_t klen = vstart ? (size_t)(vstart - kstart) : 0;
        if (!vstart)
            vstart = kstart;
        fh[0] = nconv == 1 && numeric && !literal ? HK__FIELD_NUMERIC : 0;
        put_u16(fh + 1, klen);
        put_u16(fh + 3, (size_t)(b.p - vstart));
    }
    hk__log_rec_t h = {
        .size = (uint32_t)(b.p - buf),
        .kind = HK__REC_LINE,
        .level = (uint8_t)level,
        .flags = (uint8_t)((b.trunc || mlen > HK_LOG_LINE_MAX) ? HK__REC_TRUNCATED : 0),
        .ts_ns = ts_ns,
    };
    memcpy(buf, &h, sizeof h);
    return h.size;
}
