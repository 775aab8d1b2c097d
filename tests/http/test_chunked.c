/*
 * The chunked decoder: a body with extensions and trailers decoded whole,
 * byte by byte and split at every one and every pair of points gives the
 * same payload and the same end; malformed bodies fail.
 */
#include "util.h"

static const char body[] = "5;ext=1\r\nhello\r\n"
                           "1A ; a=\"q v\" ;b\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                           "001\r\n!\r\n"
                           "0;last=yes\r\nTrailer-A: x\r\nB:  y \r\n\r\n"
                           "NEXT";
static const char payload[] = "helloabcdefghijklmnopqrstuvwxyz!";

struct out {
    char data[256];
    size_t len;
    size_t end; /* offset of the next message in the whole input, when complete */
    int r;
};

/* Decodes the input in the pieces [cuts[i-1], cuts[i]), each in its own buffer. */
static void decode_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts, struct out *o)
{
    hk_http_chunked_t dec = {0};
    size_t from = 0;
    o->len = 0;
    o->r = 0;
    for (size_t i = 0; i <= ncuts && o->r == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        size_t len = to - from;
        char *piece = malloc(len ? len : 1);
        memcpy(piece, in + from, len);
        o->r = hk_http_chunked_decode(&dec, piece, &len);
        cr_assert_leq(len, to - from);
        memcpy(o->data + o->len, piece, len);
        o->len += len;
        if (o->r == 1) {
            o->end = from + dec.end_offset;
            cr_assert_eq(memcmp(piece + dec.end_offset, in + o->end, to - o->end), 0,
                         "the bytes after the body are untouched");
        }
        free(piece);
        from = to;
    }
}

static void check(const struct out *o, const char *what)
{
    size_t n = strlen(body);
    cr_assert_eq(o->r, 1, "%s: r=%d", what, o->r);
    cr_assert_eq(o->len, strlen(payload), "%s: %zu bytes", what, o->len);
    cr_assert_eq(memcmp(o->data, payload, o->len), 0, "%s", what);
    cr_assert_eq(o->end, n - 4, "%s: end %zu", what, o->end);
}

Test(chunked, whole_and_byte_by_byte)
{
    size_t n = strlen(body);
    struct out o;
    decode_pieces(body, n, NULL, 0, &o);
    check(&o, "whole");
    size_t cuts[256];
    for (size_t i = 0; i < n - 1; i++)
        cuts[i] = i + 1;
    decode_pieces(body, n, cuts, n - 1, &o);
    check(&o, "byte by byte");
}

Test(chunked, every_split)
{
    size_t n = strlen(body);
    for (size_t i = 0; i <= n; i++) {
        struct out o;
        decode_pieces(body, n, &i, 1, &o);
        check(&o, "two pieces");
        for (size_t j = i; j <= n; j++) {
            size_t cuts[2] = {i, j};
            decode_pieces(body, n, cuts, 2, &o);
            check(&o, "three pieces");
        }
    }
}

Test(chunked, in_place_and_after_end)
{
    char buf[] = "3\r\nabc\r\n0\r\n\r\nrest";
    size_t len = sizeof buf - 1;
    hk_http_chunked_t dec = {0};
    cr_assert_eq(hk_http_chunked_decode(&dec, buf, &len), 1);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    cr_assert_eq(dec.end_offset, 13);
    cr_assert_eq(memcmp(buf + 13, "rest", 4), 0);
    len = 4;
    cr_assert_eq(hk_http_chunked_decode(&dec, buf + 13, &len), 1, "complete stays complete");
    cr_assert_eq(len, 0);
    /* Whole inputs: the result, the payload length, then the end or the bytes still due. */
    static const struct {
        const char *in;
        int r;
        size_t len;
        uint64_t end_or_remaining;
    } cases[] = {
        {"0\r\n\r\n", 1, 0, 5},                           /* an empty body */
        {"a\r\n01234", 0, 5, 5},                          /* incomplete: the payload so far */
        {"ffffffffffffffff\r\nxy", 0, 2, UINT64_MAX - 2}, /* the largest size that fits */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char in[64];
        strcpy(in, cases[i].in);
        hk_http_chunked_t d = {0};
        len = strlen(in);
        cr_assert_eq(hk_http_chunked_decode(&d, in, &len), cases[i].r, "%zu", i);
        cr_assert_eq(len, cases[i].len, "%zu", i);
        cr_assert_eq(cases[i].r ? d.end_offset : d.remaining, cases[i].end_or_remaining, "%zu", i);
    }
}

