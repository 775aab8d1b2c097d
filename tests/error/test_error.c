/*
 * hark/error.h: hk_strerror and hk_err_name know every code the public headers
 * document as a return value, and accept any int.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>
#include <limits.h>
#include <string.h>

/* Codes that the public headers document as returns (publish.h, net.h, co.h, fs.h). */
Test(error, every_documented_code_has_a_name_and_a_message)
{
    static const struct {
        int code;
        const char *name;
        const char *where;
    } documented[] = {
        {EXDEV, "EXDEV", "hk_publish_attach / hk_publish_subscribe (publish.h)"},
        {EDEADLK, "EDEADLK", "hk_publish_barrier (publish.h), co join (co.h)"},
        {EAFNOSUPPORT, "EAFNOSUPPORT", "hk_listener_port for Unix sockets (net.h)"},
        {ENOTSOCK, "ENOTSOCK", "shutdown of a pipe stream (net.h)"},
    };
    for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++) {
        int c = documented[i].code;
        cr_expect_str_eq(hk_err_name(-c), documented[i].name, "hk_err_name(-%s), returned by %s",
                         documented[i].name, documented[i].where);
        cr_expect_str_neq(hk_strerror(-c), "unknown error", "hk_strerror(-%s), returned by %s",
                          documented[i].name, documented[i].where);
    }
}

/* "Positive values are accepted too", "Unknown codes give ...": any int, INT_MIN included. */
Test(error, int_min_is_unknown_not_undefined)
{
    cr_assert_str_eq(hk_err_name(INT_MIN), "UNKNOWN");
    cr_assert_str_eq(hk_strerror(INT_MIN), "unknown error");
}
