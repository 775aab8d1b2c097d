/*
 * hark-watch's baselines and alert rule, in process.
 *
 * The false-positive test runs 1,000 scans of a benign synthetic population
 * against the real judge/observe/commit code: 48 processes of 8 executables,
 * each executable's socket count drawn from a bounded distribution (uniform,
 * binomial, two-point with rare spikes, constant, truncated geometric,
 * mixture). After the warm-up, the fraction of judged samples that alert
 * must stay at or below alpha, with the default floor and with no floor at
 * all (then only Chebyshev's bound stands between the spikes and an alert).
 * A fixed-seed xorshift generator keeps it reproducible.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "baseline.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double unif(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}
static unsigned uniform_int(unsigned lo, unsigned hi)
{
    return lo + (unsigned)(rnd() % (hi - lo + 1));
}

/* Socket counts per executable; every distribution is bounded. */
static double draw(int exe)
{
    switch (exe) {
    case 0: /* idle daemon: 0..4 */
        return uniform_int(0, 4);
    case 1: /* busy proxy: 50..80 */
        return uniform_int(50, 80);
    case 2: { /* binomial(40, 0.3) */
        unsigned n = 0;
        for (int i = 0; i < 40; i++)
            n += unif() < 0.3;
        return n;
    }
    case 3: /* two-point: usually 1, 3 % of the time 25 */
        return unif() < 0.03 ? 25 : 1;
    case 4: /* constant */
        return 5;
    case 5: { /* geometric(0.2), truncated at 60 */
        unsigned n = 0;
        while (n < 60 && unif() > 0.2)
            n++;
        return n;
    }
    case 6: /* mixture: 0..2 or 30..40 */
        return unif() < 0.5 ? uniform_int(0, 2) : uniform_int(30, 40);
    default: /* rare big spike: 0..3, 0.05 % of the time 200 */
        return unif() < 0.0005 ? 200 : uniform_int(0, 3);
    }
}

static double false_positive_rate(double alpha, double floor, uint64_t seed)
{
    rng_state = seed;
    baseline_t b;
    cr_assert_eq(baseline_init(&b, alpha, floor, 20), 0);
    const char *exes[8] = {"/usr/sbin/idle", "/usr/sbin/proxy", "/usr/bin/binom", "/usr/bin/spiky",
                           "/usr/bin/const", "/usr/bin/geom",   "/usr/bin/mix",   "/usr/bin/rare"};
    uint64_t judged = 0, alerts = 0;
    for (int scan = 0; scan < 1000; scan++) {
        for (int p = 0; p < 48; p++) {
            int exe = p % 8;
            bl_entry_t *e = baseline_get(&b, exes[exe], exe == 1 ? CLASS_NET : CLASS_OTHER, 1);
            cr_assert_not_null(e);
            double x = draw(exe);
            verdict_t v;
            baseline_judge(&b, e, x, &v);
            if (!v.warming) {
                judged++;
                alerts += v.alert;
            }
            baseline_observe(e, x);
        }
        baseline_commit(&b);
    }
    baseline_free(&b);
    cr_assert_gt(judged, 40000);
    return (double)alerts / (double)judged;
}

Test(baseline, false_positive_rate_at_most_alpha)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        double r1 = false_positive_rate(0.001, 16, seed * 0x9E3779B97F4A7C15u);
        cr_assert_leq(r1, 0.001, "default alpha and floor: rate %g", r1);
        double r2 = false_positive_rate(0.001, 0, seed * 0x9E3779B97F4A7C15u);
        cr_assert_leq(r2, 0.001, "no floor: rate %g", r2);
        double r3 = false_positive_rate(0.05, 0, seed * 0x9E3779B97F4A7C15u);
        cr_assert_leq(r3, 0.05, "alpha 0.05, no floor: rate %g", r3);
        cr_log_info("seed %d: alert rates %g (alpha 0.001, floor 16), %g (alpha 0.001, no floor), "
                    "%g (alpha 0.05, no floor)",
                    (int)seed, r1, r2, r3);
    }
}

