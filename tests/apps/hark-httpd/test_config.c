/*
 * hark-httpd's config loader (apps/hark-httpd/config*.c): the defaults, a
 * full file with every directive, routing (longest prefix at segment
 * boundaries, "/api/" also taking "/api") and reference counting. The
 * error messages are in test_config_errors.c. Every test works in a fresh
 * temporary directory with real files (config_fixture.h), since the loader
 * checks that roots are directories and certificates readable.
 */
#include "config_fixture.h"

TestSuite(httpd_config, .init = setup, .fini = teardown);

/* The limits and timeouts of a config. */
typedef struct limits {
    unsigned max_conns;
    uint64_t header_timeout, keepalive_timeout, send_timeout;
    unsigned keepalive_requests;
    uint64_t max_body;
    size_t max_header_bytes, open_file_cache;
    uint64_t open_file_ttl, drain_timeout, busy_poll;
    size_t sndbuf, notsent_lowat;
} limits_t;

static const limits_t default_limits = {
    .max_conns = 16384,
    .header_timeout = 10000000000ull,
    .keepalive_timeout = 75000000000ull,
    .send_timeout = 60000000000ull,
    .keepalive_requests = 10000,
    .max_body = 1048576,
    .max_header_bytes = 32768,
    .open_file_cache = 1024,
    .open_file_ttl = 1000000000ull,
    .drain_timeout = 10000000000ull,
    .sndbuf = 262144,
    .notsent_lowat = 16384,
};

static void check_limits(const httpd_config_t *cfg, const limits_t *w)
{
    cr_assert_eq(cfg->max_conns, w->max_conns);
    cr_assert_eq(cfg->header_timeout, w->header_timeout);
    cr_assert_eq(cfg->keepalive_timeout, w->keepalive_timeout);
    cr_assert_eq(cfg->send_timeout, w->send_timeout);
    cr_assert_eq(cfg->keepalive_requests, w->keepalive_requests);
    cr_assert_eq(cfg->max_body, w->max_body);
    cr_assert_eq(cfg->max_header_bytes, w->max_header_bytes);
    cr_assert_eq(cfg->open_file_cache, w->open_file_cache);
    cr_assert_eq(cfg->open_file_ttl, w->open_file_ttl);
    cr_assert_eq(cfg->drain_timeout, w->drain_timeout);
    cr_assert_eq(cfg->busy_poll, w->busy_poll);
    cr_assert_eq(cfg->sndbuf, w->sndbuf);
    cr_assert_eq(cfg->notsent_lowat, w->notsent_lowat);
}

Test(httpd_config, defaults)
{
    httpd_config_t *cfg = httpd_config_defaults("/srv/www", NULL, 0);
    cr_assert_not_null(cfg);
    cr_assert_null(cfg->source);
    cr_assert_eq(cfg->threads, 1);
    cr_assert_eq(cfg->nlistens, 1);
    cr_assert_str_eq(cfg->listens[0].addr, "127.0.0.1:8080");
    cr_assert(!cfg->listens[0].tls);
    cr_assert_eq(cfg->nlocations, 1);
    cr_assert_str_eq(cfg->locations[0].prefix, "/");
    cr_assert_str_eq(cfg->locations[0].root, "/srv/www");
    cr_assert_null(cfg->locations[0].proxy);
    cr_assert(!cfg->locations[0].autoindex);
    cr_assert_eq(cfg->nupstreams, 0);
    cr_assert_str_eq(cfg->index, "index.html");
    check_limits(cfg, &default_limits);
    cr_assert_null(cfg->access_log);
    cr_assert_str_eq(cfg->error_log, "-");
    cr_assert_str_eq(cfg->status_path, "/_hark/status");
    cr_assert_str_eq(cfg->metrics_path, "/metrics");
    cr_assert_eq(httpd_config_route(cfg, "/any/thing", 10), &cfg->locations[0]);
    httpd_config_unref(cfg);

    cr_assert_eq(chdir(dir), 0);
    cfg = httpd_config_defaults("www", "[::1]:0", 4);
    cr_assert_not_null(cfg);
    cr_assert_eq(cfg->threads, 4);
    cr_assert_str_eq(cfg->listens[0].addr, "[::1]:0");
    cr_assert_str_eq(cfg->locations[0].root, in_dir("www"));
    httpd_config_unref(cfg);
}

Test(httpd_config, references)
{
    httpd_config_t *cfg = httpd_config_defaults("/srv", NULL, 1);
    cr_assert_eq(atomic_load(&cfg->refs), 1);
    cr_assert_eq(httpd_config_ref(cfg), cfg);
    cr_assert_eq(atomic_load(&cfg->refs), 2);
    httpd_config_unref(cfg);
    cr_assert_eq(atomic_load(&cfg->refs), 1);
    cr_assert_str_eq(cfg->locations[0].root, "/srv"); /* still alive */
    httpd_config_unref(cfg); /* frees; ASan reports a leak or a double free otherwise */
    httpd_config_unref(NULL);
    cr_assert_null(httpd_config_ref(NULL));
}

