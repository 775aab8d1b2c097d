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

#endif
