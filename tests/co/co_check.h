/*
 * Shared by the coroutine tests: CHECK fails the coroutine it runs in (it
 * returns NULL, which the test's run() asserts against), because Criterion's
 * asserts must not longjmp out of a coroutine's stack.
 */
#ifndef HK_TEST_CO_CHECK_H
#define HK_TEST_CO_CHECK_H

#include <stdint.h>
#include <stdio.h>

#define MS (UINT64_C(1000000))

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

/*
 * Runs fn as the main coroutine of a new runtime with workers workers (arg
 * passed on) and asserts it returned 1, as CHECK-based coroutines do.
 * Include after <criterion/criterion.h> and <hark.h>.
 */
static inline void co_run(hk_co_fn fn, unsigned workers, void *arg)
{
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = workers};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    void *res = NULL;
    cr_assert_eq(hk_co_run(rt, fn, arg, &res), 0);
    cr_assert_eq(res, (void *)1, "the main coroutine failed");
    cr_assert_eq(hk_co_runtime_free(rt), 0);
}

#endif
