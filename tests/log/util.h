/*
 * Shared helpers for the log tests: temp files, reading a sink back, and
 * strict parsers for both output formats. The parsers decode every escape,
 * so a test can check that a value survives the round trip byte for byte
 * and that no input breaks the line structure (a stray quote or newline
 * makes the parse fail).
 */
#ifndef HK_TEST_LOG_UTIL_H
#define HK_TEST_LOG_UTIL_H

#include <criterion/criterion.h>
#include <hark.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Under TSan the tests compile against a Criterion stand-in
 * (tests/support/tsan) without suites or fixtures: the temp directory is then
 * made on first use and removed at the end of each test.
 */
#ifdef HK_TSAN_CRITERION_H
#define TestSuite(...) static const int hk_log_no_suite_ HK_UNUSED_ = 0
#define HK_UNUSED_ __attribute__((unused))
#define cr_log_error(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#endif

#define SEC (UINT64_C(1000000000))
#define MSEC (UINT64_C(1000000))

/*
 * Opens the logger on a pipe (rings of ring_bytes, 1 ms flush interval) and
 * returns the read end. The write end is closed here: the logger holds its
 * own description, so its close ends a reader.
 */
static inline int log_open_pipe(size_t ring_bytes)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    hk_log_options_t o = {0};
    o.fd = p[1];
    o.ring_bytes = ring_bytes;
    o.flush_interval_ns = 1 * MSEC;
    cr_assert_eq(hk_log_open(&o), 0);
    close(p[1]);
    return p[0];
}

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

/* A fresh temp directory per test; paths inside it. */
typedef struct tmpdir {
    char dir[64];
} tmpdir_t;

static inline void tmpdir_make(tmpdir_t *t)
{
    if (t->dir[0])
        return;
    snprintf(t->dir, sizeof t->dir, "/tmp/hk-log-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir), "mkdtemp: %s", strerror(errno));
}

static inline char *tmpdir_path(tmpdir_t *t, const char *name)
{
    tmpdir_make(t);
    static char buf[4][128];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 128, "%s/%s", t->dir, name);
    return p;
}

static inline void tmpdir_clean(tmpdir_t *t)
{
    if (!t->dir[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    cr_assert_eq(system(cmd), 0);
    t->dir[0] = '\0';
}

/*
 * A suite whose tests each get a fresh temp directory td, removed after the
 * test (under TSan, where fixtures do not run, by the test's own
 * tmpdir_clean(&td) at its end).
 */
#define LOG_TMPDIR_SUITE(suite, seconds)                                                           \
    static tmpdir_t td;                                                                            \
    __attribute__((unused)) static void setup(void)                                                \
    {                                                                                              \
        tmpdir_make(&td);                                                                          \
    }                                                                                              \
    __attribute__((unused)) static void teardown(void)                                             \
    {                                                                                              \
        tmpdir_clean(&td);                                                                         \
    }                                                                                              \
    TestSuite(suite, .init = setup, .fini = teardown, .timeout = seconds)

/* The whole file, NUL-terminated (caller frees); "" when it does not exist. */
static inline char *slurp(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    if (f) {
        size_t n;
        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len < 2) {
                cap *= 2;
                buf = realloc(buf, cap);
                cr_assert_not_null(buf);
            }
        }
        fclose(f);
    }
    buf[len] = '\0';
    if (lenp)
        *lenp = len;
    return buf;
}

static inline size_t count_lines_in(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ------------------------------------------------------------------------ */
/* Parsed lines: up to 32 key/value pairs, decoded.                          */
/* ------------------------------------------------------------------------ */

typedef struct kv {
    char key[64];
    char val[8192];
    size_t vlen;
    int quoted; /* JSON: 0 for a bare number or literal */
} kv_t;

typedef struct parsed {
    char ts[64];
    int n;
    kv_t kv[32];
} parsed_t;

static inline const kv_t *pget(const parsed_t *p, const char *key)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->kv[i].key, key) == 0)
            return &p->kv[i];
    return NULL;
}

