/*
 * The directives of hark-httpd's config file, one table per block.
 *
 * Why tables: most directives are one typed value stored in one field, and
 * what a person gets wrong about them is always the same (a unit, a range,
 * a forgotten ';', a directive given twice or in the wrong block). A table
 * row (name, kind, field offset, range) gets all of that checked by one
 * function with one message each, so the rows cannot drift apart; only
 * directives with structure (listen, sni, upstream, server, location) have
 * handlers of their own. Checks that need the whole file (proxy_pass to an
 * upstream defined later, the "/" location, redirect ports) run after the
 * tables, in config.c.
 */
#include <errno.h>
#include <hark/error.h>
#include <hark/net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_load.h"

/* Field of obj at offset off. */
static void *field(void *obj, size_t off)
{
    return (char *)obj + off;
}

static int set_value(httpd_loader_t *ld, const httpd_rule_t *r, const hk_conf_node_t *d, void *obj)
{
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    char what[96];
    uint64_t v = 0;
    bool b;
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    switch (r->kind) {
    case HTTPD_RULE_DURATION:
        if ((rc = hk_conf_duration(a, &v, ld->err, ld->errlen)) < 0)
            return rc;
        if (v < r->min)
            return hk_conf_error_arg(ld->err, ld->errlen, a, "a duration longer than 0");
        if (r->max && v > r->max) {
            char want[64];
            snprintf(want, sizeof want, "a duration of at most %lluus",
                     (unsigned long long)(r->max / 1000));
            return hk_conf_error_arg(ld->err, ld->errlen, a, want);
        }
        *(uint64_t *)field(obj, r->off) = v;
        return 0;
    case HTTPD_RULE_SIZE64:
    case HTTPD_RULE_SIZE:
        if ((rc = hk_conf_size(a, &v, ld->err, ld->errlen)) < 0)
            return rc;
        if (v < r->min || v > r->max) {
            snprintf(what, sizeof what, "a size from %llu to %llu bytes",
                     (unsigned long long)r->min, (unsigned long long)r->max);
            return hk_conf_error_arg(ld->err, ld->errlen, a, what);
        }
        if (r->kind == HTTPD_RULE_SIZE)
            *(size_t *)field(obj, r->off) = (size_t)v;
        else
            *(uint64_t *)field(obj, r->off) = v;
        return 0;
    case HTTPD_RULE_UNSIGNED:
    case HTTPD_RULE_COUNT:
    case HTTPD_RULE_PORT:
        if ((rc = hk_conf_uint(a, r->min, r->max, &v, ld->err, ld->errlen)) < 0)
            return rc;
        if (r->kind == HTTPD_RULE_UNSIGNED)
            *(unsigned *)field(obj, r->off) = (unsigned)v;
        else if (r->kind == HTTPD_RULE_COUNT)
            *(size_t *)field(obj, r->off) = (size_t)v;
        else
            *(int *)field(obj, r->off) = (int)v;
        return 0;
    case HTTPD_RULE_BOOL:
        if ((rc = hk_conf_bool(a, &b, ld->err, ld->errlen)) < 0)
            return rc;
        *(bool *)field(obj, r->off) = b;
        return 0;
    case HTTPD_RULE_CUSTOM:
        break;
    }
    return -EINVAL;
}

int httpd_config_apply_rules(httpd_loader_t *ld, const hk_conf_node_t *block,
                             const httpd_rule_t *rules, size_t nrules, const char *where, void *obj)
{
    const hk_conf_node_t *first[HTTPD_MAX_RULES] = {0};
    if (nrules > HTTPD_MAX_RULES)
        return -EINVAL; /* a table grew past first[]: raise HTTPD_MAX_RULES */
    for (size_t i = 0; i < block->nchildren; i++) {
        const hk_conf_node_t *d = &block->children[i];
        size_t k = 0;
        while (k < nrules && strcmp(rules[k].name, d->name) != 0)
            k++;
        char q[HK_CONF_QUOTE_MAX];
        if (k == nrules)
            return hk_conf_errorf(ld->err, ld->errlen, &d->pos, "expected %s, got %s", where,
                                  hk_conf_quote(d->name, strlen(d->name), q, sizeof q));
        if (first[k] && !rules[k].repeat)
            return hk_conf_errorf(ld->err, ld->errlen, &d->pos,
                                  "expected one \"%s\" in this block (the first is on line %u), "
                                  "got a second one",
                                  d->name, first[k]->pos.line);
        first[k] = d;
        int rc = rules[k].kind == HTTPD_RULE_CUSTOM ? rules[k].fn(ld, d, obj)
                                                    : set_value(ld, &rules[k], d, obj);
        if (rc < 0)
            return rc;
    }
    return 0;
}

