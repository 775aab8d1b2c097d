/*
 * A stand-in for <criterion/criterion.h>, used only by the ThreadSanitizer
 * build. Why: Criterion's runner maps a shared "inheritable arena" at a fixed
 * address that collides with TSan's shadow memory, so every Criterion binary
 * dies with SEGV under TSan (even an empty test). The threaded tests are
 * compiled against this header instead: it provides the subset of the API
 * they use (Test, cr_assert*) and a main() that runs each test in a forked
 * child, as Criterion does, with a timeout.
 */
#ifndef HK_TSAN_CRITERION_H
#define HK_TSAN_CRITERION_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct hk_shim_test {
    const char *suite, *name;
    void (*fn)(void);
};

#define HK_SHIM_MAX_TESTS 256
static struct hk_shim_test hk_shim_tests[HK_SHIM_MAX_TESTS];
static int hk_shim_ntests;

static inline void hk_shim_register(const char *suite, const char *name, void (*fn)(void))
{
    if (hk_shim_ntests < HK_SHIM_MAX_TESTS)
        hk_shim_tests[hk_shim_ntests++] = (struct hk_shim_test){suite, name, fn};
}

/* Test(suite, name, ...): extra Criterion options (.timeout...) are ignored. */
#define Test(suite, name, ...)                                                                     \
    static void hk_shim_##suite##_##name(void);                                                    \
    __attribute__((constructor)) static void hk_shim_reg_##suite##_##name(void)                    \
    {                                                                                              \
        hk_shim_register(#suite, #name, hk_shim_##suite##_##name);                                 \
    }                                                                                              \
    static void hk_shim_##suite##_##name(void)

static inline void hk_shim_check(int ok, const char *expr, const char *file, int line,
                                 const char *fmt, ...)
{
    if (ok)
        return;
    fprintf(stderr, "%s:%d: Assertion failed: %s\n", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("  ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fflush(stderr);
    _exit(1);
}

#define HK_SHIM_CHECK(ok, expr, ...) hk_shim_check(!!(ok), expr, __FILE__, __LINE__, "" __VA_ARGS__)
#define cr_assert(c, ...) HK_SHIM_CHECK((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) HK_SHIM_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect(c, ...) cr_assert(c, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) HK_SHIM_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) HK_SHIM_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) HK_SHIM_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) HK_SHIM_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) HK_SHIM_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) HK_SHIM_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) HK_SHIM_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) HK_SHIM_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) HK_SHIM_CHECK(strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)
#define cr_assert_fail(...) HK_SHIM_CHECK(0, "failure", __VA_ARGS__)
/* The shim does not go on after a failed expectation: each cr_expect_* stops the test. */
#define cr_expect_not(c, ...) cr_assert_not(c, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert_eq(a, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) cr_assert_neq(a, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) cr_assert_lt(a, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) cr_assert_leq(a, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) cr_assert_gt(a, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) cr_assert_geq(a, b, __VA_ARGS__)
#define cr_expect_null(p, ...) cr_assert_null(p, __VA_ARGS__)
#define cr_expect_not_null(p, ...) cr_assert_not_null(p, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_assert_str_eq(a, b, __VA_ARGS__)
#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int failed = 0;
    for (int i = 0; i < hk_shim_ntests; i++) {
        struct hk_shim_test *t = &hk_shim_tests[i];
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(120);
            t->fn();
            fflush(NULL);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        fprintf(stderr, "[%s] %s::%s", ok ? "PASS" : "FAIL", t->suite, t->name);
        if (WIFSIGNALED(st))
            fprintf(stderr, " (signal %d)", WTERMSIG(st));
        else if (!ok)
            fprintf(stderr, " (exit %d)", WEXITSTATUS(st));
        fputc('\n', stderr);
        failed += !ok;
    }
    fprintf(stderr, "Synthesis: Tested: %d | Failing: %d\n", hk_shim_ntests, failed);
    return failed ? 1 : 0;
}

#endif
