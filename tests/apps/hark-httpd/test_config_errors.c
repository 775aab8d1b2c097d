/*
 * hark-httpd's config loader: every error, with the exact file:line:col of
 * its message: syntax passed through from hark/conf.h, unknown and repeated
 * directives, bad values, listen, sni and TLS mistakes, upstreams, locations
 * and roots, unreadable files.
 */
#include "config_fixture.h"

TestSuite(httpd_config_errors, .init = setup, .fini = teardown);

Test(httpd_config_errors, file_and_syntax_errors)
{
    cr_assert_null(httpd_config_load("/nonexistent/hark.conf", err, sizeof err));
    cr_assert_str_eq(err, "/nonexistent/hark.conf: expected a readable file, got no such file "
                          "or directory");
    fails("root www\n", "2:1: expected \";\" or \"{\" to end \"root\", got end of file");
    fails("root www;\nthreads 1\nlisten 127.0.0.1:80;\n",
          "3:1: expected \";\" after 1 argument of \"threads\", got \"listen\"");
    fails("root www;\nlocation / {\n", "2:12: expected \"}\" to close this block, got end of file");
}

Test(httpd_config_errors, unknown_and_repeated_directives)
{
    fails("root www;\nlisen 127.0.0.1:80;\n", "2:1: expected a top-level directive, got \"lisen\"");
    fails("root www;\nlisten 127.0.0.1:80 { tsl on; }\n",
          "2:23: expected a directive of listen (tls, cert, key, sni, redirect_https, "
          "https_port), got \"tsl\"");
    fails("root www;\nupstream a { server 127.0.0.1:1; wieght 2; }\n",
          "2:34: expected a directive of upstream (balance, server, keepalive, connect_timeout, "
          "...), got \"wieght\"");
    fails("root www;\nlocation /x { proxy app; }\n",
          "2:15: expected a directive of location (root, autoindex, gzip_static, proxy_pass), got "
          "\"proxy\"");
    fails("threads 2;\nroot www;\n  threads 3;\n",
          "3:3: expected one \"threads\" in this block (the first is on line 1), got a second one");
    fails("root www;\nthreads;\n", "2:8: expected 1 argument to \"threads\", got \";\"");
    fails("root www;\nthreads 2 { }\n",
          "2:11: expected \";\" to end \"threads\" (it takes no block), got \"{\"");
}

Test(httpd_config_errors, value_errors)
{
    fails("root www;\nthreads 0;\n", "2:9: expected an integer from 1 to 256, got \"0\"");
    fails("root www;\nthreads 257;\n", "2:9: expected an integer from 1 to 256, got \"257\"");
    fails("root www;\nheader_timeout ten;\n",
          "2:16: expected a duration such as 10s (a number and ns, us, ms, s, m or h), got "
          "\"ten\"");
    fails("root www;\nheader_timeout 0s;\n", "2:16: expected a duration longer than 0, got \"0s\"");
    /* Once accepted: the deadline now + 5124095h wrapped, and every connection closed at once. */
    fails("root www;\nheader_timeout 5124095h;\n",
          "2:16: expected a duration of at most 1281023h, got \"5124095h\"");
    fails("root www;\nnotsent_lowat 65m;\n",
          "2:15: expected a size from 0 to 67108864 bytes, got \"65m\"");
    fails("root www;\nbusy_poll 20ms;\n",
          "2:11: expected a duration of at most 10000us, got \"20ms\"");
    fails("root www;\nmax_body 1mb;\n",
          "2:10: expected a size such as 32k (a number and k, m or g), got \"1mb\"");
    fails("root www;\nmax_header_bytes 2m;\n",
          "2:18: expected a size from 1024 to 1048576 bytes, got \"2m\"");
    fails("root www;\nlocation / { root www; autoindex yes; }\n",
          "2:34: expected on or off, got \"yes\"");
    fails("root www;\nindex a/b.html;\n", "2:7: expected a file name such as index.html, got "
                                          "\"a/b.html\"");
    fails("root www;\naccess_log /tmp/a.log fancy;\n",
          "2:23: expected common, combined or json, got \"fancy\"");
    fails("root www;\nstatus status;\n", "2:8: expected a path starting with / or off, got "
                                         "\"status\"");
    fails("root www;\nlisten localhost:80;\n",
          "2:8: expected an address such as 127.0.0.1:8080 or [::1]:8443, got \"localhost:80\"");
    fails("root www;\nlocation api { root www; }\n",
          "2:10: expected a path prefix starting with /, got \"api\"");
}

