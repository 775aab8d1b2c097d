/*
 * libFuzzer driver for the /proc/net/unix fallback parser of hark-watch
 * (apps/hark-watch/netinfo.c, netinfo_parse_unix): any text gives a result,
 * never a crash, and what it believes holds its invariants: one entry per
 * inode, ascending; a line in doubt (one that may lie inside another line's
 * name) neither listens nor has a name; every name is an offset inside the
 * string arena; and a line whose text a socket name could carry (anything
 * after a newline within 108 bytes of a name's start) never makes an inode
 * listen that the same text without that name does not.
 *
 * Built with clang and -fsanitize=fuzzer under -DHK_FUZZ=ON (make fuzz, 60 s).
 * Without HK_LIBFUZZER it has its own main, run by ctest: the seeds, then
 * 100,000 deterministic mutations of them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mutate.h"
#include "netinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    netinfo_t ni = {0};
    if (netinfo_parse_unix(&ni, (const char *)data, size) == 0) {
        for (size_t i = 0; i < ni.n; i++) {
            const net_sock_t *s = &ni.socks[i];
            if (i && ni.socks[i - 1].ino >= s->ino)
                abort(); /* sorted, one entry per inode */
            if (s->doubt && (s->listening || s->path))
                abort(); /* a line in doubt is believed about nothing */
            if (s->path >= ni.slen || strlen(ni.strings + s->path) + s->path >= ni.slen)
                abort();
            if (netinfo_find(&ni, s->ino) != s)
                abort();
        }
    }
    netinfo_free(&ni);
    return 0;
}

#ifndef HK_LIBFUZZER

/* A forged line inside an abstract name must not make inode 4242 listen. */
static int forged_line_is_doubted(void)
{
    static const char text[] =
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "000000008fb9f7a2: 00000002 00000000 00010000 0001 01    17 @f\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 4242 /forged\n"
        "000000003e422163: 00000003 00000000 00000000 0001 03    18\n"
        "000000003e422164: 00000002 00000000 00010000 0001 01    19 "
        "/a/path/long/enough/that/the/next/line/cannot/be/inside/it/0123456789\n"
        "000000003e422165: 00000002 00000000 00010000 0001 01    20 @listener\n";
    netinfo_t ni = {0};
    int ok = netinfo_parse_unix(&ni, text, sizeof text - 1) == 0;
    const net_sock_t *f = netinfo_find(&ni, 4242), *l17 = netinfo_find(&ni, 17),
                     *l20 = netinfo_find(&ni, 20);
    ok = ok && f && !f->listening && f->doubt && l17 && l17->listening && l20 && l20->listening &&
         !strcmp(ni.strings + l20->path, "@listener");
    netinfo_free(&ni);
    return ok;
}

int main(void)
{
    static const char *seeds[] = {
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "000000008fb9f7a2: 00000003 00000000 00000000 0001 03 91214432\n"
        "000000003e422163: 00000002 00000000 00010000 0001 01 91217076 /run/x.sock\n",
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "000000008fb9f7a2: 00000002 00000000 00010000 0001 01    17 @f\n"
        "0000000000000000: 00000002 00000000 00010000 0001 01 4242 /forged\n"
        "000000003e422163: 00000003 00000000 00000000 0001 03    18\n",
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000000000000001: 00000002 00000000 00000000 0002 01    17 @a\n"
        "0000000000000001: 00000002 00000000 00000000 0002 01    17 @a\n",
        "junk\n\n:\n0: 1 2 3 4 5 6 7\n",
    };
    if (!forged_line_is_doubted()) {
        fprintf(stderr, "fuzz_netinfo_unix: a forged line was believed\n");
        return 1;
    }
    static const char alphabet[] = "0123456789abcdefABCDEF: @/\n\t\0\xff";
    unsigned nseeds = sizeof seeds / sizeof *seeds;
    for (unsigned i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], strlen(seeds[i]));
    uint64_t rng = 0x9e3779b97f4a7c15u;
    uint8_t buf[512];
    for (long iter = 0; iter < 100000; iter++) {
        const char *seed = seeds[fuzz_next(&rng) % nseeds];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        len = fuzz_mutate(&rng, buf, len, sizeof buf, alphabet, sizeof alphabet - 1, 6);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_netinfo_unix: seeds and 100000 mutations, no invariant broken\n");
    return 0;
}
#endif
