/*
 * libFuzzer driver for hark-watch's fdinfo parser (apps/hark-watch/fdinfo.c).
 *
 * Properties checked beyond "no crash, no sanitizer report":
 *  - the streaming reader gives the same counts whatever the read sizes and
 *    whatever the buffer size (when no line is longer than the buffer);
 *  - every entry reported has a non-negative fd;
 *  - counts never exceed the number of lines.
 * The first input byte picks the chunking, the rest is the fdinfo text.
 * Built with -fsanitize=fuzzer under HK_FUZZ=ON (fuzz/CMakeLists.txt), and as
 * a plain function run over the seed corpus by tests/apps/hark-watch.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fdinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
    const uint8_t *p;
    size_t len, off;
    unsigned step; /* bytes per read; 0 = as much as fits */
};

static ssize_t rd(void *ctx, char *buf, size_t cap)
{
    struct src *s = ctx;
    size_t n = s->len - s->off;
    if (n > cap)
        n = cap;
    if (s->step && n > s->step)
        n = s->step;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

struct tally {
    uint32_t n;
    uint64_t fdsum;
};

static void on_tfd(const fdinfo_tfd_t *t, void *arg)
{
    struct tally *ta = arg;
    if (t->fd < 0)
        abort();
    ta->n++;
    ta->fdsum += (uint64_t)t->fd;
}

static size_t longest_line(const uint8_t *p, size_t n)
{
    size_t best = 0, cur = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            cur = 0;
        } else if (++cur > best) {
            best = cur;
        }
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned step = data[0] & 0x3f;
    const uint8_t *text = data + 1;
    size_t len = size - 1;

    /* Reference: one buffer holding everything, fed at once. */
    struct tally ref = {0};
    fdinfo_stats_t rs = {0};
    size_t used = fdinfo_feed((const char *)text, len, 1, on_tfd, &ref, &rs);
    if (used != len || rs.tfds != ref.n || rs.tfds + rs.bad > rs.lines)
        abort();

    /* Streaming with a small buffer and odd read sizes. */
    char small[64], big[4096];
    struct src s1 = {text, len, 0, step};
    struct tally t1 = {0};
    fdinfo_stats_t st1;
    if (fdinfo_stream(small, sizeof small, rd, &s1, on_tfd, &t1, &st1) != 0)
        abort();
    if (st1.tfds != t1.n || st1.bytes != len)
        abort();
    if (longest_line(text, len) < sizeof small - 1 && (t1.n != ref.n || t1.fdsum != ref.fdsum))
        abort();

    struct src s2 = {text, len, 0, 0};
    struct tally t2 = {0};
    fdinfo_stats_t st2;
    if (fdinfo_stream(big, sizeof big, rd, &s2, on_tfd, &t2, &st2) != 0)
        abort();
    if (longest_line(text, len) < sizeof big - 1 && (t2.n != ref.n || t2.fdsum != ref.fdsum))
        abort();

    /* A single line parse must agree with itself on any prefix. */
    fdinfo_tfd_t t;
    for (size_t cut = 0; cut <= len && cut < 128; cut++)
        (void)fdinfo_parse_tfd((const char *)text, cut, &t);
    return 0;
}
