/*
 * Typed getters of hark/conf.h (durations, sizes, booleans, ranged integers,
 * strings, key=value) and the shape check, each error with its exact
 * position; the quoting of what was found.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark/conf.h>
#include <string.h>

static char err[512];
static hk_conf_t *conf;

/* Parses one directive and returns it (freed by the fini hook). */
static const hk_conf_node_t *one(const char *text)
{
    hk_conf_free(conf);
    conf = NULL;
    cr_assert_eq(hk_conf_parse_buffer("v.conf", text, strlen(text), NULL, &conf, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(conf->root.nchildren, 1);
    return &conf->root.children[0];
}

static void cleanup(void)
{
    hk_conf_free(conf);
    conf = NULL;
}

TestSuite(conf_values, .fini = cleanup);

static uint64_t duration_ok(const char *text)
{
    const hk_conf_node_t *d = one(text);
    uint64_t ns = 0;
    cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), 0, "%s", err);
    return ns;
}

Test(conf_values, durations)
{
    cr_assert_eq(duration_ok("t 10s;"), 10000000000ull);
    cr_assert_eq(duration_ok("t 10;"), 10000000000ull);
    cr_assert_eq(duration_ok("t 0;"), 0);
    cr_assert_eq(duration_ok("t 7ns;"), 7);
    cr_assert_eq(duration_ok("t 7us;"), 7000);
    cr_assert_eq(duration_ok("t 250ms;"), 250000000ull);
    cr_assert_eq(duration_ok("t 2m;"), 120000000000ull);
    cr_assert_eq(duration_ok("t \"3h\";"), 10800000000000ull);
    cr_assert_eq(duration_ok("t 1281023h;"), 1281023ull * 3600000000000ull);
    cr_assert_eq(duration_ok("t 4611686018427387904ns;"), HK_CONF_DURATION_MAX);

    uint64_t ns = 42;
    const hk_conf_node_t *d = one("header_timeout   ten;");
    cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:18: expected a duration such as 10s (a number and ns, us, "
                          "ms, s, m or h), got \"ten\"");
    cr_assert_eq(ns, 42);
    const char *bad[] = {"t 10x;", "t -1s;", "t 1.5s;", "t s;", "t \"\";", "t 10S;", "t 1h30m;"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = one(bad[i]);
        cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -EINVAL, "%s",
                     bad[i]);
    }
    cr_assert_eq(ns, 42);
    /* Beyond 2^62 ns a deadline "now + d" could wrap: refused (5124095h once passed). */
    const char *huge[] = {"t 1281024h;", "t 5124095h;", "t 4611686018427387905ns;",
                          "t 18446744073709551615ns;"};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        d = one(huge[i]);
        cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -ERANGE, "%s",
                     huge[i]);
    }
    d = one("t 5124096h;");
    cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -ERANGE);
    cr_assert_str_eq(err, "v.conf:1:3: expected a duration of at most 1281023h, got \"5124096h\"");
    d = one("t 99999999999999999999999s;");
    cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -ERANGE);
    d = one("t 99999999999999999999999q;");
    cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -EINVAL);
    /* A missing argument is reported at the terminator. */
    d = one("keepalive_timeout ;");
    cr_assert_eq(hk_conf_duration(hk_conf_arg(d, 0), &ns, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:19: expected a duration such as 10s (a number and ns, us, "
                          "ms, s, m or h), got \";\"");
}

Test(conf_values, sizes)
{
    const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {{"s 0;", 0},
              {"s 512;", 512},
              {"s 32k;", 32768},
              {"s 32K;", 32768},
              {"s 1m;", 1048576},
              {"s 2G;", 2147483648ull},
              {"s 17179869183g;", 17179869183ull << 30}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const hk_conf_node_t *d = one(ok[i].text);
        uint64_t b = 1;
        cr_assert_eq(hk_conf_size(hk_conf_arg(d, 0), &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(b, ok[i].bytes, "%s", ok[i].text);
    }
    uint64_t b;
    const hk_conf_node_t *d = one("max_body 1mb;");
    cr_assert_eq(hk_conf_size(hk_conf_arg(d, 0), &b, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:10: expected a size such as 32k (a number and k, m or g), "
                          "got \"1mb\"");
    d = one("max_body 17179869184g;");
    cr_assert_eq(hk_conf_size(hk_conf_arg(d, 0), &b, err, sizeof err), -ERANGE);
    cr_assert_str_eq(err, "v.conf:1:10: expected a size of at most 17179869183g, got "
                          "\"17179869184g\"");
    d = one("max_body k;");
    cr_assert_eq(hk_conf_size(hk_conf_arg(d, 0), &b, err, sizeof err), -EINVAL);
}

Test(conf_values, booleans)
{
    bool v = false;
    const hk_conf_node_t *d = one("tls on;");
    cr_assert_eq(hk_conf_bool(hk_conf_arg(d, 0), &v, err, sizeof err), 0);
    cr_assert(v);
    d = one("tls off;");
    cr_assert_eq(hk_conf_bool(hk_conf_arg(d, 0), &v, err, sizeof err), 0);
    cr_assert(!v);
    d = one("tls\tyes;");
    cr_assert_eq(hk_conf_bool(hk_conf_arg(d, 0), &v, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:5: expected on or off, got \"yes\"");
    d = one("tls ON;");
    cr_assert_eq(hk_conf_bool(hk_conf_arg(d, 0), &v, err, sizeof err), -EINVAL);
}

Test(conf_values, integers_with_ranges)
{
    uint64_t v = 0;
    const hk_conf_node_t *d = one("threads 256;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 1, 256, &v, err, sizeof err), 0);
    cr_assert_eq(v, 256);
    d = one("threads 300;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 1, 256, &v, err, sizeof err), -ERANGE);
    cr_assert_str_eq(err, "v.conf:1:9: expected an integer from 1 to 256, got \"300\"");
    d = one("threads 0;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 1, 256, &v, err, sizeof err), -ERANGE);
    d = one("threads +2;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 1, 256, &v, err, sizeof err), -EINVAL);
    d = one("threads 2k;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 1, 256, &v, err, sizeof err), -EINVAL);
    d = one("n 18446744073709551616;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 0, UINT64_MAX, &v, err, sizeof err), -ERANGE);
    d = one("n 18446744073709551615;");
    cr_assert_eq(hk_conf_uint(hk_conf_arg(d, 0), 0, UINT64_MAX, &v, err, sizeof err), 0);
    cr_assert_eq(v, UINT64_MAX);
}

Test(conf_values, strings_and_key_value)
{
    const hk_conf_node_t *d = one("server 127.0.0.1:9000 weight=2 \"weight=x\" weightless;");
    cr_assert_eq(hk_conf_string(hk_conf_arg(d, 0), "an address", err, sizeof err), 0);
    hk_conf_arg_t v;
    cr_assert_eq(hk_conf_kv(hk_conf_arg(d, 0), "weight", &v), 0);
    cr_assert_eq(hk_conf_kv(hk_conf_arg(d, 1), "weight", &v), 1);
    cr_assert_str_eq(v.str, "2");
    cr_assert_eq(v.len, 1);
    cr_assert_eq(v.pos.col, 30);
    uint64_t w;
    cr_assert_eq(hk_conf_uint(&v, 1, 100, &w, err, sizeof err), 0);
    cr_assert_eq(w, 2);
    cr_assert_eq(hk_conf_kv(hk_conf_arg(d, 2), "weight", &v), 1);
    cr_assert_eq(hk_conf_uint(&v, 1, 100, &w, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:40: expected an integer from 1 to 100, got \"x\"");
    cr_assert_eq(hk_conf_kv(hk_conf_arg(d, 3), "weight", &v), 0);
    cr_assert_eq(hk_conf_kv(hk_conf_arg(d, 4), "weight", &v), 0); /* the end marker */
    cr_assert_eq(hk_conf_string(hk_conf_arg(d, 4), "a path", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:53: expected a path, got \";\"");
    d = one("root \"\";");
    cr_assert_eq(hk_conf_string(hk_conf_arg(d, 0), "a path", err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:6: expected a path, got \"\"");
}

Test(conf_values, shape_of_a_directive)
{
    const hk_conf_node_t *d = one("threads 1\nlisten 127.0.0.1:80;");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:2:1: expected \";\" after 1 argument of \"threads\", got "
                          "\"listen\"");
    d = one("tls on off;");
    cr_assert_eq(hk_conf_expect(d, 0, 0, HK_CONF_NO_BLOCK, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:5: expected \";\" after \"tls\", got \"on\"");
    d = one("upstream;");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_BLOCK, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:9: expected 1 argument to \"upstream\", got \";\"");
    d = one("upstream app;");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_BLOCK, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:13: expected a block \"{ ... }\" after \"upstream\", got "
                          "\";\"");
    d = one("threads 1 { }");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:11: expected \";\" to end \"threads\" (it takes no block), "
                          "got \"{\"");
    d = one("listen a b { }");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_BLOCK_OPTIONAL, err, sizeof err), -EINVAL);
    cr_assert_str_eq(err, "v.conf:1:10: expected \";\" or \"{\" after 1 argument of \"listen\", "
                          "got \"b\"");
    d = one("listen a { }");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_BLOCK_OPTIONAL, err, sizeof err), 0);
    d = one("listen a;");
    cr_assert_eq(hk_conf_expect(d, 1, 1, HK_CONF_BLOCK_OPTIONAL, err, sizeof err), 0);
}

Test(conf_values, quoting_in_messages)
{
    char q[HK_CONF_QUOTE_MAX];
    cr_assert_str_eq(hk_conf_quote("a\"b\\c\n\x01\xff", 8, q, sizeof q),
                     "\"a\\\"b\\\\c\\x0a\\x01\\xff\"");
    char long_in[100];
    memset(long_in, 'y', sizeof long_in);
    cr_assert_str_eq(hk_conf_quote(long_in, sizeof long_in, q, sizeof q),
                     "\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"...");
    /* The worst case fits HK_CONF_QUOTE_MAX. */
    memset(long_in, 0x01, sizeof long_in);
    hk_conf_quote(long_in, sizeof long_in, q, sizeof q);
    cr_assert_eq(strlen(q), 2 + 40 * 4 + 3);
    char tiny[4];
    cr_assert_str_eq(hk_conf_quote("abcdef", 6, tiny, sizeof tiny), "\"ab");
    hk_conf_pos_t p = {"x.conf", 3, 7};
    cr_assert_eq(hk_conf_errorf(err, sizeof err, &p, "expected %s, got %d", "a", 5), -EINVAL);
    cr_assert_str_eq(err, "x.conf:3:7: expected a, got 5");
}
