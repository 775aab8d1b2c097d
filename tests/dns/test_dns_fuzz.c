/*
 * Runs the fuzz driver of fuzz/dns_answer.c over generated inputs, so that
 * every ctest run (and the ASan one) exercises it without libFuzzer: random
 * answers with a fixed seed, plus hand-made cases (duplicates, more than
 * HK_DNS_MAX_ADDRS addresses, short address lengths, negative TTLs).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint8_t next_byte(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint8_t)(rng >> 24);
}

/* Appends one record: kind, TTL, length, address bytes. */
static size_t rec(uint8_t *buf, size_t off, uint8_t kind, int32_t ttl, uint8_t len,
                  const uint8_t *addr)
{
    buf[off++] = kind;
    memcpy(buf + off, &ttl, 4);
    off += 4;
    buf[off++] = len;
    memcpy(buf + off, addr, len % 40);
    return off + len % 40;
}

Test(dns_fuzz, random_answers)
{
    static uint8_t buf[2048];
    for (int i = 0; i < 20000; i++) {
        size_t len = next_byte() * 4u + next_byte() % 4u;
        for (size_t j = 0; j < len; j++)
            buf[j] = next_byte();
        LLVMFuzzerTestOneInput(buf, len);
    }
}

Test(dns_fuzz, structured_answers)
{
    /* sockaddr_in / sockaddr_in6 images with the family in place and port 0. */
    uint8_t in4[16] = {0}, in6[28] = {0};
    uint16_t f4 = 2, f6 = 10;
    memcpy(in4, &f4, 2);
    memcpy(in6, &f6, 2);
    static uint8_t buf[4096];
    for (int round = 0; round < 3000; round++) {
        size_t off = 0;
        buf[off++] = (uint8_t)(round % 3);     /* family */
        buf[off++] = (uint8_t)(round / 3 % 3); /* order */
        buf[off++] = (uint8_t)(round % 30);    /* status */
        const char *names[] = {"a.example", "1.2.3.4", "::1", "UPPER.Case.", ""};
        const char *name = names[round % 5];
        buf[off++] = (uint8_t)strlen(name);
        memcpy(buf + off, name, strlen(name));
        off += strlen(name);
        int nodes = next_byte() % 40;
        for (int k = 0; k < nodes && off < sizeof(buf) - 64; k++) {
            int32_t ttl = (int32_t)(next_byte() % 8) - 2; /* some negative */
            uint8_t pick = next_byte();
            in4[4] = in6[8] = (uint8_t)(pick % 20); /* few distinct values: duplicates */
            if (pick & 0x40)
                off = rec(buf, off, 0x80, ttl, 0, in4); /* a CNAME */
            else if (pick & 1)
                off = rec(buf, off, 1, ttl, (pick & 0x20) ? 27 : 28, in6); /* 27: too short */
            else
                off = rec(buf, off, 0, ttl, (pick & 0x20) ? 15 : 16, in4);
        }
        LLVMFuzzerTestOneInput(buf, off);
    }
}
