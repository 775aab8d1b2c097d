/*
 * The fdinfo parser.
 *
 * What the kernel writes (fs/eventpoll.c, ep_show_fdinfo), one line per
 * interest entry after the generic pos/flags/mnt_id/ino header:
 *   tfd:        8 events:       19 data:                8  pos:0 ino:b7d3c3 sdev:9
 * Field widths, spacing and the set of fields have changed across kernel
 * versions, so we read "key: value" and "key:value" tokens in any order,
 * ignore keys we do not know, and require only tfd and events.
 *
 * Why so careful: this text comes from the kernel, but the parser is the one
 * piece of hark-watch that every scan feeds with a different process's data,
 * and a detector that crashes is a detector an attacker can switch off. So:
 * no allocation, no NUL-termination assumed, every index checked against the
 * length, every number checked for overflow, a fixed buffer with lines longer
 * than it skipped (not grown), and a cap on the total read. Zero-copy: lines
 * are parsed where read(2) put them; only an incomplete last line is moved to
 * the front of the buffer before the next read.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "fdinfo.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int digit_value(char c, unsigned base)
{
    int v;
    if (c >= '0' && c <= '9')
        v = c - '0';
    else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
    else
        return -1;
    return (unsigned)v < base ? v : -1;
}

/* Parses all of s[0..len) as an unsigned number; 0 on success, -1 otherwise. */
static int parse_u64(const char *s, size_t len, unsigned base, uint64_t *out)
{
    if (len == 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int d = digit_value(s[i], base);
        if (d < 0 || v > (UINT64_MAX - (uint64_t)d) / base)
            return -1;
        v = v * base + (uint64_t)d;
    }
    *out = v;
    return 0;
}

int fdinfo_parse_tfd(const char *line, size_t len, fdinfo_tfd_t *out)
{
    if (len < 4 || memcmp(line, "tfd:", 4) != 0)
        return 0;
    fdinfo_tfd_t t = {0};
    int have_fd = 0, have_events = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_space(line[i]))
            i++;
        if (i == len)
            break;
        /* key: up to ':' */
        size_t k = i;
        while (i < len && line[i] != ':' && !is_space(line[i]))
            i++;
        if (i == len || line[i] != ':')
            return -1;
        size_t klen = i - k;
        i++; /* ':' */
        while (i < len && is_space(line[i]))
            i++;
        size_t v = i;
        while (i < len && !is_space(line[i]))
            i++;
        const char *key = line + k, *val = line + v;
        size_t vlen = i - v;
        uint64_t n;
        if (klen == 3 && !memcmp(key, "tfd", 3)) {
            if (have_fd || parse_u64(val, vlen, 10, &n) < 0 || n > INT_MAX)
                return -1;
            t.fd = (int)n;
            have_fd = 1;
        } else if (klen == 6 && !memcmp(key, "events", 6)) {
            if (have_events || parse_u64(val, vlen, 16, &n) < 0 || n > UINT32_MAX)
                return -1;
            t.events = (uint32_t)n;
            have_events = 1;
        } else if (klen == 4 && !memcmp(key, "data", 4)) {
            if (parse_u64(val, vlen, 16, &t.data) < 0)
                return -1;
        } else if (klen == 3 && !memcmp(key, "pos", 3)) {
            if (parse_u64(val, vlen, 10, &t.pos) < 0)
                return -1;
        } else if (klen == 3 && !memcmp(key, "ino", 3)) {
            if (parse_u64(val, vlen, 16, &t.ino) < 0)
                return -1;
        } else if (klen == 4 && !memcmp(key, "sdev", 4)) {
            if (parse_u64(val, vlen, 16, &n) < 0 || n > UINT32_MAX)
                return -1;
            t.sdev = (uint32_t)n;
        } else if (klen == 0) {
            return -1;
        } /* unknown keys: a newer kernel's field; ignored */
    }
    if (!have_fd || !have_events)
        return -1;
    *out = t;
    return 1;
}

static void parse_flags(const char *line, size_t len, fdinfo_stats_t *st)
{
    if (len < 6 || memcmp(line, "flags:", 6) != 0)
        return;
    size_t i = 6;
    while (i < len && is_space(line[i]))
        i++;
    size_t e = len;
    while (e > i && is_space(line[e - 1]))
        e--;
    uint64_t v;
    if (parse_u64(line + i, e - i, 8, &v) == 0 && v <= UINT32_MAX) {
        st->flags = (uint32_t)v;
        st->has_flags = 1;
    }
}

static void one_line(const char *line, size_t len, fdinfo_tfd_cb cb, void *arg, fdinfo_stats_t *st)
{
    st->lines++;
    fdinfo_tfd_t t;
    int r = fdinfo_parse_tfd(line, len, &t);
    if (r > 0) {
        st->tfds++;
        if (cb)
            cb(&t, arg);
    } else if (r < 0) {
        st->bad++;
    } else {
        parse_flags(line, len, st);
    }
}

size_t fdinfo_feed(const char *buf, size_t len, int final, fdinfo_tfd_cb cb, void *arg,
                   fdinfo_stats_t *st)
{
    size_t start = 0;
    for (;;) {
        const char *nl = start < len ? memchr(buf + start, '\n', len - start) : NULL;
        if (!nl)
            break;
        size_t end = (size_t)(nl - buf);
        one_line(buf + start, end - start, cb, arg, st);
        start = end + 1;
    }
    if (final && start < len) {
        one_line(buf + start, len - start, cb, arg, st);
        start = len;
    }
    return start;
}

int fdinfo_stream(char *buf, size_t cap, fdinfo_read_fn rd, void *rctx, fdinfo_tfd_cb cb, void *arg,
                  fdinfo_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (cap < 64)
        return -EINVAL;
    size_t have = 0;
    int skipping = 0; /* inside a line longer than the buffer: drop until its '\n' */
    for (;;) {
        if (st->bytes >= FDINFO_MAX_BYTES) {
            st->truncated = 1;
            return 0;
        }
        size_t room = cap - have;
        if (room > FDINFO_MAX_BYTES - st->bytes)
            room = (size_t)(FDINFO_MAX_BYTES - st->bytes);
        ssize_t n = rd(rctx, buf + have, room);
        if (n < 0)
            return (int)n;
        if ((size_t)n > room)
            return -EIO; /* a reader that lies about its length */
        if (n == 0) {
            if (!skipping)
                fdinfo_feed(buf, have, 1, cb, arg, st);
            return 0;
        }
        st->bytes += (uint64_t)n;
        size_t len = have + (size_t)n, start = 0;
        if (skipping) {
            const char *nl = memchr(buf, '\n', len);
            if (!nl) {
                have = 0;
                continue;
            }
            start = (size_t)(nl - buf) + 1;
            skipping = 0;
        }
        start += fdinfo_feed(buf + start, len - start, 0, cb, arg, st);
        have = len - start;
        if (have == cap) { /* one line fills the buffer: count it bad, skip the rest of it */
            st->bad++;
            st->lines++;
            skipping = 1;
            have = 0;
        } else if (have && start) {
            memmove(buf, buf + start, have);
        }
    }
}
