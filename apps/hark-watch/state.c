/*
 * The state file: baselines that survive a restart.
 *
 * Why atomic replace: a crash or power cut in the middle of a rewrite must
 * leave either the old file or the new one, never half of each, or a restart
 * would begin with garbage baselines (or none, and a new warm-up during which
 * nothing alerts). So: write path.tmp, fsync it, rename it over path, fsync
 * the directory so the rename itself is durable. The text is serialised on
 * the loop (cheap) and written by a pool worker (fsync can take seconds).
 *
 * The format is line-based text so an operator can read it; paths are
 * %-escaped (spaces, newlines and '%' in executable names, " (deleted)").
 * Loading is strict: a malformed line fails the load with its line number,
 * rather than silently starting from a partial baseline.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baseline.h"
#include "hex.h"

#define STATE_MAGIC "hark-watch-state 1\n"
#define STATE_MAX_BYTES (64u << 20)

static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n + 1)
            c *= 2;
        char *p = realloc(*buf, c);
        if (!p)
            return -ENOMEM;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

int baseline_serialize(const baseline_t *b, char **out, size_t *outlen)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int r = put(&buf, &len, &cap, STATE_MAGIC, strlen(STATE_MAGIC));
    for (size_t i = 0; i < b->n && r == 0; i++) {
        const bl_entry_t *e = &b->v[i];
        if (e->w.n == 0)
            continue;
        char head[128];
        int n = snprintf(head, sizeof head, "%u %llu %.17g %.17g ", e->cls,
                         (unsigned long long)e->w.n, e->w.mean, e->w.m2);
        r = put(&buf, &len, &cap, head, (size_t)n);
        for (const unsigned char *p = (const unsigned char *)e->exe; *p && r == 0; p++) {
            char esc[4];
            if (*p <= ' ' || *p == '%' || *p >= 0x7f) {
                snprintf(esc, sizeof esc, "%%%02X", *p);
                r = put(&buf, &len, &cap, esc, 3);
            } else {
                r = put(&buf, &len, &cap, (const char *)p, 1);
            }
        }
        if (r == 0)
            r = put(&buf, &len, &cap, "\n", 1);
    }
    if (r < 0) {
        free(buf);
        return r;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int baseline_write_file(const char *path, const char *data, size_t len)
{
    char tmp[4096], dir[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = 0;
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        off += (size_t)n;
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* best effort: some file systems refuse directory fsync */
        close(dfd);
    }
    return 0;
}

int baseline_save(const baseline_t *b, const char *path)
{
    char *data;
    size_t len;
    int r = baseline_serialize(b, &data, &len);
    if (r < 0)
        return r;
    r = baseline_write_file(path, data, len);
    free(data);
    return r;
}

/*
 * An escape is '%' and exactly two hex digits, not %00. Not sscanf's "%2x":
 * it took one digit and then ate the next byte ("%1G"), a sign ("%-1" gave
 * 0xff) and leading white space ("% 1").
 */
static int unescape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s; s++) {
        if (o + 1 >= cap)
            return -1;
        if (*s == '%') {
            int hi = hex_digit(s[1]), lo = hi < 0 ? -1 : hex_digit(s[2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -1;
            out[o++] = (char)(hi << 4 | lo);
            s += 2;
        } else if ((unsigned char)*s <= ' ') {
            return -1;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

/* The largest sample count a line may hold: far beyond any real one, far from wrapping. */
#define STATE_MAX_SAMPLES (UINT64_C(1) << 48)

/* Decimal digits at *p up to a space (no sign: sscanf's %llu took "-5"); 0, or -1. */
static int field_u64(char **p, uint64_t max, uint64_t *out)
{
    char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > max / 10 || (v == max / 10 && d > max % 10))
            return -1;
        v = v * 10 + d;
    }
    if (*s != ' ')
        return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

/* A finite number >= 0 at *p, followed by a space; 0, or -1. */
static int field_nonneg(char **p, double *out)
{
    char *end;
    if (**p == '-' || **p == ' ' || **p == '\0')
        return -1;
    double v = strtod(*p, &end);
    if (end == *p || *end != ' ' || !isfinite(v) || v < 0.0)
        return -1;
    *p = end + 1;
    *out = v;
    return 0;
}

/*
 * Parses one entry line (NUL-terminated, no '\n'): "class n mean m2 exe".
 * Strict: n in 1 .. 2^48, mean and m2 finite and not negative, m2 = 0 when
 * n = 1 (one sample has no spread); anything else refuses the file.
 */
static int load_line(baseline_t *b, char *line)
{
    uint64_t cls, n;
    double mean, m2;
    char *p = line;
    if (field_u64(&p, CLASS_NET, &cls) < 0 || field_u64(&p, STATE_MAX_SAMPLES, &n) < 0 || n == 0 ||
        field_nonneg(&p, &mean) < 0 || field_nonneg(&p, &m2) < 0 || (n == 1 && m2 != 0.0))
        return -EINVAL;
    char exe[4096];
    if (unescape(p, exe, sizeof exe) < 0)
        return -EINVAL;
    hk_welford_t w;
    if (hk_stats_welford_set(&w, n, mean, m2) < 0)
        return -EINVAL;
    bl_entry_t *e = baseline_get(b, exe, (int)cls, 1);
    if (!e)
        return -ENOMEM;
    hk_stats_welford_merge(&e->w, &w);
    return 0;
}

int baseline_load(baseline_t *b, const char *path, unsigned *lineno)
{
    *lineno = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    int r = buf ? 0 : -ENOMEM;
    while (r == 0) {
        if (len == cap) {
            if (cap >= STATE_MAX_BYTES) {
                r = -EFBIG;
                break;
            }
            char *p = realloc(buf, cap * 2 + 1);
            if (!p) {
                r = -ENOMEM;
                break;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    close(fd);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[len] = '\0';
    *lineno = 1;
    if (len < strlen(STATE_MAGIC) || memcmp(buf, STATE_MAGIC, strlen(STATE_MAGIC)) != 0 ||
        memchr(buf, '\0', len)) {
        free(buf);
        return -EINVAL;
    }
    char *p = buf + strlen(STATE_MAGIC);
    while (*p) {
        ++*lineno;
        char *nl = strchr(p, '\n');
        if (!nl) { /* a last line without '\n': the file was cut */
            r = -EINVAL;
            break;
        }
        *nl = '\0';
        if ((r = load_line(b, p)) < 0)
            break;
        p = nl + 1;
    }
    free(buf);
    if (r == 0)
        *lineno = 0;
    return r;
}
