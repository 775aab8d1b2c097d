/*
 * The line scanner: the one place that decides which bytes a head may hold.
 *
 * Why a resumable byte-level state machine: a request head arrives in pieces,
 * and the server must both (a) look at each new byte only once, however the
 * head is split, and (b) reject a head as soon as its prefix is bad, so that
 * a client that never finishes a bad request cannot hold a buffer. Both
 * follow if the validity of every byte depends only on a small state reached
 * at the byte before it: the state is saved when the input runs out, and the
 * next call resumes there. The same code serves one-shot and incremental
 * parsing, so the two cannot disagree on what is valid.
 *
 * Speed: inside the long parts (target, field values) the state does not
 * change for many bytes; those are skipped eight at a time with word tricks
 * (a byte below 0x20, DEL or '#' stops the skip) before the byte loop decides.
 * The scanner never reads at or past end.
 */
#include "http/internal.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

const uint8_t hk__http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,         ['&'] = 1,         ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,         ['^'] = 1,         ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

const uint8_t hk__http_vchar[256] = {
    ['\t'] = 1,
    [0x20 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

/* Request-target bytes: visible ASCII but '#' (no fragment in a request), and obs-text. */
static const uint8_t target_c[256] = {
    [0x21 ... 0x22] = 1,
    [0x24 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

const uint8_t hk__http_hostc[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['-'] = 1, ['.'] = 1, ['_'] = 1,
    ['~'] = 1,         ['%'] = 1,         ['!'] = 1,         ['$'] = 1, ['&'] = 1, ['\''] = 1,
    ['('] = 1,         [')'] = 1,         ['*'] = 1,         ['+'] = 1, [','] = 1, [';'] = 1,
    ['='] = 1,         [':'] = 1,         ['['] = 1,         [']'] = 1,
};

/* Hex digit values plus one, so that 0 means "not a hex digit". */
const uint8_t hk__http_hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/*
 * Skips the bytes of class cls, which holds every byte but those up to low,
 * DEL and b, except maybe HTAB (let through by the byte loop). Blocks that
 * hold none of those bytes are skipped whole: 16 at a time with SSE2, 8 with
 * word arithmetic elsewhere.
 */
static inline const unsigned char *span(const uint8_t *cls, unsigned low, unsigned b,
                                        const unsigned char *p, const unsigned char *e)
{
#if defined(__SSE2__)
    const __m128i vlow = _mm_set1_epi8((char)low), vdel = _mm_set1_epi8(0x7f);
    const __m128i vb = _mm_set1_epi8((char)b);
    while (e - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i bad = _mm_cmpeq_epi8(_mm_max_epu8(v, vlow), vlow); /* v <= low */
        bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmpeq_epi8(v, vdel), _mm_cmpeq_epi8(v, vb)));
        unsigned mask = (unsigned)_mm_movemask_epi8(bad);
        if (mask == 0) {
            p += 16;
            continue;
        }
        p += __builtin_ctz(mask);
        if (!cls[*p])
            return p;
        p++; /* an HTAB in a field value */
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (e - p >= 8) {
        uint64_t x, y, z;
        memcpy(&x, p, 8);
        y = x ^ (ones * 0x7f);
        z = x ^ (ones * b);
        if (((x - ones * (low + 1)) & ~x & highs) | ((y - ones) & ~y & highs) |
            ((z - ones) & ~z & highs)) {
            const unsigned char *stop = p + 8;
            while (p < stop && cls[*p])
                p++;
            if (p < stop)
                return p;
        } else {
            p += 8;
        }
    }
#endif
    while (p < e && cls[*p])
        p++;
    return p;
}

/* Skips token characters, four at a time while it can. */
static inline const unsigned char *span_token(const unsigned char *p, const unsigned char *e)
{
    while (e - p >= 4 && (hk__http_tchar[p[0]] & hk__http_tchar[p[1]] & hk__http_tchar[p[2]] &
                          hk__http_tchar[p[3]]))
        p += 4;
    while (p < e && hk__http_tchar[*p])
        p++;
    return p;
}

/* "HTTP/d.d": 'd' is any digit. */
static int version_byte(unsigned k, unsigned c)
{
    static const char shape[] = "HTTP/d.d";
    if (shape[k] == 'd')
        return c >= '0' && c <= '9';
    return c == (unsigned char)shape[k];
}

static int fail(const char **why, const char *msg, unsigned c)
{
    *why = c == '\n' ? "LF without CR" : msg;
    return HK__SCAN_ERROR;
}

int hk__http_scan(unsigned *state, const char **pos, const char *end, const char **why,
                  const char **colon)
{
    const unsigned char *p = (const unsigned char *)*pos;
    const unsigned char *e = (const unsigned char *)end;
    unsigned st = *state;
    int r = HK__SCAN_MORE;

    /* Cases fall through along the usual order of a line, to stay in the loop below. */
    while (p < e && r == HK__SCAN_MORE) {
        switch (st) {
        case HK__ST_RL_START:
            if (*p == '\r') {
                st = HK__ST_RL_EMPTY;
                p++;
                break;
            }
            if (!hk__http_tchar[*p])
                return fail(why, "bad character in method", *p);
            st = HK__ST_METHOD;
            /* fallthrough */
        case HK__ST_METHOD:
            p = span_token(p, e);
            if (p == e)
                break;
            if (*p != ' ')
                return fail(why, "bad character in method", *p);
            st = HK__ST_TARGET0;
            if (++p == e)
                break;
            /* fallthrough */
        case HK__ST_TARGET0:
            if (!target_c[*p])
                return fail(why, "bad request-target", *p);
            st = HK__ST_TARGET;
            /* fallthrough */
        case HK__ST_TARGET:
            p = span(target_c, 0x20, '#', p, e);
            if (p == e)
                break;
            if (*p != ' ')
                return fail(why, "bad character in request-target", *p);
            p++;
            st = HK__ST_RQ_VERSION;
            break;
        case HK__ST_RL_EMPTY:
            if (*p != '\n')
                return fail(why, "CR without LF", *p);
            p++;
            st = HK__ST_RL_START;
            r = HK__SCAN_EMPTY;
            break;
        case HK__ST_RL_CR:
            if (*p != '\r')
                return fail(why, "bad HTTP version", *p);
            p++;
            st = HK__ST_LINE_LF;
            break;
        case HK__ST_H_START:
            if (*p == '\r') {
                st = HK__ST_END_LF;
                p++;
                break;
            }
            if (!hk__http_tchar[*p]) {
                if (*p == ' ' || *p == '\t')
                    return fail(why, "obsolete line folding", *p);
                return fail(why, "bad character in field name", *p);
            }
            st = HK__ST_H_NAME;
            /* fallthrough */
        case HK__ST_H_NAME:
            p = span_token(p, e);
            if (p == e)
                break;
            if (*p != ':') {
                if (*p == ' ' || *p == '\t')
                    return fail(why, "whitespace before colon", *p);
                return fail(why, "bad character in field name", *p);
            }
            *colon = (const char *)p++;
            st = HK__ST_H_VALUE;
            /* fallthrough */
        case HK__ST_H_VALUE:
        case HK__ST_SL_REASON:
            p = span(hk__http_vchar, 0x1f, 0x7f, p, e);
            if (p == e)
                break;
            if (*p != '\r')
                return fail(why, "control character in field value", *p);
            st = HK__ST_LINE_LF;
            if (++p == e)
                break;
            /* fallthrough */
        case HK__ST_LINE_LF:
            if (*p != '\n')
                return fail(why, "CR without LF", *p);
            p++;
            st = HK__ST_H_START;
            r = HK__SCAN_LINE;
            break;
        case HK__ST_END_LF:
            if (*p != '\n')
                return fail(why, "CR without LF", *p);
            p++;
            st = HK__ST_DONE;
            r = HK__SCAN_EMPTY;
            break;
        case HK__ST_SL_SP:
            if (*p != ' ')
                return fail(why, "bad HTTP version", *p);
            p++;
            st = HK__ST_SL_CODE;
            break;
        case HK__ST_SL_AFTER_CODE:
            if (*p == ' ')
                st = HK__ST_SL_REASON;
            else if (*p == '\r')
                st = HK__ST_LINE_LF;
            else
                return fail(why, "bad status code", *p);
            p++;
            break;
        default:
            if (st >= HK__ST_RQ_VERSION && st < HK__ST_SL_CODE) {
                unsigned base = st < HK__ST_SL_VERSION ? HK__ST_RQ_VERSION : HK__ST_SL_VERSION;
                if (!version_byte(st - base, *p))
                    return fail(why, "bad HTTP version", *p);
                st++;
                if (st == base + 8)
                    st = base == HK__ST_RQ_VERSION ? HK__ST_RL_CR : HK__ST_SL_SP;
            } else if (st >= HK__ST_SL_CODE && st < HK__ST_SL_CODE + 3) {
                if (*p < '0' || *p > '9')
                    return fail(why, "bad status code", *p);
                st = st == HK__ST_SL_CODE + 2 ? HK__ST_SL_AFTER_CODE : st + 1;
            } else {
                return fail(why, "no more input expected", *p); /* HK__ST_DONE */
            }
            p++;
            break;
        }
    }
    *state = st;
    *pos = (const char *)p;
    return r;
}

int hk__http_no_end_yet(const char *buf, size_t len, size_t last_len, size_t max_head,
                        size_t max_line)
{
    if (len >= max_head || (last_len < max_line && len >= max_line))
        return 0;
    const unsigned char *b = (const unsigned char *)buf, *e = b + len;
    const unsigned char *p = b + (last_len >= 3 ? last_len - 3 : 0);
    while ((p = span(hk__http_vchar, 0x1f, 0x7f, p, e)) < e) {
        if (*p == '\n') {
            if (p == b || p[-1] != '\r')
                return 0; /* bare LF */
            if (p - b >= 3 && p[-2] == '\n' && p[-3] == '\r')
                return 0; /* CRLF CRLF: the end of the head, or empty lines before it */
        } else if (*p != '\r' || (p + 1 < e && p[1] != '\n')) {
            return 0; /* a control character, or a bare CR */
        }
        p++;
    }
    return 1;
}