Test(httpd_config, full_file)
{
    httpd_config_t *cfg = load(
        "# every directive\n"
        "threads 4;\n"
        "listen 127.0.0.1:8080;\n"
        "listen 127.0.0.1:8443 {\n"
        "    tls on;\n"
        "    cert cert.pem;\n"
        "    key key.pem;\n"
        "    sni example.org { cert ex.pem; key ex.key; }\n"
        "}\n"
        "listen 127.0.0.1:8081 { redirect_https on; }\n"
        "listen [::1]:8082 { redirect_https on; https_port 443; }\n"
        "root www;\n"
        "index home.html;\n"
        "access_log logs/access.log json;\n"
        "error_log /var/log/hark/error.log;\n"
        "max_conns 1000;\n"
        "header_timeout 5s;  keepalive_timeout 0;  send_timeout 250ms;  keepalive_requests 7;\n"
        "max_body 2m;  max_header_bytes 8k;  open_file_cache 0;  open_file_ttl 2s;\n"
        "status off;  metrics /m;  drain_timeout 1m;  busy_poll 50us;  sndbuf 0;  notsent_lowat "
        "4k;\n"
        "upstream app {\n"
        "    balance least_conn;\n"
        "    server 127.0.0.1:9000 weight=2;\n"
        "    server backend.test:9001;\n"
        "    server [::1]:9002;\n"
        "    keepalive 8;  connect_timeout 2s;  read_timeout 30s;  send_timeout 31s;\n"
        "    max_fails 5;  fail_window 20s;  fail_timeout 15s;\n"
        "    health_check /health 3s;\n"
        "    resolve_interval 1h;\n"
        "}\n"
        "upstream other { server 10.0.0.1:80; }\n"
        "location /api/ { proxy_pass app; }\n"
        "location /static/ { root api; autoindex on; }\n"
        "location /o { proxy_pass other; }\n");
    cr_assert_str_eq(cfg->source, conf_path);
    cr_assert_eq(cfg->threads, 4);
    cr_assert_eq(cfg->nlistens, 4);
    const httpd_listen_t *l = cfg->listens;
    cr_assert_str_eq(l[0].addr, "127.0.0.1:8080");
    cr_assert(!l[0].tls);
    cr_assert_eq(l[0].ncerts, 0);
    cr_assert(l[1].tls);
    cr_assert_eq(l[1].ncerts, 2);
    cr_assert_null(l[1].certs[0].host);
    cr_assert_str_eq(l[1].certs[0].cert, in_dir("cert.pem"));
    cr_assert_str_eq(l[1].certs[0].key, in_dir("key.pem"));
    cr_assert_str_eq(l[1].certs[1].host, "example.org");
    cr_assert_str_eq(l[1].certs[1].cert, in_dir("ex.pem"));
    cr_assert_str_eq(l[1].certs[1].key, in_dir("ex.key"));
    cr_assert(l[2].redirect_https);
    cr_assert_eq(l[2].https_port, 8443); /* the first TLS listener's */
    cr_assert_eq(l[3].https_port, 443);
    cr_assert_str_eq(cfg->index, "home.html");
    cr_assert_str_eq(cfg->access_log, in_dir("logs/access.log"));
    cr_assert_eq(cfg->access_format, HTTPD_LOG_JSON);
    cr_assert_str_eq(cfg->error_log, "/var/log/hark/error.log");
    const limits_t want = {.max_conns = 1000,
                           .header_timeout = 5000000000ull,
                           .keepalive_timeout = 0,
                           .send_timeout = 250000000ull,
                           .keepalive_requests = 7,
                           .max_body = 2097152,
                           .max_header_bytes = 8192,
                           .open_file_cache = 0,
                           .open_file_ttl = 2000000000ull,
                           .drain_timeout = 60000000000ull,
                           .busy_poll = 50000ull,
                           .sndbuf = 0,
                           .notsent_lowat = 4096};
    check_limits(cfg, &want);
    cr_assert_null(cfg->status_path);
    cr_assert_str_eq(cfg->metrics_path, "/m");

    cr_assert_eq(cfg->nupstreams, 2);
    const httpd_upstream_t *u = &cfg->upstreams[0];
    cr_assert_str_eq(u->name, "app");
    cr_assert_eq(u->balance, HTTPD_BALANCE_LEAST_CONN);
    cr_assert_eq(u->nservers, 3);
    cr_assert_str_eq(u->servers[0].host, "127.0.0.1");
    cr_assert_eq(u->servers[0].port, 9000);
    cr_assert_eq(u->servers[0].weight, 2);
    cr_assert_str_eq(u->servers[1].host, "backend.test");
    cr_assert_eq(u->servers[1].port, 9001);
    cr_assert_eq(u->servers[1].weight, 1);
    cr_assert_str_eq(u->servers[2].host, "::1");
    cr_assert_eq(u->keepalive, 8);
    cr_assert_eq(u->connect_timeout, 2000000000ull);
    cr_assert_eq(u->read_timeout, 30000000000ull);
    cr_assert_eq(u->send_timeout, 31000000000ull);
    cr_assert_eq(u->max_fails, 5);
    cr_assert_eq(u->fail_window, 20000000000ull);
    cr_assert_eq(u->fail_timeout, 15000000000ull);
    cr_assert_str_eq(u->health_path, "/health");
    cr_assert_eq(u->health_interval, 3000000000ull);
    cr_assert_eq(u->resolve_interval, 3600000000000ull);
    const httpd_upstream_t *o = &cfg->upstreams[1];
    cr_assert_eq(o->balance, HTTPD_BALANCE_ROUND_ROBIN);
    cr_assert_eq(o->keepalive, 16);
    cr_assert_null(o->health_path);

    /* Sorted longest first; "/" added from the top-level root. */
    cr_assert_eq(cfg->nlocations, 4);
    cr_assert_str_eq(cfg->locations[0].prefix, "/static/");
    cr_assert_str_eq(cfg->locations[0].root, in_dir("api"));
    cr_assert(cfg->locations[0].autoindex);
    cr_assert_str_eq(cfg->locations[1].prefix, "/api/");
    cr_assert_eq(cfg->locations[1].proxy, u);
    cr_assert_null(cfg->locations[1].root);
    cr_assert_str_eq(cfg->locations[2].prefix, "/o");
    cr_assert_eq(cfg->locations[2].proxy, o);
    cr_assert_str_eq(cfg->locations[3].prefix, "/");
    cr_assert_str_eq(cfg->locations[3].root, in_dir("www"));
    httpd_config_unref(cfg);
}

