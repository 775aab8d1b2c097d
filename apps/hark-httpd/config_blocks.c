/*
 * The block directives of hark-httpd's config: listen (with sni), upstream
 * (with server) and location.
 *
 * Why blocks are built aside and pushed at the end: a listen's default
 * certificate must be certs[0] although its cert may come after the sni
 * blocks, and an error half-way must leave the config with only complete
 * entries (so that one free function frees any partial config). So each
 * handler fills a local struct, checks what needs the whole block, and only
 * then appends it; on error it frees the local struct alone.
 */
#include <errno.h>
#include <hark/net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_load.h"

/* ---- listen and sni --------------------------------------------------------------------- */

/* A listen being read; pushed to cfg->listens once complete, certs[0] = def. */
typedef struct listen_build {
    httpd_listen_t l;
    httpd_sni_t def;                   /* cert and key of the listen block itself */
    const hk_conf_node_t *first_tls_d; /* the first cert, key or sni (for "tls off" errors) */
    const hk_conf_node_t *redirect;    /* redirect_https on */
    httpd_sni_t *snis;
    size_t nsnis;
} listen_build_t;

static int d_cert(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_sni_t *s = obj;
    return httpd_config_path_arg(ld, d, false, &s->cert);
}

static int d_key(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_sni_t *s = obj;
    return httpd_config_path_arg(ld, d, false, &s->key);
}

static const httpd_rule_t sni_rules[] = {
    {"cert", HTTPD_RULE_CUSTOM, 0, 0, 0, d_cert, false},
    {"key", HTTPD_RULE_CUSTOM, 0, 0, 0, d_key, false},
};

/* Both cert and key, or the missing one reported at the block's directive. */
static int need_pair(httpd_loader_t *ld, const hk_conf_node_t *d, const httpd_sni_t *s,
                     const char *block)
{
    if (s->cert && s->key)
        return 0;
    return hk_conf_errorf(ld->err, ld->errlen, &d->pos,
                          "expected a \"%s\" directive in %s, got none", s->cert ? "key" : "cert",
                          block);
}

static int d_sni(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    listen_build_t *lb = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_BLOCK, ld->err, ld->errlen);
    if (rc < 0 ||
        (rc = hk_conf_string(a, "a server name such as example.org", ld->err, ld->errlen)) < 0)
        return rc;
    for (size_t i = 0; i < lb->nsnis; i++) {
        if (strcasecmp(lb->snis[i].host, a->str) == 0)
            return hk_conf_error_arg(ld->err, ld->errlen, a,
                                     "a server name that no other sni of this listen has");
    }
    httpd_sni_t *snis = httpd_config_grow(lb->snis, lb->nsnis, sizeof *snis);
    if (!snis)
        return httpd_config_oom(ld);
    lb->snis = snis;
    httpd_sni_t *s = &snis[lb->nsnis++];
    if (!(s->host = strdup(a->str)))
        return httpd_config_oom(ld);
    if (!lb->first_tls_d)
        lb->first_tls_d = d;
    rc = httpd_config_apply_rules(ld, d, sni_rules, 2, "a directive of sni (cert, key)", s);
    return rc < 0 ? rc : need_pair(ld, d, s, "this sni block");
}

static int d_listen_cert(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    listen_build_t *lb = obj;
    if (!lb->first_tls_d)
        lb->first_tls_d = d;
    return d_cert(ld, d, &lb->def);
}

static int d_listen_key(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    listen_build_t *lb = obj;
    if (!lb->first_tls_d)
        lb->first_tls_d = d;
    return d_key(ld, d, &lb->def);
}

static int d_redirect(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    listen_build_t *lb = obj;
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0 ||
        (rc = hk_conf_bool(hk_conf_arg(d, 0), &lb->l.redirect_https, ld->err, ld->errlen)) < 0)
        return rc;
    lb->redirect = lb->l.redirect_https ? d : NULL;
    return 0;
}

static const httpd_rule_t listen_rules[] = {
    {"tls", HTTPD_RULE_BOOL, offsetof(listen_build_t, l.tls), 0, 0, NULL, false},
    {"cert", HTTPD_RULE_CUSTOM, 0, 0, 0, d_listen_cert, false},
    {"key", HTTPD_RULE_CUSTOM, 0, 0, 0, d_listen_key, false},
    {"sni", HTTPD_RULE_CUSTOM, 0, 0, 0, d_sni, true},
    {"redirect_https", HTTPD_RULE_CUSTOM, 0, 0, 0, d_redirect, false},
    {"https_port", HTTPD_RULE_PORT, offsetof(listen_build_t, l.https_port), 1, 65535, NULL, false},
};

