/*
 * Fuzz driver for what src/tls parses from peers itself: the SNI name
 * matcher and the ALPN selection over the client's wire list (both read
 * straight from a ClientHello), and the whole server handshake fed
 * arbitrary bytes through a socket pair. Invariants: no crash or sanitizer
 * report; a chosen ALPN protocol lies inside the client's list and is one of
 * ours; a garbage handshake ends in a failure callback, never a hang.
 *
 * A libFuzzer driver (LLVMFuzzerTestOneInput; build with -DHK_LIBFUZZER and
 * -fsanitize=fuzzer). Without HK_LIBFUZZER it has its own main, run by
 * ctest: the seeds, then deterministic mutations of them.
 */
#include <hark.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hk_tls_ctx_t *fuzz_ctx;
static hk_loop_t *fuzz_loop;

static void fuzz_match(const uint8_t *data, size_t size)
{
    char a[300], b[300];
    size_t half = size / 2;
    size_t la = half < sizeof a - 1 ? half : sizeof a - 1;
    size_t lb = size - half < sizeof b - 1 ? size - half : sizeof b - 1;
    memcpy(a, data, la);
    a[la] = '\0';
    memcpy(b, data + half, lb);
    b[lb] = '\0';
    (void)hk__tls_name_match(a, b);
    (void)hk__tls_name_match(b, a);
}

static void fuzz_alpn(const uint8_t *data, size_t size)
{
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    const unsigned char *out = NULL;
    unsigned char outlen = 0;
    if (size > 65535)
        size = 65535;
    if (hk__tls_alpn_select(ours, sizeof ours - 1, data, (unsigned)size, &out, &outlen)) {
        if (out < data || out + outlen > data + size ||
            !((outlen == 2 && !memcmp(out, "h2", 2)) ||
              (outlen == 8 && !memcmp(out, "http/1.1", 8)))) {
            fprintf(stderr, "fuzz_tls: bad ALPN choice\n");
            abort();
        }
    }
}

static int hs_done;

static void on_hs(hk_stream_t *s, int status, const char *error)
{
    (void)status;
    (void)error;
    hs_done = 1;
    hk_stream_close(s, NULL);
}

static void fuzz_handshake(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    if (size > 60000)
        size = 60000;
    if (size && write(sv[1], data, size) < 0) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    shutdown(sv[1], SHUT_WR);
    hk_stream_t s;
    hs_done = 0;
    if (hk_stream_init(fuzz_loop, &s, sv[0]) < 0 ||
        hk_tls_stream_start(&s, fuzz_ctx, HK_TLS_SERVER, NULL, on_hs) < 0) {
        fprintf(stderr, "fuzz_tls: cannot start\n");
        abort();
    }
    for (int i = 0; i < 100000 && !hs_done; i++)
        hk_loop_run(fuzz_loop, HK_RUN_ONCE);
    if (!hs_done) {
        fprintf(stderr, "fuzz_tls: a handshake on closed input never ended\n");
        abort();
    }
    hk_loop_run(fuzz_loop, HK_RUN_NOWAIT);
    close(sv[1]);
}

static void fuzz_init(void)
{
    if (fuzz_ctx)
        return;
    char cmd[512], dir[] = "/tmp/hk-fuzz-tls-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
             "-subj /CN=fuzz -keyout %s/k.pem -out %s/c.pem >/dev/null 2>&1",
             dir, dir);
    if (system(cmd) != 0)
        abort();
    char crt[128], key[128];
    snprintf(crt, sizeof crt, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    const char *alpn[] = {"h2", "http/1.1", NULL};
    hk_tls_ctx_options_t o = {.cert_file = crt, .key_file = key, .alpn = alpn};
    if (hk_tls_ctx_new(&o, &fuzz_ctx) < 0 || hk_loop_new(&fuzz_loop, 0) < 0)
        abort();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_match(data + 1, size - 1);
        break;
    case 1:
        fuzz_alpn(data + 1, size - 1);
        break;
    default:
        fuzz_handshake(data + 1, size - 1);
        break;
    }
    return 0;
}

#ifndef HK_LIBFUZZER
int main(void)
{
    static const char *const seeds[] = {
        "\x00*.example.com\x00"
        "a.example.com",
        "\x00"
        "a.b.c"
        "A.B.C",
        "\x00*.\x00.x",
        "\x01\x02h2\x08http/1.1",
        "\x01\x08http/1.1\x00",
        "\x01\xff",
        "\x02\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
        "\x02GET / HTTP/1.1\r\n\r\n",
        "\x02\x16\x03\x03\xff\xff",
    };
    size_t nseeds = sizeof seeds / sizeof seeds[0];
    uint8_t buf[512];
    uint32_t rng = 12345;
    for (size_t i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], strlen(seeds[i]) + 1);
    for (int round = 0; round < 20000; round++) {
        const char *seed = seeds[(size_t)round % nseeds];
        size_t len = strlen(seed) + 1;
        memcpy(buf, seed, len);
        int flips = 1 + (int)((rng >> 8) % 4);
        for (int f = 0; f < flips; f++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = 1 + (rng >> 8) % (len + 8 < sizeof buf ? len + 7 : sizeof buf - 1);
            if (at >= len)
                len = at + 1;
            buf[at] = (uint8_t)(rng >> 24);
        }
        /* Handshakes cost a loop run each: mutate them less often. */
        if (buf[0] % 3 == 2 && round % 20)
            buf[0] = 0;
        LLVMFuzzerTestOneInput(buf, len);
    }
    hk_tls_ctx_free(fuzz_ctx);
    hk_loop_free(fuzz_loop);
    printf("fuzz_tls: ok\n");
    return 0;
}
#endif
