/*
 * A Turkish single-byte locale for tests of case-insensitive name matching.
 *
 * Why: in tr_TR.ISO-8859-9, tolower('I') is 0xFD (dotless i), not 'i', so
 * code that folds DNS names with the C library's tolower() stops matching
 * "IMAGES.example.com" with "images.example.com" once the program calls
 * setlocale(). Names on the wire fold ASCII only (RFC 4343). The machine
 * need not have the locale installed: localedef builds it from the locales
 * package's sources into a temporary directory, which LOCPATH points to.
 */
#ifndef HK_TEST_TURKISH_LOCALE_H
#define HK_TEST_TURKISH_LOCALE_H

#include <criterion/criterion.h>
#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

/* Switches LC_CTYPE to tr_TR.ISO-8859-9, built under dir (a fresh mkdtemp template). */
static inline void turkish_locale_enter(char *dir)
{
    cr_assert_not_null(mkdtemp(dir));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "localedef -i tr_TR -f ISO-8859-9 %s/tr_TR.ISO-8859-9 2>&1", dir);
    cr_assert_eq(system(cmd), 0, "localedef failed (scripts/deps installs the locales package)");
    setenv("LOCPATH", dir, 1);
    cr_assert_not_null(setlocale(LC_CTYPE, "tr_TR.ISO-8859-9"));
    cr_assert_eq(tolower('I'), 0xFD, "not the Turkish case mapping");
}

static inline void turkish_locale_leave(const char *dir)
{
    setlocale(LC_CTYPE, "C");
    unsetenv("LOCPATH");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd);
}

#endif
