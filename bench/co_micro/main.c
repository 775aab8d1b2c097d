/*
 * bench-co-micro TEST: one measurement of the coroutine runtime, printed as
 * `co system=hark test=TEST value=V unit=U`. The Go peer (micro.go) measures
 * the same things the same way; scripts/bench-co runs both.
 *
 *   yield  two coroutines on one worker yield to each other; ns per yield
 *   chan   two coroutines on one worker pass an int over an unbuffered
 *          channel back and forth; ns per switch (half a round trip)
 *   spawn  a coroutine spawns detached coroutines that return at once, in
 *          batches, on one worker; ns per coroutine (spawn + run + exit)
 *   mem    1,000,000 coroutines parked on a wait group; growth of VmRSS per
 *          coroutine, in bytes. They use HK_CO_UNGUARDED and the smallest
 *          stack (16 KiB virtual): a guarded stack costs two memory mappings
 *          and vm.max_map_count (65530) would stop at about 30,000.
 *
 * Each timed test runs a warm-up pass, then the best of 5 timed passes.
 */
#include <hark.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSES 5

static uint64_t rounds;

static void *yielder(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < rounds; i++)
        hk_co_yield();
    return NULL;
}

static void *yield_main(void *arg)
{
    double *ns = arg;
    hk_co_t *a, *b;
    uint64_t t0 = hk_time_now();
    if (hk_co_spawn(NULL, yielder, NULL, NULL, &a) < 0 ||
        hk_co_spawn(NULL, yielder, NULL, NULL, &b) < 0)
        return NULL;
    hk_co_join(a, NULL, HK_FOREVER);
    hk_co_join(b, NULL, HK_FOREVER);
    *ns = (double)(hk_time_now() - t0) / (double)(2 * rounds);
    return arg;
}

static hk_chan_t *ping, *pong;

static void *ponger(void *arg)
{
    (void)arg;
    int v;
    while (hk_chan_recv(ping, &v, HK_FOREVER) == 0)
        if (hk_chan_send(pong, &v, HK_FOREVER) < 0)
            break;
    return NULL;
}

static void *chan_main(void *arg)
{
    double *ns = arg;
    hk_co_t *p;
    if (hk_chan_new(&ping, sizeof(int), 0) < 0 || hk_chan_new(&pong, sizeof(int), 0) < 0 ||
        hk_co_spawn(NULL, ponger, NULL, NULL, &p) < 0)
        return NULL;
    uint64_t t0 = hk_time_now();
    for (uint64_t i = 0; i < rounds; i++) {
        int v = (int)i;
        if (hk_chan_send(ping, &v, HK_FOREVER) < 0 || hk_chan_recv(pong, &v, HK_FOREVER) < 0)
            return NULL;
    }
    *ns = (double)(hk_time_now() - t0) / (double)(2 * rounds);
    hk_chan_close(ping);
    hk_co_join(p, NULL, HK_FOREVER);
    hk_chan_free(ping);
    hk_chan_free(pong);
    return arg;
}

static hk_co_wg_t wg;

static void *child(void *arg)
{
    (void)arg;
    hk_co_wg_done(&wg);
    return NULL;
}

static void *spawn_main(void *arg)
{
    double *ns = arg;
    const uint64_t batch = 1000;
    hk_co_wg_init(&wg);
    uint64_t t0 = hk_time_now();
    for (uint64_t done = 0; done < rounds; done += batch) {
        hk_co_wg_add(&wg, (int64_t)batch);
        for (uint64_t i = 0; i < batch; i++)
            if (hk_co_spawn(NULL, child, NULL, NULL, NULL) < 0)
                return NULL;
        hk_co_wg_wait(&wg, HK_FOREVER);
    }
    *ns = (double)(hk_time_now() - t0) / (double)rounds;
    return arg;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

#define PARKED 1000000
static hk_co_wg_t gate;  /* the parked coroutines wait on it */
static hk_co_wg_t ready; /* counts them in */

static void *parked(void *arg)
{
    (void)arg;
    hk_co_wg_done(&ready);
    hk_co_wg_wait(&gate, HK_FOREVER);
    return NULL;
}

static void *mem_main(void *arg)
{
    double *bytes = arg;
    hk_co_wg_init(&gate);
    hk_co_wg_init(&ready);
    hk_co_wg_add(&gate, 1);
    hk_co_wg_add(&ready, PARKED);
    hk_co_scope_t *scope;
    if (hk_co_scope_new(&scope) < 0)
        return NULL;
    long before = rss_bytes();
    hk_co_attr_t attr = {.stack_size = HK_CO_STACK_MIN, .flags = HK_CO_UNGUARDED};
    for (int i = 0; i < PARKED; i++) {
        attr.name = NULL;
        if (hk_co_spawn(scope, parked, NULL, &attr, NULL) < 0) {
            fprintf(stderr, "bench-co-micro: spawn %d failed\n", i);
            return NULL;
        }
    }
    hk_co_wg_wait(&ready, HK_FOREVER);
    long after = rss_bytes();
    *bytes = (double)(after - before) / PARKED;
    hk_co_wg_done(&gate);
    hk_co_scope_close(scope);
    return arg;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench-co-micro yield|chan|spawn|mem\n");
        return 2;
    }
    const char *test = argv[1];
    hk_co_fn fn;
    const char *unit = "ns";
    if (strcmp(test, "yield") == 0) {
        fn = yield_main;
        rounds = 5000000;
    } else if (strcmp(test, "chan") == 0) {
        fn = chan_main;
        rounds = 2000000;
    } else if (strcmp(test, "spawn") == 0) {
        fn = spawn_main;
        rounds = 2000000;
    } else if (strcmp(test, "mem") == 0) {
        fn = mem_main;
        unit = "bytes";
    } else {
        fprintf(stderr, "bench-co-micro: unknown test %s\n", test);
        return 2;
    }
    /* One worker: the switch and spawn paths, not the cross-core wake-ups. */
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = fn == mem_main ? 2 : 1};
    /* Spawning a million coroutines holds a worker for seconds: not a stall worth a report. */
    if (fn == mem_main)
        o.stall_ns = HK_CO_STALL_OFF;
    if (hk_co_runtime_new(&rt, &o) < 0)
        return 1;
    double best = 0;
    int passes = fn == mem_main ? 1 : PASSES + 1;
    for (int p = 0; p < passes; p++) {
        double v = 0;
        void *ok = NULL;
        if (hk_co_run(rt, fn, &v, &ok) < 0 || !ok) {
            fprintf(stderr, "bench-co-micro: %s failed\n", test);
            return 1;
        }
        if (fn == mem_main || (p > 0 && (best == 0 || v < best)))
            best = v;
    }
    hk_co_runtime_free(rt);
    printf("co system=hark test=%s value=%.1f unit=%s\n", test, best, unit);
    return 0;
}
