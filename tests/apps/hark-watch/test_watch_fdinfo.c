/*
 * hark-watch's fdinfo parser: real samples captured from this kernel
 * (samples/, see docs/watch.md), malformed lines, every truncation of a real
 * sample, lines longer than the buffer, read errors, and the single-line
 * parser's edge cases.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fdinfo.h"

static size_t load(const char *name, char *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", SAMPLES_DIR, name);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "cannot open %s", path);
    ssize_t n = read(fd, buf, cap);
    close(fd);
    cr_assert_geq(n, 0);
    return (size_t)n;
}

struct src {
    const char *p;
    size_t len, off, step;
    int fail_at; /* return -EIO once off reaches this (0: never) */
};

static ssize_t rd(void *ctx, char *buf, size_t cap)
{
    struct src *s = ctx;
    if (s->fail_at && s->off >= (size_t)s->fail_at)
        return -EIO;
    size_t n = s->len - s->off;
    if (n > cap)
        n = cap;
    if (s->step && n > s->step)
        n = s->step;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

struct seen {
    int fds[512];
    uint32_t events[512];
    int n;
};

static void collect(const fdinfo_tfd_t *t, void *arg)
{
    struct seen *s = arg;
    if (s->n < 512) {
        s->fds[s->n] = t->fd;
        s->events[s->n] = t->events;
    }
    s->n++;
}

static void stream(const char *text, size_t len, size_t bufsize, size_t step, struct seen *out,
                   fdinfo_stats_t *st)
{
    char buf[8192];
    cr_assert_leq(bufsize, sizeof buf);
    struct src s = {text, len, 0, step, 0};
    memset(out, 0, sizeof *out);
    cr_assert_eq(fdinfo_stream(buf, bufsize, rd, &s, collect, out, st), 0);
}

Test(fdinfo, mixed_epoll_set)
{
    char text[65536];
    size_t len = load("epoll-mixed.txt", text, sizeof text);
    struct seen s;
    fdinfo_stats_t st;
    stream(text, len, 4096, 0, &s, &st);
    cr_assert_eq(st.tfds, 6);
    cr_assert_eq(st.bad, 0);
    cr_assert_eq(s.n, 6);
    int want[] = {8, 9, 11, 7, 3, 5};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(s.fds[i], want[i]);
    cr_assert_eq(s.events[0], 0x10000019u, "EPOLLEXCLUSIVE kept");
    cr_assert_eq(s.events[2], 0x2019u, "EPOLLRDHUP kept");
    cr_assert(st.has_flags);
    cr_assert_eq(st.flags, 02000002u);
}

Test(fdinfo, big_set_any_buffer_any_read_size)
{
    static char text[65536];
    size_t len = load("epoll-300-pipes.txt", text, sizeof text);
    size_t bufs[] = {4096, 128, 96};
    size_t steps[] = {0, 1, 7, 100, 4095};
    for (size_t b = 0; b < 3; b++) {
        for (size_t k = 0; k < 5; k++) {
            struct seen s;
            fdinfo_stats_t st;
            stream(text, len, bufs[b], steps[k], &s, &st);
            cr_assert_eq(st.tfds, 300, "buf %zu step %zu: %u", bufs[b], steps[k], st.tfds);
            cr_assert_eq(st.bad, 0);
            cr_assert_eq(st.bytes, len);
        }
    }
}

Test(fdinfo, non_epoll_and_empty_have_no_entries)
{
    const char *names[] = {"epoll-empty.txt", "pipe.txt",    "eventfd.txt", "socket.txt",
                           "file.txt",        "timerfd.txt", "inotify.txt"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char text[4096];
        size_t len = load(names[i], text, sizeof text);
        struct seen s;
        fdinfo_stats_t st;
        stream(text, len, 4096, 0, &s, &st);
        cr_assert_eq(st.tfds, 0, "%s", names[i]);
        cr_assert_eq(st.bad, 0, "%s", names[i]);
        cr_assert_gt(st.lines, 3, "%s", names[i]);
    }
}

Test(fdinfo, malformed_lines_are_counted_not_fatal)
{
    char text[4096];
    size_t len = load("malformed.txt", text, sizeof text);
    struct seen s;
    fdinfo_stats_t st;
    stream(text, len, 4096, 3, &s, &st);
    cr_assert_eq(st.tfds, 3);
    cr_assert_eq(st.bad, 4);
    cr_assert_eq(s.fds[0], 8);
    cr_assert_eq(s.fds[1], 11, "unknown keys ignored, CR tolerated");
    cr_assert_eq(s.fds[2], 12, "a last line without newline counts");
    cr_assert_eq(st.has_flags, 0, "an overflowing flags value is ignored");
}

Test(fdinfo, every_truncation_of_a_real_sample)
{
    char text[4096];
    size_t len = load("epoll-mixed.txt", text, sizeof text);
    uint32_t prev = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        struct seen s;
        fdinfo_stats_t st;
        stream(text, cut, 128, 5, &s, &st);
        cr_assert_leq(st.tfds, 6);
        cr_assert_geq(st.tfds + 1, prev, "entries only grow with the prefix (cut %zu)", cut);
        prev = st.tfds;
    }
    cr_assert_eq(prev, 6);
}

