/*
 * Fuzz driver for the one parser of hark/net.h that takes untrusted text:
 * hk_addr_parse (addresses come from configuration files and command lines,
 * and hark-httpd will echo peers' Host-like strings through it). Invariants:
 * no crash or sanitizer report for any input; whatever parses formats
 * without error, and the formatted text parses back to the same address.
 *
 * It is a libFuzzer driver (LLVMFuzzerTestOneInput; build with
 * -DHK_LIBFUZZER and -fsanitize=fuzzer). Without HK_LIBFUZZER it has its own
 * main, run by ctest: the seeds, then 300,000 deterministic mutations of them.
 */
#include <hark.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[512];
    if (size >= sizeof in)
        size = sizeof in - 1;
    memcpy(in, data, size);
    in[size] = '\0';
    struct sockaddr_storage a, b;
    socklen_t alen, blen;
    memset(&a, 0, sizeof a);
    if (hk_addr_parse(in, &a, &alen) != 0)
        return 0;
    char out[128];
    int n = hk_addr_format((struct sockaddr *)&a, alen, out, sizeof out);
    if (n <= 0) {
        fprintf(stderr, "fuzz_addr: '%s' parsed but does not format (%d)\n", in, n);
        abort();
    }
    memset(&b, 0, sizeof b);
    if (hk_addr_parse(out, &b, &blen) != 0 || blen != alen || memcmp(&a, &b, alen) != 0) {
        fprintf(stderr, "fuzz_addr: '%s' -> '%s' does not parse back the same\n", in, out);
        abort();
    }
    return 0;
}

#ifndef HK_LIBFUZZER
static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(void)
{
    static const char *seeds[] = {
        "127.0.0.1:0",
        "[::1]:8080",
        "[fe80::1%2]:443",
        ":80",
        "*:65535",
        "0.0.0.0:1",
        "[::ffff:1.2.3.4]:9",
        "[::]:0",
        "255.255.255.255:65535",
        "[1:2:3:4:5:6:7:8]:1",
        "1.2.3.4:",
        "[::1]",
    };
    static const char alphabet[] = "0123456789abcdef:.[]%*-+ x\0\xff";
    unsigned nseeds = sizeof seeds / sizeof *seeds;
    for (unsigned i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], strlen(seeds[i]));
    uint8_t buf[128];
    for (long iter = 0; iter < 300000; iter++) {
        const char *seed = seeds[next() % nseeds];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int muts = 1 + (int)(next() % 4);
        for (int m = 0; m < muts; m++) {
            size_t pos = len ? next() % (len + 1) : 0;
            switch (next() % 4) {
            case 0: /* replace */
                if (pos < len)
                    buf[pos] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)];
                break;
            case 1: /* insert */
                if (len < sizeof buf - 1) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)];
                    len++;
                }
                break;
            case 2: /* delete */
                if (pos < len) {
                    memmove(buf + pos, buf + pos + 1, len - pos - 1);
                    len--;
                }
                break;
            default: /* random byte */
                if (pos < len)
                    buf[pos] = (uint8_t)next();
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_addr: ok\n");
    return 0;
}
#endif
