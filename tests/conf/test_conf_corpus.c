/*
 * Runs the libFuzzer driver fuzz/conf.c as a plain function over the seed
 * corpus (corpus/: config files whose first byte picks the limits; the seeds
 * start with a space, the defaults), with several limit picks, every prefix
 * of each seed, and mutations by the bytes the syntax cares about, so
 * `make test` checks the driver's properties (it aborts on a violation)
 * without libFuzzer.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEED 16384

/* Bytes the syntax cares about, and one it forbids. */
static const char special[] = "{};\"\\#\n =\x01";

/*
 * Every special byte written over, inserted before and deleted at about 64
 * places spread over the seed: deterministic, and each place of the syntax
 * (names, arguments, strings, blocks, comments) gets broken every way.
 */
static void mutations(const uint8_t *seed, size_t n, uint8_t *mut)
{
    size_t stride = n / 64 + 1;
    for (size_t at = 1; at < n; at += stride) {
        for (size_t k = 0; k < sizeof special - 1; k++) {
            memcpy(mut, seed, n);
            mut[at] = (uint8_t)special[k];
            LLVMFuzzerTestOneInput(mut, n);
            memcpy(mut, seed, at);
            mut[at] = (uint8_t)special[k];
            memcpy(mut + at + 1, seed + at, n - at);
            LLVMFuzzerTestOneInput(mut, n + 1);
        }
        memcpy(mut, seed, at);
        memcpy(mut + at, seed + at + 1, n - at - 1);
        LLVMFuzzerTestOneInput(mut, n - 1);
    }
}

Test(fuzz_corpus, conf_seeds_prefixes_mutations)
{
    DIR *d = opendir(CORPUS_DIR);
    cr_assert_not_null(d);
    static uint8_t buf[MAX_SEED], mut[MAX_SEED + 1];
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, de->d_name);
        int fd = open(path, O_RDONLY);
        cr_assert_geq(fd, 0);
        ssize_t r = read(fd, buf, MAX_SEED);
        close(fd);
        cr_assert_gt(r, 0, "%s", path);
        size_t n = (size_t)r;
        files++;
        const uint8_t picks[] = {' ', 0x80, 0x9b, 0xc4, 0xff};
        for (size_t p = 0; p < sizeof picks; p++) {
            buf[0] = picks[p];
            LLVMFuzzerTestOneInput(buf, n);
        }
        buf[0] = ' ';
        for (size_t cut = 1; cut <= n && cut < 4096; cut++)
            LLVMFuzzerTestOneInput(buf, cut);
        mutations(buf, n, mut);
        buf[0] = 0xc4; /* small limits */
        mutations(buf, n, mut);
    }
    closedir(d);
    cr_assert_geq(files, 6);
}
