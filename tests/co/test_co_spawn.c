/*
 * What a spawn sets up and what an exit gives back: the default name
 * "co-<id>", formatted only when someone asks for it (from two workers at
 * once, too), and stacks, which go round through each worker's cache and the
 * shared pool in batches: reused, never leaked, and the pool bounded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>

#include "co_check.h"
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- default names ---- */

static hk_co_wg_t hold; /* the children park on it */

static void *parked_child(void *arg)
{
    (void)arg;
    hk_co_wg_wait(&hold, HK_FOREVER);
    return NULL;
}

/* Asks for the name of the coroutine arg, 200 times, and checks it never changes. */
static void *ask_name(void *arg)
{
    hk_co_t *c = arg;
    const char *first = hk_co_name(c);
    char copy[32];
    snprintf(copy, sizeof copy, "%s", first);
    for (int i = 0; i < 200; i++) {
        const char *n = hk_co_name(c);
        CHECK(n == first && strcmp(n, copy) == 0);
        hk_co_yield();
    }
    return (void *)1;
}

static void *names_main(void *arg)
{
    (void)arg;
    hk_co_wg_init(&hold);
    hk_co_wg_add(&hold, 1);
    hk_co_t *a, *b, *named, *empty;
    CHECK(hk_co_spawn(NULL, parked_child, NULL, NULL, &a) == 0);
    CHECK(hk_co_spawn(NULL, parked_child, NULL, NULL, &b) == 0);
    CHECK(hk_co_spawn(NULL, parked_child, NULL, &(hk_co_attr_t){.name = "worker-7"}, &named) == 0);
    CHECK(hk_co_spawn(NULL, parked_child, NULL, &(hk_co_attr_t){.name = ""}, &empty) == 0);
    /* Two coroutines (two workers) ask for b's name at once: one name, formatted once. */
    hk_co_t *q1, *q2;
    CHECK(hk_co_spawn(NULL, ask_name, b, NULL, &q1) == 0);
    CHECK(hk_co_spawn(NULL, ask_name, b, NULL, &q2) == 0);
    void *r1 = NULL, *r2 = NULL;
    CHECK(hk_co_join(q1, &r1, HK_FOREVER) == 0 && r1 == (void *)1);
    CHECK(hk_co_join(q2, &r2, HK_FOREVER) == 0 && r2 == (void *)1);

    uint64_t ida = 0, idb = 0;
    char tail = 0;
    CHECK(sscanf(hk_co_name(a), "co-%" SCNu64 "%c", &ida, &tail) == 1);
    CHECK(sscanf(hk_co_name(b), "co-%" SCNu64 "%c", &idb, &tail) == 1);
    CHECK(idb == ida + 1); /* ids count spawns */
    char want[32];
    snprintf(want, sizeof want, "co-%" PRIu64, ida);
    CHECK(strcmp(hk_co_name(a), want) == 0);
    CHECK(strcmp(hk_co_name(named), "worker-7") == 0);
    CHECK(strcmp(hk_co_name(empty), "") == 0); /* a given name, even empty, stays */

    hk_co_wg_done(&hold);
    CHECK(hk_co_join(a, NULL, HK_FOREVER) == 0);
    CHECK(hk_co_join(b, NULL, HK_FOREVER) == 0);
    CHECK(hk_co_join(named, NULL, HK_FOREVER) == 0);
    CHECK(hk_co_join(empty, NULL, HK_FOREVER) == 0);
    return (void *)1;
}

Test(co_spawn, default_names_are_formatted_once_on_demand, .timeout = 60)
{
    co_run(names_main, 2, NULL);
}

/* ---- stacks ---- */

/*
 * Guard pages in /proc/self/maps: one-page PROT_NONE mappings, one below each
 * coroutine stack (and each thread's). What the sanitizers map (TSan's fiber
 * state: thousands of mappings for thousands of coroutines) is not counted.
 */
static long count_stacks(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0, page = sysconf(_SC_PAGESIZE);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && hi - lo == (unsigned long)page &&
            strcmp(perms, "---p") == 0)
            n++;
    }
    fclose(f);
    return n;
}

static hk_co_wg_t done_wg;

static void *quick_child(void *arg)
{
    (void)arg;
    hk_co_wg_done(&done_wg);
    return NULL;
}

/* Spawns n coroutines with stacks of size (0: the default) before any runs, then waits. */
static int spawn_batch(unsigned n, size_t size)
{
    hk_co_wg_add(&done_wg, (int64_t)n);
    hk_co_attr_t attr = {.stack_size = size};
    for (unsigned i = 0; i < n; i++)
        if (hk_co_spawn(NULL, quick_child, NULL, &attr, NULL) < 0)
            return -1;
    return hk_co_wg_wait(&done_wg, HK_FOREVER);
}

/* Guard pages that are not coroutines', which may come and go meanwhile (threads). */
#define SLACK 16

struct maps_seen {
    long before, after_first, after_rounds, after_big, after_big_again;
};

/*
 * Batches of 600 (more than a worker's cache of 64, so stacks go through the
 * shared pool), in two sizes at once: after the first round every stack is
 * reused, so no more are mapped. Then 3,000 at once, more than the
 * cache and the pool (1,024) keep: what they cannot keep is unmapped, so
 * the count falls back, and a second such batch ends where the first did.
 */
static void *stacks_main(void *arg)
{
    struct maps_seen *m = arg;
    hk_co_wg_init(&done_wg);
    m->before = count_stacks();
    CHECK(spawn_batch(600, 0) == 0 && spawn_batch(600, 128 * 1024) == 0);
    m->after_first = count_stacks();
    for (int round = 0; round < 20; round++)
        CHECK(spawn_batch(600, 0) == 0 && spawn_batch(600, 128 * 1024) == 0);
    m->after_rounds = count_stacks();
    CHECK(spawn_batch(3000, 0) == 0);
    m->after_big = count_stacks();
    CHECK(spawn_batch(3000, 0) == 0);
    m->after_big_again = count_stacks();
    return (void *)1;
}

Test(co_spawn, stacks_are_reused_and_the_pool_is_bounded, .timeout = 120)
{
    struct maps_seen m = {0};
    /* One worker; no stall monitor, whose reports (a spawner holds its worker) map memory. */
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 1, .stall_ns = HK_CO_STALL_OFF};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    void *res = NULL;
    cr_assert_eq(hk_co_run(rt, stacks_main, &m, &res), 0);
    cr_assert_eq(res, (void *)1);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    cr_assert_gt(m.before, 0);
    /* The first round mapped stacks of both sizes; twenty more rounds map none. */
    cr_assert_geq(m.after_first, m.before + 1000, "before %ld, after %ld", m.before, m.after_first);
    cr_assert_leq(m.after_rounds, m.after_first + SLACK, "first round %ld, after 20 more %ld",
                  m.after_first, m.after_rounds);
    /*
     * After 3,000: at most the cache (64) and the pool (1,024) of stacks stay
     * mapped, besides what was there before.
     */
    cr_assert_leq(m.after_big, m.before + 64 + 1024 + SLACK, "before %ld, after 3,000 at once %ld",
                  m.before, m.after_big);
    cr_assert_leq(m.after_big_again, m.after_big + SLACK, "after 3,000 %ld, after 3,000 again %ld",
                  m.after_big, m.after_big_again);
}
