/*
 * The libFuzzer driver fuzz/http_request.c as a plain function: over each
 * seed in corpus/ (first byte: the driver's control byte) with several
 * control bytes, over every prefix, and over a fixed series of mutations
 * that splice in the bytes and words HTTP framing turns on. The driver
 * aborts when one of its properties fails, which fails this test.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEED 4096

static uint64_t state = 0x853c49e6748fea9bu;

static uint32_t rnd(uint32_t bound)
{
    state = state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(state >> 33) % bound;
}

static const char *const words[] = {
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    ":",
    ",",
    ";",
    "%",
    "%2e",
    "%00",
    "..",
    "/",
    "\r\n\r\n",
    "Content-Length: ",
    "Transfer-Encoding: chunked",
    "Host: h",
    "Connection: close",
    "HTTP/1.0",
    "HTTP/1.1",
    "HTTP/2.0",
    "0\r\n\r\n",
    "ffffffffffffffff",
    "-",
    "bytes=",
    "Expect: 100-continue",
    "\x7f",
    "\x00",
    "GMT",
    "chunked, gzip",
    "*",
    "http://",
};

/* One edit of in[0..*n): replace, insert a word, delete a run, or repeat a run. */
static void mutate(uint8_t *in, size_t *n)
{
    if (*n < 2)
        return;
    size_t at = 1 + rnd((uint32_t)(*n - 1));
    switch (rnd(4)) {
    case 0:
        in[at] = (uint8_t)rnd(256);
        break;
    case 1: {
        const char *w = words[rnd(sizeof words / sizeof *words)];
        size_t wl = w[0] ? strlen(w) : 1;
        if (*n + wl > MAX_SEED)
            return;
        memmove(in + at + wl, in + at, *n - at);
        memcpy(in + at, w, wl);
        *n += wl;
        break;
    }
    case 2: {
        size_t k = 1 + rnd(8);
        if (k > *n - at)
            k = *n - at;
        memmove(in + at, in + at + k, *n - at - k);
        *n -= k;
        break;
    }
    default: {
        size_t k = 1 + rnd(32);
        if (k > *n - at)
            k = *n - at;
        if (*n + k > MAX_SEED)
            return;
        memmove(in + at + k, in + at, *n - at);
        *n += k;
        break;
    }
    }
}

Test(fuzz_corpus, http_seeds_prefixes_mutations)
{
    DIR *d = opendir(CORPUS_DIR);
    cr_assert_not_null(d);
    static uint8_t seed[MAX_SEED], mut[MAX_SEED];
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char name[512];
        snprintf(name, sizeof name, "%s/%s", CORPUS_DIR, de->d_name);
        FILE *f = fopen(name, "rb");
        cr_assert_not_null(f, "%s", name);
        size_t n = fread(seed, 1, sizeof seed, f);
        fclose(f);
        cr_assert_gt(n, 1, "%s", name);
        files++;
        static const uint8_t controls[] = {' ', '!', '#', '%', 0x13, 0x7f, 0xf1, 0xfe};
        for (size_t c = 0; c < sizeof controls; c++) {
            seed[0] = controls[c];
            LLVMFuzzerTestOneInput(seed, n);
        }
        seed[0] = ' ';
        for (size_t k = 1; k < n; k++)
            LLVMFuzzerTestOneInput(seed, k);
        for (int round = 0; round < 1500; round++) {
            size_t m = n;
            memcpy(mut, seed, n);
            for (uint32_t e = 1 + rnd(4); e > 0; e--)
                mutate(mut, &m);
            mut[0] = (uint8_t)rnd(256);
            LLVMFuzzerTestOneInput(mut, m);
        }
    }
    closedir(d);
    cr_assert_geq(files, 10);
}