Test(baseline, rule_warmup_floor_and_learning)
{
    baseline_t b;
    cr_assert_eq(baseline_init(&b, 0.0, 16, 5), -EINVAL);
    cr_assert_eq(baseline_init(&b, 0.01, -1, 5), -EINVAL);
    cr_assert_eq(baseline_init(&b, 0.01, 16, 5), 0);
    cr_assert_float_eq(b.k, 10.0, 1e-12);
    bl_entry_t *e = baseline_get(&b, "/usr/bin/backup", CLASS_OTHER, 1);
    verdict_t v;
    for (int i = 0; i < 5; i++) {
        baseline_judge(&b, e, 1000, &v);
        cr_assert(v.warming);
        cr_assert_not(v.alert, "no verdict during warm-up");
        baseline_observe(e, 0);
        baseline_commit(&b);
    }
    baseline_judge(&b, e, 15, &v);
    cr_assert_not(v.alert, "below the floor over a baseline of zeros");
    baseline_judge(&b, e, 16, &v);
    cr_assert(v.alert);
    cr_assert_float_eq(v.threshold, 16.0, 1e-12);
    baseline_judge(&b, e, 1000, &v);
    cr_assert(v.alert);
    /* An alerting sample is learned too (see baseline.c): the baseline widens. */
    baseline_observe(e, 1000);
    baseline_commit(&b);
    cr_assert_eq(e->w.n, 6);
    baseline_judge(&b, e, 1000, &v);
    cr_assert_not(v.alert, "1000 is now within mean + k sd");
    /* Classes are separate baselines; lookups find what was created. */
    cr_assert_null(baseline_get(&b, "/usr/bin/backup", CLASS_NET, 0));
    cr_assert_eq(baseline_get(&b, "/usr/bin/backup", CLASS_OTHER, 0), e);
    for (int i = 0; i < 1000; i++) { /* growth and rehash keep entries findable */
        char name[32];
        snprintf(name, sizeof name, "/bin/x%d", i);
        cr_assert_not_null(baseline_get(&b, name, i & 1, 1));
    }
    e = baseline_get(&b, "/usr/bin/backup", CLASS_OTHER, 0);
    cr_assert_not_null(e);
    cr_assert_eq(e->w.n, 6);
    baseline_free(&b);
}

static char dir[] = "/tmp/hkw-state-XXXXXX";

