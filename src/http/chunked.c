/*
 * The chunked transfer coding (RFC 9112 section 7.1), decoded in place.
 *
 * Why a byte-level state machine: a chunked body arrives split anywhere,
 * inside a size, between CR and LF, inside a trailer, and the decoder must
 * neither buffer nor look back; each input byte is looked at once. Payload
 * bytes are moved down over the framing so the caller's buffer ends up
 * holding the payload alone; the write position never passes the read
 * position, so nothing is overwritten before it is read.
 *
 * Strictness, for the same reason as in heads (smuggling): the size is hex
 * digits only, no sign, no "0x", no whitespace but before a ';'; every line
 * ends with CRLF; a size that does not fit 64 bits is an error, not a wrap.
 * Extensions are skipped (no control characters), but a size line is capped
 * at 4 KiB so that they cannot be an unbounded stream the body limits do not
 * see. Trailer lines go through the head scanner and are capped at 8 KiB.
 */
#include "http/internal.h"

enum {
    CH_SIZE0,   /* first hex digit of a chunk size */
    CH_SIZE,    /* more hex digits, or what follows them */
    CH_SIZE_WS, /* whitespace after the size: a ';' must follow */
    CH_EXT,     /* chunk extensions, skipped */
    CH_SIZE_LF, /* LF of the size line */
    CH_DATA,    /* payload */
    CH_DATA_CR, /* CRLF after the payload */
    CH_DATA_LF,
    CH_DONE,
    CH_TRAILER = 64, /* + the head scanner's state inside the trailer section */
};

#define MAX_SIZE_LINE 4096
#define MAX_TRAILERS 8192

/* One byte of a chunk-size line or of the CRLF after a chunk. */
static int size_byte(hk_http_chunked_t *dec, unsigned c)
{
    if (dec->state <= CH_SIZE_LF && ++dec->line_bytes > MAX_SIZE_LINE)
        return -EBADMSG;
    int h = hk__http_hex((unsigned char)c);
    switch (dec->state) {
    case CH_SIZE0:
        if (h < 0)
            return -EBADMSG;
        dec->remaining = (uint64_t)h;
        dec->state = CH_SIZE;
        return 0;
    case CH_SIZE:
        if (h >= 0) {
            if (dec->remaining >> 60)
                return -EBADMSG; /* would not fit 64 bits */
            dec->remaining = dec->remaining << 4 | (uint64_t)h;
        } else if (c == ';') {
            dec->state = CH_EXT;
        } else if (c == ' ' || c == '\t') {
            dec->state = CH_SIZE_WS;
        } else if (c == '\r') {
            dec->state = CH_SIZE_LF;
        } else {
            return -EBADMSG;
        }
        return 0;
    case CH_SIZE_WS:
        if (c == ';')
            dec->state = CH_EXT;
        else if (c != ' ' && c != '\t')
            return -EBADMSG;
        return 0;
    case CH_EXT:
        if (c == '\r')
            dec->state = CH_SIZE_LF;
        else if (!hk__http_vchar[c])
            return -EBADMSG;
        return 0;
    case CH_SIZE_LF:
        if (c != '\n')
            return -EBADMSG;
        dec->state = dec->remaining ? CH_DATA : CH_TRAILER + HK__ST_H_START;
        return 0;
    case CH_DATA_CR:
        if (c != '\r')
            return -EBADMSG;
        dec->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return -EBADMSG;
        dec->state = CH_SIZE0;
        dec->line_bytes = 0;
        return 0;
    default:
        return -EBADMSG;
    }
}

/* The trailer section from buf[*r]: 1 when it ended, 0 when the input did, or -EBADMSG. */
static int trailers(hk_http_chunked_t *dec, const char *buf, size_t *r, size_t n)
{
    size_t room = MAX_TRAILERS - dec->trailer_bytes;
    const char *p = buf + *r, *lim = buf + (n - *r < room ? n : *r + room);
    for (;;) {
        unsigned st = dec->state - CH_TRAILER;
        const char *why, *start = p, *colon;
        int s = hk__http_scan(&st, &p, lim, &why, &colon);
        if (s == HK__SCAN_ERROR)
            return -EBADMSG;
        dec->trailer_bytes += (size_t)(p - start);
        dec->state = CH_TRAILER + st;
        *r = (size_t)(p - buf);
        if (s == HK__SCAN_EMPTY) {
            dec->state = CH_DONE;
            return 1;
        }
        if (s == HK__SCAN_MORE)
            return dec->trailer_bytes == MAX_TRAILERS ? -EBADMSG : 0;
    }
}

int hk_http_chunked_decode(hk_http_chunked_t *dec, char *buf, size_t *len)
{
    size_t n = *len, r = 0, w = 0;
    if (dec->state == CH_DONE) {
        *len = 0;
        return 1;
    }
    while (r < n) {
        if (dec->state == CH_DATA) {
            size_t take = n - r;
            if (take > dec->remaining)
                take = (size_t)dec->remaining;
            if (w != r)
                memmove(buf + w, buf + r, take);
            w += take;
            r += take;
            dec->remaining -= take;
            if (dec->remaining == 0)
                dec->state = CH_DATA_CR;
        } else if (dec->state >= CH_TRAILER) {
            int t = trailers(dec, buf, &r, n);
            if (t != 0) {
                *len = w;
                if (t == 1)
                    dec->end_offset = r;
                return t;
            }
        } else if (size_byte(dec, (unsigned char)buf[r++]) < 0) {
            *len = w;
            return -EBADMSG;
        }
    }
    *len = w;
    return 0;
}
