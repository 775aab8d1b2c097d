/*
 * The loop's cost per event, counted by callgrind (load-independent, so a
 * test may assert it; wall-clock speed is bench/pipes' business).
 *
 * cost_probe (same folder) passes bytes around a ring of 50 socketpairs
 * while N are watched. Two claims are checked on its counted part, the loop
 * running the round:
 *   - O(K), not O(N): the user-space instructions of the whole round are the
 *     same with 4,000 watched fds as with 100 (the kernel's share is not
 *     counted, the loop's is all there).
 *   - The dispatcher's own instructions per event (hk__io_dispatch, without
 *     the callbacks it calls) stay under a bound that the previous tag layout
 *     (the fd in the tag: a bounds check, a multiply) already broke.
 * Skipped in sanitizer builds (instrumented code counts differently) and
 * without valgrind.
 */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#ifndef HK_COST_PROBE
#error "HK_COST_PROBE: the path of cost_probe"
#endif

#define RING 50
#define WRITES 20000
/* 17.7 with GCC 12 -O2 at the time of writing; 21.7 with the previous tag layout. */
#define DISPATCH_MAX 19.5

typedef struct cost {
    long events;
    double total;    /* instructions in probe_run, callees included */
    double dispatch; /* hk__io_dispatch's own instructions */
} cost_t;

static double parse_count(const char *s)
{
    double v = 0;
    for (; *s == ' '; s++) {
    }
    for (; (*s >= '0' && *s <= '9') || *s == ','; s++)
        if (*s != ',')
            v = v * 10 + (*s - '0');
    return v;
}

static cost_t run_probe(const char *dir, int n)
{
    char out[256], cmd[1024], line[4096];
    snprintf(out, sizeof out, "%s/cg-%d.out", dir, n);
    snprintf(cmd, sizeof cmd,
             "valgrind --tool=callgrind --toggle-collect=probe_run --callgrind-out-file=%s "
             "--log-file=%s/cg-%d.log %s %d %d %d > %s/probe-%d.txt",
             out, dir, n, HK_COST_PROBE, n, RING, WRITES, dir, n);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);

    cost_t c = {0};
    snprintf(cmd, sizeof cmd, "%s/probe-%d.txt", dir, n);
    FILE *f = fopen(cmd, "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "events=%ld", &c.events), 1, "no events= line from cost_probe");
    fclose(f);
    cr_assert_eq(c.events, RING / 2 + WRITES);

    f = fopen(out, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "totals:", 7) == 0)
            c.total = parse_count(line + 7);
    fclose(f);
    cr_assert_gt(c.total, 0, "no totals: line in %s", out);

    snprintf(cmd, sizeof cmd, "callgrind_annotate --inclusive=no %s", out);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (c.dispatch == 0 && strstr(line, ":hk__io_dispatch ["))
            c.dispatch = parse_count(line);
    cr_assert_eq(pclose(f), 0, "%s failed", cmd);
    cr_assert_gt(c.dispatch, 0, "hk__io_dispatch not in callgrind_annotate's table");
    return c;
}

Test(cost, events_cost_the_same_whatever_the_watched_count, .timeout = 300)
{
#ifdef HK_SANITIZED
    cr_skip_test("sanitizer build: instrumented code counts differently");
#endif
    if (system("valgrind --version > /dev/null 2>&1") != 0 ||
        system("command -v callgrind_annotate > /dev/null") != 0)
        cr_skip_test("valgrind (callgrind, callgrind_annotate) is not installed");
    /* 4,000 socketpairs are 8,000 fds: raise the soft limit to the hard one. */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 8200)
        cr_skip_test("RLIMIT_NOFILE hard limit %lu is under 8,200 fds", (unsigned long)rl.rlim_max);
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 65536 : rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

    char dir[] = "/tmp/hark-cost-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cost_t small = run_probe(dir, 100);
    cost_t large = run_probe(dir, 4000);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);

    double per_small = small.total / (double)small.events;
    double per_large = large.total / (double)large.events;
    cr_log_info("instructions per event: %.1f with 100 watched, %.1f with 4,000; dispatch %.1f",
                per_small, per_large, small.dispatch / (double)small.events);
    cr_assert_leq(per_large, per_small * 1.01,
                  "per event: %.1f instructions with 4,000 watched fds, %.1f with 100", per_large,
                  per_small);
    cr_assert_leq(small.dispatch / (double)small.events, DISPATCH_MAX,
                  "hk__io_dispatch: %.1f instructions per event (bound %.1f)",
                  small.dispatch / (double)small.events, DISPATCH_MAX);
}