Test(httpd_config_errors, listen_errors)
{
    fails("root www;\nlisten 127.0.0.1:80;\nlisten 127.0.0.1:81;\nlisten 127.0.0.1:80 { }\n",
          "4:8: expected an address that no other listen has (line 2), got \"127.0.0.1:80\"");
    fails("root www;\nlisten [::1]:80;\nlisten [0:0::1]:80;\n",
          "3:8: expected an address that no other listen has (line 2), got \"[0:0::1]:80\"");
    fails("root www;\nlisten 127.0.0.1:443 { tls on; }\n",
          "2:1: expected a \"cert\" directive in a listen with tls on, got none");
    fails("root www;\nlisten 127.0.0.1:443 {\n  tls on;\n  cert cert.pem;\n}\n",
          "2:1: expected a \"key\" directive in a listen with tls on, got none");
    fails("root www;\nlisten 127.0.0.1:443 {\n  cert cert.pem;\n  key key.pem;\n}\n",
          "3:3: expected \"tls on\" in a listen with certificates, got tls off");
    fails("root www;\nlisten 127.0.0.1:443 { tls on; cert cert.pem; key key.pem;\n"
          "  sni a.test { cert ex.pem; }\n}\n",
          "3:3: expected a \"key\" directive in this sni block, got none");
    fails(
        "root www;\nlisten 127.0.0.1:443 { tls on; cert cert.pem; key key.pem;\n"
        "  sni a.test { cert ex.pem; key ex.key; }\n  sni A.test { cert ex.pem; key ex.key; }\n}\n",
        "4:7: expected a server name that no other sni of this listen has, got \"A.test\"");
    fails("root www;\nlisten 127.0.0.1:443 { tls on; cert cert.pem; key key.pem; "
          "redirect_https on; }\n",
          "2:60: expected redirect_https on a listen without tls, got it with tls on");
    fails("root www;\nlisten 127.0.0.1:80 {\n  redirect_https on;\n}\n",
          "3:3: expected https_port in this listen or a listen with tls on, got neither");
}