char *httpd_config_resolve(httpd_loader_t *ld, const char *p)
{
    if (p[0] == '/' || !ld->base)
        return strdup(p);
    size_t n = strlen(ld->base) + strlen(p) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", ld->base, p);
    return s;
}

int httpd_config_path_arg(httpd_loader_t *ld, const hk_conf_node_t *d, bool dir, char **out)
{
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0 || (rc = hk_conf_string(a, "a path", ld->err, ld->errlen)) < 0)
        return rc;
    char *p = httpd_config_resolve(ld, a->str);
    if (!p)
        return httpd_config_oom(ld);
    struct stat st;
    const char *why = NULL;
    if (dir && stat(p, &st) != 0)
        why = hk_strerror(-errno);
    else if (dir && !S_ISDIR(st.st_mode))
        why = "not a directory";
    else if (!dir && access(p, R_OK) != 0)
        why = hk_strerror(-errno);
    if (why) {
        char q[HK_CONF_QUOTE_MAX];
        hk_conf_quote(a->str, a->len, q, sizeof q);
        rc = hk_conf_errorf(ld->err, ld->errlen, &a->pos, "expected %s, got %s (%s%s%s)",
                            dir ? "a directory" : "a readable file", q, a->str[0] == '/' ? "" : p,
                            a->str[0] == '/' ? "" : ": ", why);
        free(p);
        return rc;
    }
    free(*out);
    *out = p;
    return 0;
}

int httpd_config_url_path_arg(httpd_loader_t *ld, const hk_conf_arg_t *a, bool off_ok, char **out)
{
    if (off_ok && !a->end && !a->quoted && strcmp(a->str, "off") == 0) {
        free(*out);
        *out = NULL;
        return 0;
    }
    if (a->end || a->str[0] != '/')
        return hk_conf_error_arg(ld->err, ld->errlen, a,
                                 off_ok ? "a path starting with / or off"
                                        : "a path starting with /");
    char *s = strdup(a->str);
    if (!s)
        return httpd_config_oom(ld);
    free(*out);
    *out = s;
    return 0;
}

/* ---- the top level ---------------------------------------------------------------------- */

static int d_root(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    (void)obj;
    return httpd_config_path_arg(ld, d, true, &ld->top_root);
}

static int d_index(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_config_t *cfg = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (a->len == 0 || strchr(a->str, '/') || strcmp(a->str, ".") == 0 || strcmp(a->str, "..") == 0)
        return hk_conf_error_arg(ld->err, ld->errlen, a, "a file name such as index.html");
    char *s = strdup(a->str);
    if (!s)
        return httpd_config_oom(ld);
    free(cfg->index);
    cfg->index = s;
    return 0;
}