static int decode_str(const char *s)
{
    size_t len = strlen(s);
    char *buf = malloc(len + 1);
    memcpy(buf, s, len + 1);
    hk_http_chunked_t dec = {0};
    int r = hk_http_chunked_decode(&dec, buf, &len);
    free(buf);
    return r;
}

Test(chunked, malformed)
{
    static const char *const bad[] = {
        "x\r\n",                     /* not hex */
        "-5\r\nhello\r\n0\r\n\r\n",  /* sign */
        "+5\r\nhello\r\n0\r\n\r\n",  /* sign */
        "0x5\r\nhello\r\n0\r\n\r\n", /* prefix */
        " 5\r\nhello\r\n0\r\n\r\n",  /* leading space */
        "5 \r\nhello\r\n0\r\n\r\n",  /* whitespace not before ';' */
        "\r\n",                      /* no size */
        ";x\r\n",                    /* no size */
        "10000000000000000\r\n",     /* 2^64 */
        "5\nhello\r\n0\r\n\r\n",     /* bare LF after the size */
        "5\rhello\r\n0\r\n\r\n",     /* bare CR after the size */
        "5\r\nhelloX\r\n0\r\n\r\n",  /* data longer than its size */
        "5\r\nhello\n0\r\n\r\n",     /* bare LF after the data */
        "5\r\nhello\r0\r\n\r\n",     /* bare CR after the data */
        "5;a\x01\r\nhello\r\n",      /* control char in an extension */
        "5;a\nhello\r\n",            /* LF in an extension */
        "0\r\n\n",                   /* bare LF ending the trailers */
        "0\r\nA: b\n\r\n",           /* bare LF after a trailer */
        "0\r\nA: b\r\n c\r\n\r\n",   /* folded trailer */
        "0\r\nA : b\r\n\r\n",        /* space before a colon */
        "0\r\n: b\r\n\r\n",          /* empty trailer name */
        "0\r\nA: \x7f\r\n\r\n",      /* DEL in a trailer */
        "0\r\n\rX",                  /* CR without LF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(decode_str(bad[i]), -EBADMSG, "accepted: %s", bad[i]);
    cr_assert_eq(decode_str("5 ;a\r\nhello\r\n0\r\n\r\n"), 1, "whitespace before ';' is BWS");
    cr_assert_eq(decode_str("5\t; a = \"b\"\r\nhello\r\n0\r\n\r\n"), 1);
    cr_assert_eq(decode_str("A\r\n0123456789\r\n0\r\n\r\n"), 1);
}

Test(chunked, bounds)
{
    /* Trailers: 8 KiB including the final CRLF are fine, one byte more is not. */
    size_t cap = 8192;
    char *s = malloc(cap + 64);
    for (int extra = 0; extra <= 1; extra++) {
        strcpy(s, "0\r\nX: ");
        size_t at = strlen(s), value = cap - 7 + (size_t)extra;
        memset(s + at, 'v', value);
        strcpy(s + at + value, "\r\n\r\n");
        cr_assert_eq(strlen(s) - 3, cap + (size_t)extra);
        cr_assert_eq(decode_str(s), extra ? -EBADMSG : 1, "trailers of %zu bytes", cap + extra);
    }
    /* A size line with its extensions: 4 KiB including CRLF. */
    for (int extra = 0; extra <= 1; extra++) {
        strcpy(s, "1;");
        memset(s + 2, 'e', 4096 - 4 + (size_t)extra);
        strcpy(s + 4096 - 2 + extra, "\r\nz\r\n0\r\n\r\n");
        cr_assert_eq(decode_str(s), extra ? -EBADMSG : 1);
    }
    free(s);
}
