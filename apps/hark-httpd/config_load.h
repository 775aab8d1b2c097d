/*
 * Private to the config loader (config.c, config_schema.c, config_blocks.c):
 * the state of one httpd_config_load call, the table-driven directive
 * reader, and the block handlers.
 */
#ifndef HTTPD_CONFIG_LOAD_H
#define HTTPD_CONFIG_LOAD_H

#include <hark/conf.h>
#include <sys/socket.h>

#include "config.h"

/* What the loader remembers of a listen, for the checks that need every listen. */
typedef struct httpd_listen_seen {
    struct sockaddr_storage ss; /* normalised address: duplicates compare equal */
    socklen_t sslen;
    unsigned line;                  /* of the listen directive */
    const hk_conf_node_t *redirect; /* its redirect_https on, or NULL */
} httpd_listen_seen_t;

/* What the loader remembers of a location until the upstreams are all known. */
typedef struct httpd_location_seen {
    const hk_conf_node_t *directive;
    const hk_conf_arg_t *proxy; /* the proxy_pass argument, or NULL */
} httpd_location_seen_t;

typedef struct httpd_loader {
    httpd_config_t *cfg;
    const hk_conf_t *conf;
    char *base; /* absolute directory of the config file: relative paths start there */
    char *err;
    size_t errlen;
    httpd_listen_seen_t *listens; /* parallel to cfg->listens */
    size_t nlistens;
    httpd_location_seen_t *locations; /* parallel to cfg->locations */
    size_t nlocations;
    char *top_root; /* the top-level root directive's directory, or NULL */
} httpd_loader_t;

typedef int (*httpd_rule_fn)(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj);

typedef enum httpd_rule_kind {
    HTTPD_RULE_DURATION, /* uint64_t ns; min 1 = must not be 0 */
    HTTPD_RULE_SIZE64,   /* uint64_t bytes in [min, max] */
    HTTPD_RULE_SIZE,     /* size_t bytes in [min, max] */
    HTTPD_RULE_UNSIGNED, /* unsigned in [min, max] */
    HTTPD_RULE_COUNT,    /* size_t in [min, max] */
    HTTPD_RULE_PORT,     /* int in [min, max] */
    HTTPD_RULE_BOOL,     /* bool */
    HTTPD_RULE_CUSTOM,   /* fn */
} httpd_rule_kind_t;

/* One directive of a block: a typed value stored at obj + off, or a handler. */
typedef struct httpd_rule {
    const char *name;
    httpd_rule_kind_t kind;
    size_t off;
    uint64_t min, max;
    httpd_rule_fn fn;
    bool repeat; /* may appear more than once */
} httpd_rule_t;

#define HTTPD_MAX_RULES 32

/*
 * Reads every directive in block with rules (an unknown one is an error
 * naming it with where, such as "a directive of location (root, ...)"; one
 * given twice is an error unless repeat). Returns 0 or -errno (message in
 * ld->err).
 */
int httpd_config_apply_rules(httpd_loader_t *ld, const hk_conf_node_t *block,
                             const httpd_rule_t *rules, size_t nrules, const char *where,
                             void *obj);

/*
 * Argument 0 of d (its only one) as an absolute path into *out (the old
 * value freed): a directory that exists when dir, else a readable file.
 */
int httpd_config_path_arg(httpd_loader_t *ld, const hk_conf_node_t *d, bool dir, char **out);

/* a as a copy in *out, a URL path ("/metrics"), or NULL for "off" when off_ok. */
int httpd_config_url_path_arg(httpd_loader_t *ld, const hk_conf_arg_t *a, bool off_ok, char **out);

/* A malloc'd absolute copy of p: a relative path starts at the config file's directory. */
char *httpd_config_resolve(httpd_loader_t *ld, const char *p);

/* The block directives (config_blocks.c); obj is the config. */
int httpd_config_listen(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj);
int httpd_config_upstream(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj);
int httpd_config_location(httpd_loader_t *ld, const hk_conf_node_t *d, void *obj);

/* Writes "<file>: out of memory" and returns -ENOMEM. */
int httpd_config_oom(httpd_loader_t *ld);

/*
 * arr (n elements of size bytes) grown by one zeroed element at index n, or
 * NULL on ENOMEM (arr is then unchanged). Callers store the result and count it.
 */
void *httpd_config_grow(void *arr, size_t n, size_t size);

/* Free what an sni entry, a listen, an upstream or a location owns (not the struct itself). */
void httpd_config_free_sni(httpd_sni_t *s);
void httpd_config_free_listen(httpd_listen_t *l);
void httpd_config_free_upstream(httpd_upstream_t *u);
void httpd_config_free_location(httpd_location_t *loc);

/* An upstream's defaults (no name, no servers). */
void httpd_config_upstream_defaults(httpd_upstream_t *u);

/* Reads the top level of ld->conf into ld->cfg (config_schema.c). */
int httpd_config_apply(httpd_loader_t *ld);

#endif
