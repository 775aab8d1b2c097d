/*
 * Runs the libFuzzer driver fuzz/fdinfo.c as a plain function over the seed
 * corpus (samples/), every prefix of each seed, four chunkings, and a fixed
 * set of random mutations, so `make test` exercises the driver's properties
 * (it aborts on a violation) without libFuzzer.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mutate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 88172645463325252u;

Test(fuzz_corpus, fdinfo_seeds_prefixes_mutations)
{
    DIR *d = opendir(SAMPLES_DIR);
    cr_assert_not_null(d);
    static uint8_t buf[65536 + 1];
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SAMPLES_DIR, de->d_name);
        int fd = open(path, O_RDONLY);
        cr_assert_geq(fd, 0);
        ssize_t n = read(fd, buf + 1, sizeof buf - 1);
        close(fd);
        cr_assert_geq(n, 0);
        files++;
        uint8_t steps[] = {0, 1, 7, 63};
        for (size_t s = 0; s < sizeof steps; s++) {
            buf[0] = steps[s];
            LLVMFuzzerTestOneInput(buf, (size_t)n + 1);
        }
        size_t maxcut = (size_t)n < 1024 ? (size_t)n : 1024;
        for (size_t cut = 0; cut <= maxcut; cut++) {
            buf[0] = (uint8_t)(cut & 0x3f);
            LLVMFuzzerTestOneInput(buf, cut + 1);
        }
        static uint8_t mut[65536 + 1];
        for (int round = 0; round < 200; round++) {
            memcpy(mut, buf, (size_t)n + 1);
            int flips = 1 + (int)(fuzz_next(&rng) % 8);
            for (int f = 0; f < flips && n > 0; f++) {
                size_t at = 1 + fuzz_next(&rng) % (size_t)n;
                mut[at] = (uint8_t)fuzz_next(&rng);
            }
            mut[0] = (uint8_t)fuzz_next(&rng);
            LLVMFuzzerTestOneInput(mut, (size_t)n + 1);
        }
    }
    closedir(d);
    cr_assert_geq(files, 8);
}
