/*
 * mutate.h: what a fuzz driver's own main, or the test that runs it over its
 * seed corpus, needs to exercise it without libFuzzer (under ctest): a
 * xorshift64 generator, so that every run tries the same inputs and a
 * failure repeats, and edits of a seed in bytes of an alphabet that matters
 * to the parser.
 */
#ifndef HK_FUZZ_MUTATE_H
#define HK_FUZZ_MUTATE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* xorshift64 (Marsaglia): advances *state (never 0) and returns it. */
static inline uint64_t fuzz_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/*
 * Makes 1 to max_edits edits of buf (len bytes, room for cap), each at a
 * random place: a byte replaced by one of alphabet (alen bytes), one of
 * alphabet inserted, or a byte deleted. Returns the new length.
 */
static inline size_t fuzz_mutate(uint64_t *rng, uint8_t *buf, size_t len, size_t cap,
                                 const char *alphabet, size_t alen, unsigned max_edits)
{
    unsigned edits = 1 + (unsigned)(fuzz_next(rng) % max_edits);
    for (unsigned e = 0; e < edits; e++) {
        size_t pos = len ? fuzz_next(rng) % (len + 1) : 0;
        switch (fuzz_next(rng) % 3) {
        case 0:
            if (pos < len)
                buf[pos] = (uint8_t)alphabet[fuzz_next(rng) % alen];
            break;
        case 1:
            if (len < cap - 1) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = (uint8_t)alphabet[fuzz_next(rng) % alen];
                len++;
            }
            break;
        default:
            if (pos < len) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        }
    }
    return len;
}

#endif