static inline int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a quoted string at *sp (on the opening quote); json: JSON escapes only. */
static inline int parse_quoted(const char **sp, const char *end, char *out, size_t cap,
                               size_t *outlen, int json)
{
    const char *s = *sp;
    size_t n = 0;
    if (s >= end || *s != '"')
        return -1;
    s++;
    while (s < end && *s != '"') {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20)
            return -1; /* a raw control byte inside a string breaks the format */
        if (c != '\\') {
            if (n + 1 >= cap)
                return -1;
            out[n++] = (char)c;
            s++;
            continue;
        }
        s++;
        if (s >= end)
            return -1;
        char e = *s++;
        unsigned cp;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            cp = (unsigned char)e;
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'x':
            if (json || end - s < 2 || hexval(s[0]) < 0 || hexval(s[1]) < 0)
                return -1;
            out[n++] = (char)(hexval(s[0]) * 16 + hexval(s[1]));
            s += 2;
            continue;
        case 'u':
            if (end - s < 4)
                return -1;
            cp = 0;
            for (int i = 0; i < 4; i++) {
                if (hexval(s[i]) < 0)
                    return -1;
                cp = cp * 16 + (unsigned)hexval(s[i]);
            }
            s += 4;
            break;
        default:
            return -1;
        }
        if (n + 4 >= cap)
            return -1;
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xc0 | cp >> 6);
            out[n++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[n++] = (char)(0xe0 | cp >> 12);
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    if (s >= end)
        return -1;
    out[n] = '\0';
    *outlen = n;
    *sp = s + 1;
    return 0;
}

/* One text line (without its newline): ts, then key=value pairs. Returns 0 or -1. */
static inline int parse_text(const char *line, size_t len, parsed_t *p)
{
    const char *s = line, *end = line + len;
    memset(p, 0, sizeof *p);
    const char *sp = memchr(s, ' ', len);
    if (!sp || sp - s >= (ptrdiff_t)sizeof p->ts)
        return -1;
    memcpy(p->ts, s, (size_t)(sp - s));
    s = sp;
    while (s < end) {
        if (*s != ' ' || p->n == 32)
            return -1;
        s++;
        kv_t *kv = &p->kv[p->n++];
        size_t k = 0;
        while (s < end && *s != '=') {
            if (*s == ' ' || *s == '"' || k + 1 >= sizeof kv->key)
                return -1;
            kv->key[k++] = *s++;
        }
        if (s >= end || k == 0)
            return -1;
        s++;
        if (s < end && *s == '"') {
            kv->quoted = 1;
            if (parse_quoted(&s, end, kv->val, sizeof kv->val, &kv->vlen, 0) < 0)
                return -1;
        } else {
            size_t v = 0;
            while (s < end && *s != ' ') {
                unsigned char c = (unsigned char)*s;
                if (c < 0x21 || c == '"' || c == '=' || v + 1 >= sizeof kv->val)
                    return -1;
                kv->val[v++] = *s++;
            }
            if (v == 0)
                return -1;
            kv->vlen = v;
        }
    }
    return 0;
}

/* One JSON line: a flat object of strings, numbers and true/false. Returns 0 or -1. */
static inline int parse_json(const char *line, size_t len, parsed_t *p)
{
    const char *s = line, *end = line + len;
    memset(p, 0, sizeof *p);
    if (s >= end || *s++ != '{')
        return -1;
    for (;;) {
        if (p->n == 32)
            return -1;
        kv_t *kv = &p->kv[p->n++];
        size_t kl;
        if (parse_quoted(&s, end, kv->key, sizeof kv->key, &kl, 1) < 0)
            return -1;
        if (s >= end || *s++ != ':')
            return -1;
        if (s < end && *s == '"') {
            kv->quoted = 1;
            if (parse_quoted(&s, end, kv->val, sizeof kv->val, &kv->vlen, 1) < 0)
                return -1;
        } else {
            size_t v = 0;
            while (s < end && (strchr("0123456789+-.eE", *s) || (*s >= 'a' && *s <= 'z'))) {
                if (v + 1 >= sizeof kv->val)
                    return -1;
                kv->val[v++] = *s++;
            }
            if (v == 0)
                return -1;
            kv->vlen = v;
        }
        if (s >= end)
            return -1;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s++ != '}')
            return -1;
        break;
    }
    if (s != end)
        return -1;
    const kv_t *ts = pget(p, "ts");
    if (ts && ts->vlen < sizeof p->ts)
        memcpy(p->ts, ts->val, ts->vlen + 1);
    return 0;
}

/* Splits buf into lines in place; calls fn on each; returns the count. */
static inline size_t for_lines(char *buf, void (*fn)(const char *line, size_t len, void *arg),
                               void *arg)
{
    size_t n = 0;
    char *s = buf;
    char *nl;
    while ((nl = strchr(s, '\n')) != NULL) {
        fn(s, (size_t)(nl - s), arg);
        n++;
        s = nl + 1;
    }
    cr_assert_eq(*s, '\0', "the output ends with a partial line: \"%s\"", s);
    return n;
}

static inline hk_log_options_t opts_path(const char *path, hk_log_format_t fmt)
{
    hk_log_options_t o = {0};
    o.path = path;
    o.format = fmt;
    o.flush_interval_ns = 1 * MSEC;
    return o;
}

#endif