Test(httpd_config, small_file_takes_defaults)
{
    char text[256];
    snprintf(text, sizeof text, "location / { root %s; }\n", in_dir("www"));
    httpd_config_t *cfg = load(text);
    cr_assert_eq(cfg->threads, 1);
    cr_assert_eq(cfg->nlistens, 1);
    cr_assert_str_eq(cfg->listens[0].addr, "127.0.0.1:8080");
    cr_assert_eq(cfg->nlocations, 1);
    cr_assert_str_eq(cfg->locations[0].root, in_dir("www"));
    cr_assert(!cfg->locations[0].gzip_static);
    cr_assert_str_eq(cfg->status_path, "/_hark/status");
    check_limits(cfg, &default_limits);
    httpd_config_unref(cfg);
    /* A location without root or proxy_pass takes the top-level root. */
    cfg = load("root www; location /docs/ { autoindex on; gzip_static on; }\n");
    cr_assert_eq(cfg->nlocations, 2);
    cr_assert_str_eq(cfg->locations[0].prefix, "/docs/");
    cr_assert_str_eq(cfg->locations[0].root, in_dir("www"));
    cr_assert(cfg->locations[0].gzip_static);
    cr_assert(!cfg->locations[1].gzip_static, "the implicit \"/\" keeps the default");
    httpd_config_unref(cfg);
}

static const char *route(const httpd_config_t *cfg, const char *path)
{
    const httpd_location_t *loc = httpd_config_route(cfg, path, strlen(path));
    cr_assert_not_null(loc, "%s", path);
    return loc->prefix;
}

Test(httpd_config, routing)
{
    httpd_config_t *cfg = load("root www;\n"
                               "upstream app { server 127.0.0.1:9000; }\n"
                               "location /api/ { proxy_pass app; }\n"
                               "location /api/v2/ { proxy_pass app; }\n"
                               "location /img { root api; }\n"
                               "location /doc { root api; }\n"
                               "location /doc/ { root api; }\n");
    cr_assert_str_eq(route(cfg, "/"), "/");
    cr_assert_str_eq(route(cfg, "/index.html"), "/");
    cr_assert_str_eq(route(cfg, "/api/"), "/api/");
    cr_assert_str_eq(route(cfg, "/api/users/1"), "/api/");
    cr_assert_str_eq(route(cfg, "/api"), "/api/"); /* the dropped slash */
    cr_assert_str_eq(route(cfg, "/apix"), "/");
    cr_assert_str_eq(route(cfg, "/api/v2"), "/api/v2/");
    cr_assert_str_eq(route(cfg, "/api/v2/x"), "/api/v2/");
    cr_assert_str_eq(route(cfg, "/api/v21"), "/api/");
    cr_assert_str_eq(route(cfg, "/img"), "/img");
    cr_assert_str_eq(route(cfg, "/img/a.png"), "/img");
    cr_assert_str_eq(route(cfg, "/imgs/a.png"), "/"); /* segment boundary */
    cr_assert_str_eq(route(cfg, "/doc"), "/doc");     /* exact beats a dropped slash */
    cr_assert_str_eq(route(cfg, "/doc/x"), "/doc/");
    cr_assert_str_eq(route(cfg, "*"), "/"); /* no leading slash: "/" */
    cr_assert_str_eq(route(cfg, ""), "/");
    /* len counts, not the terminator. */
    cr_assert_str_eq(httpd_config_route(cfg, "/api/zzz", 4)->prefix, "/api/");
    httpd_config_unref(cfg);
}