/* The checks that need the whole listen block, then certs = def + snis. */
static int listen_finish(httpd_loader_t *ld, const hk_conf_node_t *d, listen_build_t *lb)
{
    if (!lb->l.tls && lb->first_tls_d)
        return hk_conf_errorf(ld->err, ld->errlen, &lb->first_tls_d->pos,
                              "expected \"tls on\" in a listen with certificates, got tls off");
    if (lb->l.tls && lb->redirect)
        return hk_conf_errorf(
            ld->err, ld->errlen, &lb->redirect->pos,
            "expected redirect_https on a listen without tls, got it with tls on");
    if (!lb->l.tls)
        return 0;
    int rc = need_pair(ld, d, &lb->def, "a listen with tls on");
    if (rc < 0)
        return rc;
    lb->l.certs = calloc(lb->nsnis + 1, sizeof *lb->l.certs);
    if (!lb->l.certs)
        return httpd_config_oom(ld);
    lb->l.certs[0] = lb->def;
    lb->def = (httpd_sni_t){0};
    if (lb->nsnis)
        memcpy(lb->l.certs + 1, lb->snis, lb->nsnis * sizeof *lb->snis);
    lb->l.ncerts = lb->nsnis + 1;
    free(lb->snis);
    lb->snis = NULL;
    lb->nsnis = 0;
    return 0;
}

int httpd_config_listen(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_config_t *cfg = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_BLOCK_OPTIONAL, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (a->end || hk_addr_parse(a->str, &ss, &sslen) < 0)
        return hk_conf_error_arg(ld->err, ld->errlen, a,
                                 "an address such as 127.0.0.1:8080 or [::1]:8443");
    for (size_t i = 0; i < cfg->nlistens; i++) {
        if (ld->listens[i].sslen == sslen && memcmp(&ld->listens[i].ss, &ss, sslen) == 0) {
            char what[96];
            snprintf(what, sizeof what, "an address that no other listen has (line %u)",
                     ld->listens[i].line);
            return hk_conf_error_arg(ld->err, ld->errlen, a, what);
        }
    }
    listen_build_t lb = {0};
    rc = httpd_config_apply_rules(
        ld, d, listen_rules, sizeof listen_rules / sizeof listen_rules[0],
        "a directive of listen (tls, cert, key, sni, redirect_https, https_port)", &lb);
    if (rc == 0)
        rc = listen_finish(ld, d, &lb);
    if (rc == 0 && !(lb.l.addr = strdup(a->str)))
        rc = httpd_config_oom(ld);
    httpd_listen_t *ls = rc < 0 ? NULL : httpd_config_grow(cfg->listens, cfg->nlistens, sizeof *ls);
    if (ls)
        cfg->listens = ls;
    httpd_listen_seen_t *seen =
        ls ? httpd_config_grow(ld->listens, ld->nlistens, sizeof *seen) : NULL;
    if (seen)
        ld->listens = seen;
    if (rc == 0 && !seen)
        rc = httpd_config_oom(ld);
    if (rc < 0) {
        httpd_config_free_sni(&lb.def);
        for (size_t i = 0; i < lb.nsnis; i++)
            httpd_config_free_sni(&lb.snis[i]);
        free(lb.snis);
        httpd_config_free_listen(&lb.l);
        return rc;
    }
    lb.l.line = d->pos.line;
    ls[cfg->nlistens++] = lb.l;
    seen[ld->nlistens++] = (httpd_listen_seen_t){ss, sslen, d->pos.line, lb.redirect};
    return 0;
}

/* ---- upstream and server ---------------------------------------------------------------- */

/* "host:port" or "[v6]:port" into s->host (without brackets) and s->port. */
static int parse_server_addr(const char *str, httpd_server_t *s)
{
    const char *colon = strrchr(str, ':');
    if (!colon || colon == str || colon[1] == '\0' || strlen(colon + 1) > 5)
        return -EINVAL;
    const char *h = str, *he = colon;
    if (str[0] == '[') {
        if (colon[-1] != ']' || colon - str < 3)
            return -EINVAL;
        h++;
        he--;
    }
    for (const char *p = h; p < he; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
                  (str[0] == '[' && (*p == ':' || *p == '%')); /* IPv6 needs its brackets */
        if (!ok)
            return -EINVAL;
    }
    unsigned port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        port = port * 10 + (unsigned)(*p - '0');
    }
    if (port < 1 || port > 65535 || !(s->host = strndup(h, (size_t)(he - h))))
        return port < 1 || port > 65535 ? -EINVAL : -ENOMEM;
    s->port = (int)port;
    return 0;
}

