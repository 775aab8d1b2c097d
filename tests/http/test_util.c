/*
 * The helpers around heads: reason phrases, HTTP dates (checked against the
 * C library's gmtime_r over a wide span), request paths and Range values.
 */
#include "util.h"

#include <time.h>

Test(status, texts)
{
    cr_assert_str_eq(hk_http_status_text(200), "OK");
    cr_assert_str_eq(hk_http_status_text(404), "Not Found");
    cr_assert_str_eq(hk_http_status_text(414), "URI Too Long");
    cr_assert_str_eq(hk_http_status_text(431), "Request Header Fields Too Large");
    cr_assert_str_eq(hk_http_status_text(505), "HTTP Version Not Supported");
    cr_assert_str_eq(hk_http_status_text(299), "Unknown");
    cr_assert_str_eq(hk_http_status_text(-1), "Unknown");
}

Test(date, format)
{
    char buf[HK_HTTP_DATE_LEN + 1];
    hk_http_date_format(784111777, buf);
    cr_assert_str_eq(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    hk_http_date_format(0, buf);
    cr_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    hk_http_date_format(951782400, buf);
    cr_assert_str_eq(buf, "Tue, 29 Feb 2000 00:00:00 GMT");
    hk_http_date_format(-5, buf);
    cr_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT", "clamped to the epoch");
    hk_http_date_format((time_t)400000000000, buf);
    cr_assert_str_eq(buf, "Fri, 31 Dec 9999 23:59:59 GMT", "clamped to four year digits");
}

Test(date, matches_libc_and_round_trips)
{
    char mine[HK_HTTP_DATE_LEN + 1], libc[64];
    for (int64_t t = 0; t < INT64_C(253402300799); t += INT64_C(86400) * 97 + 3607) {
        struct tm tm;
        time_t tt = (time_t)t;
        gmtime_r(&tt, &tm);
        static const char wd[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char mo[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        snprintf(libc, sizeof libc, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
                 tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        hk_http_date_format(tt, mine);
        cr_assert_str_eq(mine, libc, "t=%lld", (long long)t);
        time_t back = 0;
        cr_assert_eq(hk_http_date_parse(mine, HK_HTTP_DATE_LEN, &back), 0, "%s", mine);
        cr_assert_eq((int64_t)back, t, "%s", mine);
    }
}

Test(date, three_formats)
{
    static const char *const same[] = {
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994",
    };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        time_t t = 0;
        cr_assert_eq(hk_http_date_parse(same[i], strlen(same[i]), &t), 0, "%s", same[i]);
        cr_assert_eq((int64_t)t, 784111777, "%s", same[i]);
    }
    time_t t;
    /* Two-digit years: the latest with those digits at most 50 years ahead (this test
     * assumes it runs before 2049). */
    cr_assert_eq(hk_http_date_parse("Friday, 01-Jan-99 00:00:00 GMT", 30, &t), 0);
    cr_assert_eq((int64_t)t, 915148800);
    cr_assert_eq(hk_http_date_parse("Friday, 01-Jan-21 00:00:00 GMT", 30, &t), 0);
    cr_assert_eq((int64_t)t, 1609459200);
    cr_assert_eq(hk_http_date_parse("Tue, 29 Feb 2000 23:59:60 GMT", 29, &t), 0, "leap second");
    cr_assert_eq((int64_t)t, 951868800);
    static const char *const bad[] = {
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Mon, 29 Feb 1900 00:00:00 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "",
        "Sun,",
        "Sun, 06 Nov 1994 08:49:37 GM",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(hk_http_date_parse(bad[i], strlen(bad[i]), &t), -EINVAL, "%s", bad[i]);
}

/*
 * RFC 9110 section 5.6.7: an RFC 850 date that "appears to be more than 50
 * years in the future" is in the past century. That is the timestamp, not
 * its year: 31 Dec of the year 50 years from now is more than 50 years away
 * (on any day but 31 Dec itself), 1 Jan of it is not.
 */
Test(date, rfc850_fifty_years_counts_the_whole_date)
{
    static const char *const long_days[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                             "Thursday", "Friday", "Saturday"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    struct tm limit_tm = tm; /* now + 50 years */
    limit_tm.tm_year += 50;
    time_t limit = timegm(&limit_tm);
    struct {
        int mon, mday, hour, min, sec;
    } cases[] = {{11, 31, 23, 59, 59}, {0, 1, 0, 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct tm d = {.tm_year = year + 50 - 1900,
                       .tm_mon = cases[i].mon,
                       .tm_mday = cases[i].mday,
                       .tm_hour = cases[i].hour,
                       .tm_min = cases[i].min,
                       .tm_sec = cases[i].sec};
        time_t want = timegm(&d);
        if (want > limit) { /* more than 50 years ahead: a century earlier */
            d.tm_year -= 100;
            want = timegm(&d);
        }
        gmtime_r(&want, &d); /* the weekday */
        static const char mo[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        char s[64];
        snprintf(s, sizeof s, "%s, %02d-%s-%02d %02d:%02d:%02d GMT", long_days[d.tm_wday],
                 d.tm_mday, mo[d.tm_mon], (year + 50) % 100, d.tm_hour, d.tm_min, d.tm_sec);
        time_t t = 0;
        cr_assert_eq(hk_http_date_parse(s, strlen(s), &t), 0, "%s", s);
        struct tm got;
        gmtime_r(&t, &got);
        cr_assert_eq((int64_t)t, (int64_t)want, "%s: got year %d, want %d", s, got.tm_year + 1900,
                     d.tm_year + 1900);
    }
}

static void path_ok(const char *in, const char *want)
{
    char out[64];
    ssize_t r = hk_http_path_decode(in, strlen(in), out, sizeof out);
    cr_assert_eq(r, (ssize_t)strlen(want), "%s: %zd", in, r);
    cr_assert_str_eq(out, want, "%s", in);
}

static void path_bad(const char *in, ssize_t err)
{
    char out[64];
    cr_assert_eq(hk_http_path_decode(in, strlen(in), out, sizeof out), err, "%s", in);
}

Test(path, decode_and_normalise)
{
    path_ok("/", "/");
    path_ok("/index.html", "/index.html");
    path_ok("/a%20b/c%2Bd", "/a b/c+d");
    path_ok("/a/../b", "/b");
    path_ok("/a/./b/", "/a/b/");
    path_ok("//a///b", "/a/b");
    path_ok("/a/b/..", "/a/");
    path_ok("/a/b/.", "/a/b/");
    path_ok("/.", "/");
    path_ok("/a/..", "/");
    path_ok("/a%2fb", "/a/b");
    path_ok("/a%2f..%2fb", "/b");
    path_ok("/x/%2e", "/x/");
    path_ok("/...", "/...");
    path_ok("/..a/.b", "/..a/.b");
    path_ok("/caf%C3%A9", "/caf\xc3\xa9");
    path_bad("/..", -EINVAL);
    path_bad("/a/../../etc", -EINVAL);
    path_bad("/%2e%2e/etc/passwd", -EINVAL);
    path_bad("/.%2e/x", -EINVAL);
    path_bad("/a/%2E%2E/%2e%2e/x", -EINVAL);
    path_bad("/a%2f..%2f..%2fb", -EINVAL);
    path_bad("/a%00b", -EINVAL);
    path_bad("/a%", -EINVAL);
    path_bad("/a%4", -EINVAL);
    path_bad("/a%zz", -EINVAL);
    path_bad("/a%g0", -EINVAL);
    path_bad("a/b", -EINVAL);
    path_bad("", -EINVAL);
    path_bad("*", -EINVAL);
    char out[8];
    cr_assert_eq(hk_http_path_decode("/abcdef", 7, out, 8), 7);
    cr_assert_eq(hk_http_path_decode("/abcdefg", 8, out, 8), -ENAMETOOLONG);
    cr_assert_eq(hk_http_path_decode("/", 1, out, 1), -ENAMETOOLONG);
    static const char nul[] = "/a\0b";
    cr_assert_eq(hk_http_path_decode(nul, 4, out, 8), -EINVAL);
}

static void range_ok(const char *v, uint64_t size, uint64_t first, uint64_t last)
{
    uint64_t f = 99, l = 99;
    int r = hk_http_range_parse(v, strlen(v), size, &f, &l);
    cr_assert_eq(r, 0, "%s: %d", v, r);
    cr_assert(f == first && l == last, "%s: %llu-%llu", v, (unsigned long long)f,
              (unsigned long long)l);
}

static void range_err(const char *v, uint64_t size, int err)
{
    uint64_t f, l;
    int r = hk_http_range_parse(v, strlen(v), size, &f, &l);
    cr_assert_eq(r, err, "%s: %d", v, r);
}

Test(range, cases)
{
    range_ok("bytes=0-0", 100, 0, 0);
    range_ok("bytes=0-99", 100, 0, 99);
    range_ok("bytes=10-", 100, 10, 99);
    range_ok("bytes=5-", 100, 5, 99);
    range_ok("bytes=-5", 100, 95, 99);
    range_ok("bytes=-500", 100, 0, 99);
    range_ok("bytes=90-1000", 100, 90, 99);
    range_ok("bytes=0-99999999999999999999999", 100, 0, 99);
    range_ok("Bytes=1-2", 100, 1, 2);
    range_ok(" bytes= 1-2 ", 100, 1, 2);
    range_ok("bytes=-1", 1, 0, 0);
    range_err("bytes=100-", 100, -ERANGE);
    range_err("bytes=100-200", 100, -ERANGE);
    range_err("bytes=99999999999999999999999-", 100, -ERANGE);
    range_err("bytes=-0", 100, -ERANGE);
    range_err("bytes=0-0", 0, -ERANGE);
    range_err("bytes=-5", 0, -ENODATA); /* RFC 9110 section 14.1.3 */
    range_err("bytes=-0", 0, -ERANGE);
    range_err("bytes=5-3", 100, -EINVAL);
    range_err("bytes=0-1,2-3", 100, -ENOTSUP);
    range_err("bytes=0-1, 5-", 100, -ENOTSUP);
    range_err("items=0-1", 100, -ENOTSUP);
    range_err("bytes=", 100, -EINVAL);
    range_err("bytes=-", 100, -EINVAL);
    range_err("bytes=a-b", 100, -EINVAL);
    range_err("bytes=1-2x", 100, -EINVAL);
    range_err("bytes=1 - 2", 100, -EINVAL);
    range_err("bytes=--1", 100, -EINVAL);
    range_err("bytes", 100, -EINVAL);
    range_err("=0-1", 100, -EINVAL);
    range_err("", 100, -EINVAL);
}

/*
 * A list's empty elements are ignored (RFC 9110 section 5.6.1.2): a range
 * set with a trailing, leading or doubled comma around one range is that
 * range. It was taken for several ranges, and the whole file sent (200).
 */
Test(range, empty_list_elements)
{
    range_ok("bytes=0-5,", 100, 0, 5);
    range_ok("bytes=,0-5", 100, 0, 5);
    range_ok("bytes=0-5, ,", 100, 0, 5);
    range_ok("bytes= , 0-5 ,,", 100, 0, 5);
    range_ok("bytes=-5,", 100, 95, 99);
    range_ok("bytes=10-,", 100, 10, 99);
    range_err("bytes=100-,", 100, -ERANGE);
    range_err("bytes=0-1,,2-3", 100, -ENOTSUP);
    range_err("bytes=,0-1,2-3,", 100, -ENOTSUP);
    range_err("bytes=,", 100, -EINVAL);
    range_err("bytes= , ,", 100, -EINVAL);
    range_err("bytes=0-5x,", 100, -EINVAL);
    range_err("bytes=0 -5,", 100, -EINVAL);
}

/* Accept-Encoding: one coding's weight and "*"'s, with the cases a substring test gets wrong. */
static int weight(const char *v, const char *coding, int *star)
{
    /* An exact-size copy, so that ASan sees any read past the value. */
    size_t n = strlen(v);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, v, n);
    int w = hk_http_coding_weight(copy, n, coding, star);
    free(copy);
    return w;
}

Test(coding, weights)
{
    int star;
    cr_assert_eq(weight("gzip", "gzip", &star), 1000);
    cr_assert_eq(star, -1);
    cr_assert_eq(weight("deflate, gzip, br", "gzip", NULL), 1000);
    cr_assert_eq(weight("GZip;Q=0.5", "gzip", NULL), 500);
    cr_assert_eq(weight("gzip ; q=0", "gzip", NULL), 0);
    cr_assert_eq(weight("gzip;q=0.000", "gzip", NULL), 0);
    cr_assert_eq(weight("gzip;q=0.001", "gzip", NULL), 1);
    cr_assert_eq(weight("gzip;q=1.000", "gzip", NULL), 1000);
    cr_assert_eq(weight("x-gzipped, gzipx", "gzip", NULL), -1, "not the same token");
    cr_assert_eq(weight("br, *;q=0.2", "gzip", &star), -1);
    cr_assert_eq(star, 200);
    cr_assert_eq(weight("*;q=0, gzip;q=0.3", "gzip", &star), 300);
    cr_assert_eq(star, 0);
    cr_assert_eq(weight("", "gzip", &star), -1);
    cr_assert_eq(star, -1);
    cr_assert_eq(weight(" , ,gzip,", "gzip", NULL), 1000);
    /* The first mention counts. */
    cr_assert_eq(weight("gzip;q=0, gzip", "gzip", NULL), 0);
    /* Other parameters are skipped, quoted or not. */
    cr_assert_eq(weight("gzip;level=\"9,\\\"x\";q=0.7", "gzip", NULL), 700);
}

Test(coding, malformed_elements_are_skipped)
{
    /* A bad q-value or stray bytes drop that element only. */
    cr_assert_eq(weight("gzip;q=1.5", "gzip", NULL), -1);
    cr_assert_eq(weight("gzip;q=0.5000", "gzip", NULL), -1);
    cr_assert_eq(weight("gzip;q=", "gzip", NULL), -1);
    cr_assert_eq(weight("gzip;q=, gzip;q=0.4", "gzip", NULL), 400);
    cr_assert_eq(weight("gzip;q=abc", "gzip", NULL), -1);
    cr_assert_eq(weight("gzip;=1", "gzip", NULL), -1);
    cr_assert_eq(weight("gzip junk, gzip;q=0.4", "gzip", NULL), 400);
    cr_assert_eq(weight("gzip;x=\"unterminated", "gzip", NULL), -1);
    cr_assert_eq(weight("@gzip, gzip;q=0.9", "gzip", NULL), 900);
    cr_assert_eq(weight(";q=1", "gzip", NULL), -1);
}