Test(httpd_config_errors, upstream_errors)
{
    fails("root www;\nupstream app { server 127.0.0.1:9000; }\nlocation /api/ { proxy_pass ap; }\n",
          "3:29: expected the name of an upstream block, got \"ap\"");
    fails("root www;\nupstream app { keepalive 1; }\n",
          "2:1: expected a \"server\" directive in this upstream, got none");
    fails("root www;\nupstream a { server 10.0.0.1:1; }\nupstream a { server 10.0.0.1:2; }\n",
          "3:10: expected a name that no other upstream has, got \"a\"");
    const char *bad_servers[] = {"backend:0", "::1:80",        "[::1]", "backend",  ":80",
                                 "a b:80",    "backend:65536", "[]:80", "host/x:80"};
    for (size_t i = 0; i < sizeof bad_servers / sizeof bad_servers[0]; i++) {
        char text[128], want[256];
        snprintf(text, sizeof text, "root www;\nupstream a { server \"%s\"; }\n", bad_servers[i]);
        snprintf(want, sizeof want,
                 "2:21: expected host:port such as backend.test:9000 or [::1]:9000, got \"%s\"",
                 bad_servers[i]);
        fails(text, want);
    }
    /*
     * A server listed twice in one upstream (host case and IPv6 brackets
     * aside): its two entries shared one slot of counters and health gauges,
     * each overwriting the other's "down".
     */
    fails("root www;\nupstream a {\nserver Backend.test:80;\nserver 10.0.0.1:80;\n"
          "server backend.test:80 weight=2;\n}\n",
          "5:8: expected a server that no other line of this upstream has (line 3; weight=N "
          "gives one more requests), got \"backend.test:80\"");
    fails("root www;\nupstream a { server [::1]:80; server [::1]:80; }\n",
          "2:38: expected a server that no other line of this upstream has (line 2; weight=N "
          "gives one more requests), got \"[::1]:80\"");
    /* The same server in two upstreams is two servers, as are two ports of one host. */
    httpd_config_unref(load("root www;\nupstream a { server 10.0.0.1:1; server 10.0.0.1:2; }\n"
                            "upstream b { server 10.0.0.1:1; }\n"));
    fails("root www;\nupstream a { server 10.0.0.1:1 weight=0; }\n",
          "2:39: expected an integer from 1 to 1000, got \"0\"");
    fails("root www;\nupstream a { server 10.0.0.1:1 max=3; }\n",
          "2:32: expected weight=N or \";\", got \"max=3\"");
    fails("root www;\nupstream a { server 10.0.0.1:1; balance random; }\n",
          "2:41: expected round_robin or least_conn, got \"random\"");
    fails("root www;\nupstream a { server 10.0.0.1:1; health_check /h 0s; }\n",
          "2:49: expected a duration longer than 0, got \"0s\"");
    fails("root www;\nupstream a { server 10.0.0.1:1; health_check h; }\n",
          "2:46: expected a path starting with /, got \"h\"");
    /* An upstream may come after the location that names it. */
    httpd_config_t *cfg = load("root www;\nlocation /a/ { proxy_pass late; }\n"
                               "upstream late { server 10.0.0.1:1; }\n");
    cr_assert_eq(cfg->locations[0].proxy, &cfg->upstreams[0]);
    httpd_config_unref(cfg);
}

Test(httpd_config_errors, location_and_root_errors)
{
    char want[512];
    snprintf(want, sizeof want,
             "2:21: expected a directory, got \"nope\" (%s: no such file or directory)",
             in_dir("nope"));
    fails("root www;\nlocation /x/ { root nope; }\n", want);
    snprintf(want, sizeof want, "1:6: expected a directory, got \"file\" (%s: not a directory)",
             in_dir("file"));
    fails("root file;\n", want);
    fails("root /nonexistent/www;\n",
          "1:6: expected a directory, got \"/nonexistent/www\" (no such file or directory)");
    fails(
        "root www;\nupstream a { server 10.0.0.1:1; }\nlocation /a/ { root www; proxy_pass a; }\n",
        "3:26: expected either root or proxy_pass in a location, got both");
    fails("root www;\nlocation /a/ { root www; }\nlocation /a/ { root api; }\n",
          "3:10: expected a prefix that no other location has (line 2), got \"/a/\"");
    fails("listen 127.0.0.1:80;\n",
          "2:1: expected a \"root\" directive or a \"location /\" block, got neither");
    fails("location / { autoindex on; }\n",
          "1:1: expected root or proxy_pass in this location (or a top-level root), got neither");
    snprintf(want, sizeof want,
             "2:37: expected a readable file, got \"nope.pem\" (%s: no such file or directory)",
             in_dir("nope.pem"));
    fails("root www;\nlisten 127.0.0.1:443 { tls on; cert nope.pem; key key.pem; }\n", want);
}

Test(httpd_config_errors, unreadable_certificate)
{
    if (geteuid() == 0) {
        teardown(); /* a skipped test's .fini does not run: its temp dir stayed behind */
        cr_skip_test("root reads every file");
    }
    cr_assert_eq(chmod(in_dir("key.pem"), 0), 0);
    char want[512];
    snprintf(want, sizeof want, "2:51: expected a readable file, got \"key.pem\" (%s: %s)",
             in_dir("key.pem"), "permission denied");
    fails("root www;\nlisten 127.0.0.1:443 { tls on; cert cert.pem; key key.pem; }\n", want);
}