static int d_server(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_upstream_t *u = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 2, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    httpd_server_t s = {.weight = 1};
    rc = a->end ? -EINVAL : parse_server_addr(a->str, &s);
    if (rc == -ENOMEM)
        return httpd_config_oom(ld);
    if (rc < 0)
        return hk_conf_error_arg(ld->err, ld->errlen, a,
                                 "host:port such as backend.test:9000 or [::1]:9000");
    /*
     * One line per server: /metrics and the health gauges know a server by
     * its upstream and host:port, so a second line for it would share (and
     * overwrite) the first one's figures. nginx takes a repeated server as
     * one more share of the traffic; weight= says that here.
     */
    for (size_t i = 0; i < u->nservers; i++) {
        if (u->servers[i].port == s.port && strcasecmp(u->servers[i].host, s.host) == 0) {
            char what[128];
            snprintf(what, sizeof what,
                     "a server that no other line of this upstream has (line %u; weight=N "
                     "gives one more requests)",
                     u->servers[i].line);
            free(s.host);
            return hk_conf_error_arg(ld->err, ld->errlen, a, what);
        }
    }
    s.line = d->pos.line;
    hk_conf_arg_t w;
    uint64_t weight = 1;
    if (d->nargs == 2 && hk_conf_kv(hk_conf_arg(d, 1), "weight", &w) != 1)
        rc = hk_conf_error_arg(ld->err, ld->errlen, hk_conf_arg(d, 1), "weight=N or \";\"");
    else if (d->nargs == 2)
        rc = hk_conf_uint(&w, 1, 1000, &weight, ld->err, ld->errlen);
    httpd_server_t *servers =
        rc < 0 ? NULL : httpd_config_grow(u->servers, u->nservers, sizeof *servers);
    if (!servers) {
        free(s.host);
        return rc < 0 ? rc : httpd_config_oom(ld);
    }
    u->servers = servers;
    s.weight = (unsigned)weight;
    servers[u->nservers++] = s;
    return 0;
}

static int d_balance(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_upstream_t *u = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (strcmp(a->str, "round_robin") == 0)
        u->balance = HTTPD_BALANCE_ROUND_ROBIN;
    else if (strcmp(a->str, "least_conn") == 0)
        u->balance = HTTPD_BALANCE_LEAST_CONN;
    else
        return hk_conf_error_arg(ld->err, ld->errlen, a, "round_robin or least_conn");
    return 0;
}

static int d_health(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_upstream_t *u = obj;
    int rc = hk_conf_expect(d, 1, 2, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (d->nargs == 2) {
        const hk_conf_arg_t *iv = hk_conf_arg(d, 1);
        if ((rc = hk_conf_duration(iv, &u->health_interval, ld->err, ld->errlen)) < 0)
            return rc;
        if (u->health_interval == 0)
            return hk_conf_error_arg(ld->err, ld->errlen, iv, "a duration longer than 0");
    }
    return httpd_config_url_path_arg(ld, hk_conf_arg(d, 0), false, &u->health_path);
}

static const httpd_rule_t upstream_rules[] = {
    {"balance", HTTPD_RULE_CUSTOM, 0, 0, 0, d_balance, false},
    {"server", HTTPD_RULE_CUSTOM, 0, 0, 0, d_server, true},
    {"keepalive", HTTPD_RULE_UNSIGNED, offsetof(httpd_upstream_t, keepalive), 0, 4096, NULL, false},
    {"connect_timeout", HTTPD_RULE_DURATION, offsetof(httpd_upstream_t, connect_timeout), 1, 0,
     NULL, false},
    {"read_timeout", HTTPD_RULE_DURATION, offsetof(httpd_upstream_t, read_timeout), 1, 0, NULL,
     false},
    {"send_timeout", HTTPD_RULE_DURATION, offsetof(httpd_upstream_t, send_timeout), 1, 0, NULL,
     false},
    {"max_fails", HTTPD_RULE_UNSIGNED, offsetof(httpd_upstream_t, max_fails), 0, 1000, NULL, false},
    {"fail_window", HTTPD_RULE_DURATION, offsetof(httpd_upstream_t, fail_window), 1, 0, NULL,
     false},
    {"fail_timeout", HTTPD_RULE_DURATION, offsetof(httpd_upstream_t, fail_timeout), 1, 0, NULL,
     false},
    {"health_check", HTTPD_RULE_CUSTOM, 0, 0, 0, d_health, false},
    {"resolve_interval", HTTPD_RULE_DURATION, offsetof(httpd_upstream_t, resolve_interval), 1, 0,
     NULL, false},
};

int httpd_config_upstream(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_config_t *cfg = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_BLOCK, ld->err, ld->errlen);
    if (rc < 0 || (rc = hk_conf_string(a, "an upstream name", ld->err, ld->errlen)) < 0)
        return rc;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (strcmp(cfg->upstreams[i].name, a->str) == 0)
            return hk_conf_error_arg(ld->err, ld->errlen, a, "a name that no other upstream has");
    }
    httpd_upstream_t u;
    httpd_config_upstream_defaults(&u);
    if (!(u.name = strdup(a->str)))
        return httpd_config_oom(ld);
    rc = httpd_config_apply_rules(
        ld, d, upstream_rules, sizeof upstream_rules / sizeof upstream_rules[0],
        "a directive of upstream (balance, server, keepalive, connect_timeout, ...)", &u);
    if (rc == 0 && u.nservers == 0)
        rc = hk_conf_errorf(ld->err, ld->errlen, &d->pos,
                            "expected a \"server\" directive in this upstream, got none");
    httpd_upstream_t *ups =
        rc < 0 ? NULL : httpd_config_grow(cfg->upstreams, cfg->nupstreams, sizeof *ups);
    if (!ups) {
        httpd_config_free_upstream(&u);
        return rc < 0 ? rc : httpd_config_oom(ld);
    }
    cfg->upstreams = ups;
    ups[cfg->nupstreams++] = u;
    return 0;
}

