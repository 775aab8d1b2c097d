/*
 * hark-httpd's configuration: defaults, loading, routing and lifetime.
 *
 * Loading reads the file with hark/conf.h, applies the directive tables
 * (config_schema.c, config_blocks.c), then runs the checks that need the
 * whole file: proxy_pass names an upstream that may be defined further down,
 * a location without root or proxy_pass takes the top-level root, there is
 * always a "/" location (so routing never fails), a redirect needs a port.
 * Locations are then sorted once, longest prefix first, so that routing
 * stops at the first prefix too short to beat the best match so far.
 *
 * Routing rule: a prefix matches at a path-segment boundary. "/api/" matches
 * "/api/x" and also "/api" itself (a client that drops the slash should reach
 * the API, not a static file named api); "/api" matches "/api" and "/api/x"
 * but not "/apix". Between equally long matches, the one that needs no
 * dropped slash wins, so "location /api" and "location /api/" can coexist.
 *
 * Lifetime: a config is immutable once returned; readers on other threads
 * hold references. The count is atomic; the release that drops it to zero
 * (acq_rel) sees every write made before the other releases, then frees.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_load.h"

#define HTTPD_DEFAULT_LISTEN "127.0.0.1:8080"

void *httpd_config_grow(void *arr, size_t n, size_t size)
{
    if (n >= SIZE_MAX / size - 1)
        return NULL;
    char *grown = realloc(arr, (n + 1) * size);
    if (grown)
        memset(grown + n * size, 0, size);
    return grown;
}

int httpd_config_oom(httpd_loader_t *ld)
{
    if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: out of memory", ld->conf->file);
    return -ENOMEM;
}

void httpd_config_free_sni(httpd_sni_t *s)
{
    free(s->host);
    free(s->cert);
    free(s->key);
}

void httpd_config_free_listen(httpd_listen_t *l)
{
    for (size_t i = 0; i < l->ncerts; i++)
        httpd_config_free_sni(&l->certs[i]);
    free(l->certs);
    free(l->addr);
}

void httpd_config_free_upstream(httpd_upstream_t *u)
{
    for (size_t i = 0; i < u->nservers; i++)
        free(u->servers[i].host);
    free(u->servers);
    free(u->health_path);
    free(u->name);
}

void httpd_config_free_location(httpd_location_t *loc)
{
    free(loc->prefix);
    free(loc->root);
}

static void config_free(httpd_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nlistens; i++)
        httpd_config_free_listen(&cfg->listens[i]);
    free(cfg->listens);
    for (size_t i = 0; i < cfg->nlocations; i++)
        httpd_config_free_location(&cfg->locations[i]);
    free(cfg->locations);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        httpd_config_free_upstream(&cfg->upstreams[i]);
    free(cfg->upstreams);
    free(cfg->source);
    free(cfg->index);
    free(cfg->access_log);
    free(cfg->error_log);
    free(cfg->resolver);
    free(cfg->status_path);
    free(cfg->metrics_path);
    free(cfg);
}

httpd_config_t *httpd_config_ref(httpd_config_t *cfg)
{
    if (cfg)
        atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void httpd_config_unref(httpd_config_t *cfg)
{
    if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
        config_free(cfg);
}

void httpd_config_upstream_defaults(httpd_upstream_t *u)
{
    *u = (httpd_upstream_t){
        .balance = HTTPD_BALANCE_ROUND_ROBIN,
        .keepalive = 16,
        .connect_timeout = 5000000000ull,
        .read_timeout = 60000000000ull,
        .send_timeout = 60000000000ull,
        .max_fails = 3,
        .fail_window = 10000000000ull,
        .fail_timeout = 10000000000ull,
        .health_interval = 5000000000ull,
        .resolve_interval = 30000000000ull,
    };
}

/* A config with every default and no listen or location yet; NULL on ENOMEM. */
static httpd_config_t *config_new(void)
{
    httpd_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    atomic_init(&cfg->refs, 1);
    cfg->threads = 1;
    cfg->max_conns = 16384;
    cfg->header_timeout = 10000000000ull;
    cfg->keepalive_timeout = 75000000000ull;
    cfg->send_timeout = 60000000000ull;
    cfg->keepalive_requests = 10000;
    cfg->max_body = 1u << 20;
    cfg->max_header_bytes = 32u << 10;
    cfg->open_file_cache = 1024;
    cfg->sndbuf = 256 * 1024;
    cfg->notsent_lowat = 16 * 1024;
    cfg->open_file_ttl = 1000000000ull;
    cfg->access_format = HTTPD_LOG_COMBINED;
    cfg->drain_timeout = 10000000000ull;
    cfg->index = strdup("index.html");
    cfg->error_log = strdup("-");
    cfg->status_path = strdup("/_hark/status");
    cfg->metrics_path = strdup("/metrics");
    if (!cfg->index || !cfg->error_log || !cfg->status_path || !cfg->metrics_path) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static int add_listen(httpd_config_t *cfg, const char *addr)
{
    httpd_listen_t *l = httpd_config_grow(cfg->listens, cfg->nlistens, sizeof *l);
    if (!l)
        return -ENOMEM;
    cfg->listens = l;
    if (!(l[cfg->nlistens].addr = strdup(addr)))
        return -ENOMEM;
    cfg->nlistens++;
    return 0;
}

/* Adds the location "/" serving root (taken over: freed by the config, or here on failure). */
static int add_root_location(httpd_config_t *cfg, char *root)
{
    httpd_location_t *loc =
        root ? httpd_config_grow(cfg->locations, cfg->nlocations, sizeof *loc) : NULL;
    if (loc)
        cfg->locations = loc;
    if (!loc || !(loc[cfg->nlocations].prefix = strdup("/"))) {
        free(root);
        return -ENOMEM;
    }
    loc[cfg->nlocations++].root = root;
    return 0;
}

/* dir made absolute from the current directory (not resolving symlinks); NULL on ENOMEM. */
static char *absolute(const char *dir)
{
    if (dir[0] == '/')
        return strdup(dir);
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return strdup(dir);
    size_t n = strlen(cwd) + strlen(dir) + 2;
    char *s = malloc(n);
    if (s && strcmp(dir, ".") == 0)
        snprintf(s, n, "%s", cwd);
    else if (s)
        snprintf(s, n, "%s/%s", cwd, dir);
    free(cwd);
    return s;
}

httpd_config_t *httpd_config_defaults(const char *root, const char *listen, unsigned threads)
{
    httpd_config_t *cfg = config_new();
    if (!cfg)
        return NULL;
    cfg->threads = threads ? threads : 1;
    if (add_listen(cfg, listen ? listen : HTTPD_DEFAULT_LISTEN) < 0 ||
        add_root_location(cfg, absolute(root ? root : ".")) < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static size_t match_score(const char *prefix, size_t plen, const char *path, size_t len)
{
    if (plen <= len && memcmp(prefix, path, plen) == 0 &&
        (plen == len || prefix[plen - 1] == '/' || path[plen] == '/'))
        return 2 * plen + 1;
    if (plen > 1 && prefix[plen - 1] == '/' && len == plen - 1 && memcmp(prefix, path, len) == 0)
        return 2 * len; /* "/api/" for "/api": below an exact "/api" */
    return 0;
}

const httpd_location_t *httpd_config_route(const httpd_config_t *cfg, const char *path, size_t len)
{
    const httpd_location_t *best = NULL;
    size_t best_score = 0;
    for (size_t i = 0; i < cfg->nlocations; i++) {
        const httpd_location_t *loc = &cfg->locations[i];
        size_t plen = strlen(loc->prefix);
        if (2 * plen + 1 <= best_score)
            break; /* sorted longest first: nothing further can score more */
        size_t score = match_score(loc->prefix, plen, path, len);
        if (score > best_score) {
            best = loc;
            best_score = score;
        }
    }
    /* A path that matches nothing (not starting with '/') goes to "/", the shortest. */
    if (!best && cfg->nlocations)
        best = &cfg->locations[cfg->nlocations - 1];
    return best;
}

static int by_prefix_length(const void *a, const void *b)
{
    const httpd_location_t *x = a, *y = b;
    size_t lx = strlen(x->prefix), ly = strlen(y->prefix);
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return strcmp(x->prefix, y->prefix);
}

/* proxy_pass targets, inherited roots, the "/" location, listen defaults, redirect ports. */
static int finish(httpd_loader_t *ld)
{
    httpd_config_t *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nlocations; i++) {
        httpd_location_t *loc = &cfg->locations[i];
        const httpd_location_seen_t *seen = &ld->locations[i];
        for (size_t u = 0; seen->proxy && u < cfg->nupstreams; u++) {
            if (strcmp(cfg->upstreams[u].name, seen->proxy->str) == 0)
                loc->proxy = &cfg->upstreams[u];
        }
        if (seen->proxy && !loc->proxy)
            return hk_conf_error_arg(ld->err, ld->errlen, seen->proxy,
                                     "the name of an upstream block");
        if (!loc->proxy && !loc->root && !ld->top_root)
            return hk_conf_errorf(ld->err, ld->errlen, &seen->directive->pos,
                                  "expected root or proxy_pass in this location (or a top-level "
                                  "root), got neither");
        if (!loc->proxy && !loc->root && !(loc->root = strdup(ld->top_root)))
            return httpd_config_oom(ld);
    }
    size_t k = 0;
    while (k < cfg->nlocations && strcmp(cfg->locations[k].prefix, "/") != 0)
        k++;
    if (k == cfg->nlocations && !ld->top_root)
        return hk_conf_errorf(ld->err, ld->errlen, &ld->conf->root.end.pos,
                              "expected a \"root\" directive or a \"location /\" block, got "
                              "neither");
    if (k == cfg->nlocations && add_root_location(cfg, strdup(ld->top_root)) < 0)
        return httpd_config_oom(ld);
    if (cfg->nlistens == 0 && add_listen(cfg, HTTPD_DEFAULT_LISTEN) < 0)
        return httpd_config_oom(ld);

    int tls_port = 0;
    for (size_t i = cfg->nlistens; i-- > 0;) {
        const char *colon = strrchr(cfg->listens[i].addr, ':');
        if (cfg->listens[i].tls && colon)
            tls_port = atoi(colon + 1);
    }
    for (size_t i = 0; i < ld->nlistens; i++) {
        httpd_listen_t *l = &cfg->listens[i];
        if (!l->redirect_https || l->https_port)
            continue;
        if (!tls_port)
            return hk_conf_errorf(ld->err, ld->errlen, &ld->listens[i].redirect->pos,
                                  "expected https_port in this listen or a listen with tls on, "
                                  "got neither");
        l->https_port = tls_port;
    }
    qsort(cfg->locations, cfg->nlocations, sizeof *cfg->locations, by_prefix_length);
    return 0;
}

/* The directory of the config file, absolute: relative paths in it start there. */
static char *base_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return absolute(".");
    char *dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    char *abs = dir ? absolute(dir) : NULL;
    free(dir);
    return abs;
}

httpd_config_t *httpd_config_load(const char *path, char *err, size_t errlen)
{
    hk_conf_t *conf;
    if (err && errlen)
        err[0] = '\0';
    if (hk_conf_parse_file(path, NULL, &conf, err, errlen) < 0)
        return NULL;
    httpd_loader_t ld = {.cfg = config_new(), .conf = conf, .err = err, .errlen = errlen};
    int rc = 0;
    if (!ld.cfg || !(ld.cfg->source = strdup(path)) || !(ld.base = base_dir(path)))
        rc = httpd_config_oom(&ld);
    if (rc == 0)
        rc = httpd_config_apply(&ld);
    if (rc == 0)
        rc = finish(&ld);
    free(ld.base);
    free(ld.listens);
    free(ld.locations);
    free(ld.top_root);
    hk_conf_free(conf);
    if (rc < 0 && ld.cfg) {
        config_free(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}