static void mkdir_tmp(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(state, round_trip_atomic_and_escaped, .init = mkdir_tmp, .fini = rm_tmp)
{
    baseline_t a, b;
    baseline_init(&a, 0.001, 16, 20);
    baseline_init(&b, 0.001, 16, 20);
    const char *odd = "/opt/my app/bin%x\nfake (deleted)";
    bl_entry_t *e1 = baseline_get(&a, "/usr/sbin/nginx", CLASS_NET, 1);
    bl_entry_t *e2 = baseline_get(&a, odd, CLASS_OTHER, 1);
    for (int i = 0; i < 100; i++) {
        hk_stats_welford_add(&e1->w, i % 7);
        hk_stats_welford_add(&e2->w, 0.1 * i);
    }
    baseline_get(&a, "/never/sampled", CLASS_OTHER, 1); /* empty: not written */
    char path[256];
    snprintf(path, sizeof path, "%s/state", dir);
    cr_assert_eq(baseline_save(&a, path), 0);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(access(tmp, F_OK), 0, "no temporary file left behind");
    unsigned line;
    cr_assert_eq(baseline_load(&b, path, &line), 0);
    cr_assert_eq(b.n, 2);
    bl_entry_t *f1 = baseline_get(&b, "/usr/sbin/nginx", CLASS_NET, 0);
    bl_entry_t *f2 = baseline_get(&b, odd, CLASS_OTHER, 0);
    cr_assert_not_null(f1);
    cr_assert_not_null(f2);
    cr_assert_eq(f1->w.n, 100);
    cr_assert_eq(f1->w.mean, e1->w.mean, "%.17g round trips exactly");
    cr_assert_eq(f2->w.m2, e2->w.m2);
    /* Saving again replaces the file whole. */
    hk_stats_welford_add(&e1->w, 3);
    cr_assert_eq(baseline_save(&a, path), 0);
    baseline_free(&b);
    baseline_init(&b, 0.001, 16, 20);
    cr_assert_eq(baseline_load(&b, path, &line), 0);
    cr_assert_eq(baseline_get(&b, "/usr/sbin/nginx", CLASS_NET, 0)->w.n, 101);
    baseline_free(&a);
    baseline_free(&b);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(state, errors, .init = mkdir_tmp, .fini = rm_tmp)
{
    baseline_t b;
    baseline_init(&b, 0.001, 16, 20);
    char path[256];
    unsigned line;
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_eq(baseline_load(&b, path, &line), -ENOENT);
    snprintf(path, sizeof path, "%s/bad", dir);
    const struct {
        const char *text;
        unsigned line;
    } cases[] = {
        {"not a state file\n", 1},
        {"hark-watch-state 1\n0 3 1.5 2 /bin/ok\n0 x 1 1 /bin/bad\n", 3},
        {"hark-watch-state 1\n2 3 1.5 2 /bin/badclass\n", 2},
        {"hark-watch-state 1\n0 3 1.5 -2 /bin/negm2\n", 2},
        {"hark-watch-state 1\n0 3 nan 2 /bin/nan\n", 2},
        {"hark-watch-state 1\n0 3 1 2 /bin/bad%zz\n", 2},
        {"hark-watch-state 1\n0 3 1 2 /bin/cut", 2},
        {"hark-watch-state 1\n0 0 0 0 /bin/zero\n", 2},
        /* sscanf's %llu took these: a sign, a count past 2^64, spread in one sample. */
        {"hark-watch-state 1\n0 -5 1 1 /bin/neg\n", 2},
        {"hark-watch-state 1\n0 18446744073709551616 2 1 /bin/wrap\n", 2},
        {"hark-watch-state 1\n0 18446744073709551615 0 0 /bin/max\n", 2},
        {"hark-watch-state 1\n0 1 5 7 /bin/onesample\n", 2},
        {"hark-watch-state 1\n0 3 -1 2 /bin/negmean\n", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].text);
        baseline_free(&b);
        baseline_init(&b, 0.001, 16, 20);
        cr_assert_eq(baseline_load(&b, path, &line), -EINVAL, "case %zu", i);
        cr_assert_eq(line, cases[i].line, "case %zu: line %u", i, line);
    }
    /* A directory that does not exist: the write fails with an errno, nothing is left. */
    snprintf(path, sizeof path, "%s/no/such/dir/state", dir);
    cr_assert_eq(baseline_save(&b, path), -ENOENT);
    baseline_free(&b);
}

/*
 * A %-escape is '%' and exactly two hex digits (not NUL). sscanf's "%2x" took
 * one digit and ate the next byte ("%1G"), a sign ("%+1", "%-1": 0xff) and
 * leading white space ("% 1"); each of these lines loaded.
 */
Test(state, percent_escapes_are_strict, .init = mkdir_tmp, .fini = rm_tmp)
{
    baseline_t b;
    char path[256];
    unsigned line;
    snprintf(path, sizeof path, "%s/bad", dir);
    static const char *const bad[] = {
        "/bin/a%1G", "/bin/a%G1", "/bin/a%+1", "/bin/a%-1", "/bin/a% 1",  "/bin/a%1",
        "/bin/a%",   "/bin/a%00", "/bin/a%x1", "/bin/a%0x", "/bin/a%\t1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "hark-watch-state 1\n0 3 1 2 %s\n", bad[i]);
        write_file(path, text);
        baseline_init(&b, 0.001, 16, 20);
        cr_assert_eq(baseline_load(&b, path, &line), -EINVAL, "%s loaded", bad[i]);
        cr_assert_eq(line, 2, "%s: line %u", bad[i], line);
        baseline_free(&b);
    }
    /* Well-formed escapes still load, in either case of hex digit. */
    write_file(path, "hark-watch-state 1\n0 3 1 2 /bin/a%20b%25c%7f\n");
    baseline_init(&b, 0.001, 16, 20);
    cr_assert_eq(baseline_load(&b, path, &line), 0);
    cr_assert_not_null(baseline_get(&b, "/bin/a b%c\x7f", 0, 0));
    baseline_free(&b);
}