/* ---- location --------------------------------------------------------------------------- */

typedef struct location_build {
    httpd_location_t loc;
    const hk_conf_node_t *proxy_d; /* the proxy_pass directive, or NULL */
} location_build_t;

static int d_loc_root(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    location_build_t *lb = obj;
    return httpd_config_path_arg(ld, d, true, &lb->loc.root);
}

/* The upstream is looked up once the whole file is read: it may come later. */
static int d_proxy_pass(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    location_build_t *lb = obj;
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0 ||
        (rc = hk_conf_string(hk_conf_arg(d, 0), "an upstream name", ld->err, ld->errlen)) < 0)
        return rc;
    lb->proxy_d = d;
    return 0;
}

static const httpd_rule_t location_rules[] = {
    {"root", HTTPD_RULE_CUSTOM, 0, 0, 0, d_loc_root, false},
    {"autoindex", HTTPD_RULE_BOOL, offsetof(location_build_t, loc.autoindex), 0, 0, NULL, false},
    {"gzip_static", HTTPD_RULE_BOOL, offsetof(location_build_t, loc.gzip_static), 0, 0, NULL,
     false},
    {"proxy_pass", HTTPD_RULE_CUSTOM, 0, 0, 0, d_proxy_pass, false},
};

int httpd_config_location(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_config_t *cfg = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (a->end || a->str[0] != '/')
        return hk_conf_error_arg(ld->err, ld->errlen, a, "a path prefix starting with /");
    for (size_t i = 0; i < cfg->nlocations; i++) {
        if (strcmp(cfg->locations[i].prefix, a->str) == 0) {
            char what[96];
            snprintf(what, sizeof what, "a prefix that no other location has (line %u)",
                     ld->locations[i].directive->pos.line);
            return hk_conf_error_arg(ld->err, ld->errlen, a, what);
        }
    }
    location_build_t lb = {0};
    rc = httpd_config_apply_rules(
        ld, d, location_rules, sizeof location_rules / sizeof location_rules[0],
        "a directive of location (root, autoindex, gzip_static, proxy_pass)", &lb);
    if (rc == 0 && lb.proxy_d && lb.loc.root)
        rc = hk_conf_errorf(ld->err, ld->errlen, &lb.proxy_d->pos,
                            "expected either root or proxy_pass in a location, got both");
    if (rc == 0 && !(lb.loc.prefix = strdup(a->str)))
        rc = httpd_config_oom(ld);
    httpd_location_t *locs =
        rc < 0 ? NULL : httpd_config_grow(cfg->locations, cfg->nlocations, sizeof *locs);
    if (locs)
        cfg->locations = locs;
    httpd_location_seen_t *seen =
        locs ? httpd_config_grow(ld->locations, ld->nlocations, sizeof *seen) : NULL;
    if (seen)
        ld->locations = seen;
    if (rc == 0 && !seen)
        rc = httpd_config_oom(ld);
    if (rc < 0) {
        httpd_config_free_location(&lb.loc);
        return rc;
    }
    locs[cfg->nlocations++] = lb.loc;
    seen = &seen[ld->nlocations++];
    seen->directive = d;
    seen->proxy = lb.proxy_d ? hk_conf_arg(lb.proxy_d, 0) : NULL;
    return 0;
}