Test(fdinfo, line_longer_than_buffer_is_skipped)
{
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "tfd: 1 events: 19\ntfd: 2 events: 19 x:");
    memset(text + n, 'a', 600);
    n += 600;
    n += (size_t)snprintf(text + n, sizeof text - n, "\ntfd: 3 events: 19\n");
    struct seen s;
    fdinfo_stats_t st;
    stream(text, n, 128, 0, &s, &st);
    cr_assert_eq(st.tfds, 2);
    cr_assert_eq(st.bad, 1);
    cr_assert_eq(s.fds[0], 1);
    cr_assert_eq(s.fds[1], 3);
}

Test(fdinfo, read_error_is_returned)
{
    char text[4096], buf[256];
    size_t len = load("epoll-mixed.txt", text, sizeof text);
    struct src s = {text, len, 0, 100, 200};
    struct seen seen = {0};
    fdinfo_stats_t st;
    cr_assert_eq(fdinfo_stream(buf, sizeof buf, rd, &s, collect, &seen, &st), -EIO);
    cr_assert_leq(st.tfds, 6);
    cr_assert_eq(fdinfo_stream(buf, 10, rd, &s, collect, &seen, &st), -EINVAL, "tiny buffer");
}

Test(fdinfo, single_line_edge_cases)
{
    fdinfo_tfd_t t;
#define P(s) fdinfo_parse_tfd((s), strlen(s), &t)
    cr_assert_eq(P("tfd: 1 events: 1"), 1);
    cr_assert_eq(t.fd, 1);
    cr_assert_eq(P("tfd:1 events:ff data:10 pos:5 ino:a sdev:b"), 1);
    cr_assert_eq(t.events, 0xff);
    cr_assert_eq(t.data, 0x10);
    cr_assert_eq(t.pos, 5);
    cr_assert_eq(t.ino, 0xa);
    cr_assert_eq(t.sdev, 0xb);
    cr_assert_eq(P("tfd: 2147483647 events: 1"), 1);
    cr_assert_eq(t.fd, INT_MAX);
    cr_assert_eq(P("tfd: 2147483648 events: 1"), -1);
    cr_assert_eq(P("tfd: -1 events: 1"), -1);
    cr_assert_eq(P("tfd: 1"), -1, "events required");
    cr_assert_eq(P("tfd: 1 events: 100000000"), -1, "events is 32 bits");
    cr_assert_eq(P("tfd: 1 tfd: 2 events: 1"), -1, "duplicate key");
    cr_assert_eq(P("tfd: 1 events: 1 :x"), -1, "empty key");
    cr_assert_eq(P("tfd: 1 events: 1 junk"), -1, "token without colon");
    cr_assert_eq(P("tfd"), 0);
    cr_assert_eq(P("tfdx: 1 events: 1"), 0, "not a tfd line");
    cr_assert_eq(P("pos:\t0"), 0);
    cr_assert_eq(P(""), 0);
    cr_assert_eq(fdinfo_parse_tfd("tfd: 1 events: 1", 10, &t), -1, "cut before events");
#undef P
}