/* A log destination: "-" as is, a path made absolute (the file is created later). */
static int log_path(httpd_loader_t *ld, const hk_conf_arg_t *a, char **out)
{
    int rc = hk_conf_string(a, "a path or -", ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    char *s = strcmp(a->str, "-") == 0 ? strdup("-") : httpd_config_resolve(ld, a->str);
    if (!s)
        return httpd_config_oom(ld);
    free(*out);
    *out = s;
    return 0;
}

static int d_access_log(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    static const char *const formats[] = {"common", "combined", "json"};
    httpd_config_t *cfg = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 2, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (d->nargs == 1 && !a->quoted && strcmp(a->str, "off") == 0) {
        free(cfg->access_log);
        cfg->access_log = NULL;
        return 0;
    }
    cfg->access_format = HTTPD_LOG_COMBINED;
    if (d->nargs == 2) {
        const hk_conf_arg_t *f = hk_conf_arg(d, 1);
        size_t k = 0;
        while (k < 3 && strcmp(f->str, formats[k]) != 0)
            k++;
        if (k == 3)
            return hk_conf_error_arg(ld->err, ld->errlen, f, "common, combined or json");
        cfg->access_format = (httpd_log_format_t)k;
    }
    return log_path(ld, a, &cfg->access_log);
}

static int d_error_log(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_config_t *cfg = obj;
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    return rc < 0 ? rc : log_path(ld, hk_conf_arg(d, 0), &cfg->error_log);
}

/* status and metrics: a URL path, or off. */
static int d_special(httpd_loader_t *ld, const hk_conf_node_t *d, char **out)
{
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    return rc < 0 ? rc : httpd_config_url_path_arg(ld, hk_conf_arg(d, 0), true, out);
}

static int d_status(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    return d_special(ld, d, &((httpd_config_t *)obj)->status_path);
}

static int d_metrics(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    return d_special(ld, d, &((httpd_config_t *)obj)->metrics_path);
}

/* resolver: DNS servers for upstream names ("127.0.0.1:5353", comma-separated); default
 * resolv.conf. */
static int d_resolver(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj)
{
    httpd_config_t *cfg = obj;
    const hk_conf_arg_t *a = hk_conf_arg(d, 0);
    int rc = hk_conf_expect(d, 1, 1, HK_CONF_NO_BLOCK, ld->err, ld->errlen);
    if (rc < 0)
        return rc;
    if (a->len == 0 || strspn(a->str, "0123456789abcdefABCDEF.:[],") != a->len)
        return hk_conf_error_arg(ld->err, ld->errlen, a, "addresses such as 127.0.0.1:53");
    char *s = strdup(a->str);
    if (!s)
        return httpd_config_oom(ld);
    free(cfg->resolver);
    cfg->resolver = s;
    return 0;
}

static const httpd_rule_t top_rules[] = {
    {"resolver", HTTPD_RULE_CUSTOM, 0, 0, 0, d_resolver, false},
    {"threads", HTTPD_RULE_UNSIGNED, offsetof(httpd_config_t, threads), 1, 256, NULL, false},
    {"listen", HTTPD_RULE_CUSTOM, 0, 0, 0, httpd_config_listen, true},
    {"root", HTTPD_RULE_CUSTOM, 0, 0, 0, d_root, false},
    {"index", HTTPD_RULE_CUSTOM, 0, 0, 0, d_index, false},
    {"access_log", HTTPD_RULE_CUSTOM, 0, 0, 0, d_access_log, false},
    {"error_log", HTTPD_RULE_CUSTOM, 0, 0, 0, d_error_log, false},
    {"max_conns", HTTPD_RULE_UNSIGNED, offsetof(httpd_config_t, max_conns), 1, 1u << 24, NULL,
     false},
    {"header_timeout", HTTPD_RULE_DURATION, offsetof(httpd_config_t, header_timeout), 1, 0, NULL,
     false},
    {"keepalive_timeout", HTTPD_RULE_DURATION, offsetof(httpd_config_t, keepalive_timeout), 0, 0,
     NULL, false},
    {"send_timeout", HTTPD_RULE_DURATION, offsetof(httpd_config_t, send_timeout), 1, 0, NULL,
     false},
    {"keepalive_requests", HTTPD_RULE_UNSIGNED, offsetof(httpd_config_t, keepalive_requests), 1,
     1000000000, NULL, false},
    {"max_body", HTTPD_RULE_SIZE64, offsetof(httpd_config_t, max_body), 0, UINT64_MAX, NULL, false},
    {"max_header_bytes", HTTPD_RULE_SIZE, offsetof(httpd_config_t, max_header_bytes), 1024, 1048576,
     NULL, false},
    {"open_file_cache", HTTPD_RULE_COUNT, offsetof(httpd_config_t, open_file_cache), 0, 1048576,
     NULL, false},
    {"sndbuf", HTTPD_RULE_SIZE, offsetof(httpd_config_t, sndbuf), 0, 64u << 20, NULL, false},
    {"notsent_lowat", HTTPD_RULE_SIZE, offsetof(httpd_config_t, notsent_lowat), 0, 64u << 20, NULL,
     false},
    {"busy_poll", HTTPD_RULE_DURATION, offsetof(httpd_config_t, busy_poll), 0, HK_LOOP_SPIN_MAX_NS,
     NULL, false},
    {"open_file_ttl", HTTPD_RULE_DURATION, offsetof(httpd_config_t, open_file_ttl), 0, 0, NULL,
     false},
    {"status", HTTPD_RULE_CUSTOM, 0, 0, 0, d_status, false},
    {"metrics", HTTPD_RULE_CUSTOM, 0, 0, 0, d_metrics, false},
    {"drain_timeout", HTTPD_RULE_DURATION, offsetof(httpd_config_t, drain_timeout), 0, 0, NULL,
     false},
    {"upstream", HTTPD_RULE_CUSTOM, 0, 0, 0, httpd_config_upstream, true},
    {"location", HTTPD_RULE_CUSTOM, 0, 0, 0, httpd_config_location, true},
};

int httpd_config_apply(httpd_loader_t *ld)
{
    return httpd_config_apply_rules(ld, &ld->conf->root, top_rules,
                                    sizeof top_rules / sizeof top_rules[0], "a top-level directive",
                                    ld->cfg);
}
