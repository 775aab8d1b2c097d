/*
 * hark-httpd configuration: the parsed, validated, immutable form.
 *
 * A config is built once (from the command line or a file), then only read.
 * Reloads publish a new one (hark/publish.h); connections hold a reference to
 * the config they started with, so a request in flight finishes on it, and
 * the last reference frees it.
 */
#ifndef HTTPD_CONFIG_H
#define HTTPD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum httpd_log_format {
    HTTPD_LOG_COMMON,
    HTTPD_LOG_COMBINED,
    HTTPD_LOG_JSON,
} httpd_log_format_t;

typedef struct httpd_sni {
    char *host; /* server name; "*" or NULL = default certificate */
    char *cert; /* PEM chain file */
    char *key;  /* PEM key file */
} httpd_sni_t;

typedef struct httpd_listen {
    char *addr;         /* "127.0.0.1:8080", "[::1]:8443" */
    bool tls;           /* HTTPS on this listener */
    httpd_sni_t *certs; /* tls: at least one; certs[0] is the default */
    size_t ncerts;
    bool redirect_https; /* plain listener answering 301 to https://host:https_port */
    int https_port;      /* target port of the redirect (0: the first TLS listener's) */
    unsigned line;       /* of the listen directive in the file (0: the command line) */
} httpd_listen_t;

typedef enum httpd_balance {
    HTTPD_BALANCE_ROUND_ROBIN,
    HTTPD_BALANCE_LEAST_CONN,
} httpd_balance_t;

typedef struct httpd_server {
    char *host; /* name or address, resolved with hark/dns.h */
    int port;
    unsigned weight; /* >= 1 */
    unsigned line;   /* of its "server" directive */
} httpd_server_t;

typedef struct httpd_upstream {
    char *name;
    httpd_balance_t balance;
    httpd_server_t *servers;
    size_t nservers;
    unsigned keepalive;        /* idle connections kept per server per worker */
    uint64_t connect_timeout;  /* ns */
    uint64_t read_timeout;     /* ns, between two reads of the response */
    uint64_t send_timeout;     /* ns, between two writes of the request */
    unsigned max_fails;        /* passive health: fails within fail_window ... */
    uint64_t fail_window;      /* ns */
    uint64_t fail_timeout;     /* ns ... mark a server down this long */
    char *health_path;         /* active checks: GET this path; NULL = off */
    uint64_t health_interval;  /* ns */
    uint64_t resolve_interval; /* ns, re-resolve at most this often (and on TTL) */
} httpd_upstream_t;

typedef struct httpd_location {
    char *prefix;            /* longest prefix match on the decoded path */
    char *root;              /* static files from here, or NULL ... */
    httpd_upstream_t *proxy; /* ... proxied to this upstream (points into upstreams) */
    bool autoindex;          /* directory listing (default off) */
    bool gzip_static;        /* send path.gz to clients that take gzip (default off) */
} httpd_location_t;

typedef struct httpd_config {
    _Atomic unsigned refs; /* httpd_config_ref / httpd_config_unref */
    char *source;          /* file path, or NULL for the command line */

    httpd_listen_t *listens;
    size_t nlistens;
    unsigned threads; /* worker loops; default 1 */

    httpd_location_t *locations; /* at least one; "/" with the default root */
    size_t nlocations;
    httpd_upstream_t *upstreams;
    size_t nupstreams;
    char *index; /* index file name, default "index.html" */

    /* Limits and timeouts (ns). */
    unsigned max_conns;          /* per worker; default 16384 */
    uint64_t header_timeout;     /* whole request head must arrive in this; default 10 s */
    uint64_t keepalive_timeout;  /* idle between requests; default 75 s */
    uint64_t send_timeout;       /* between two writes to a client; default 60 s */
    unsigned keepalive_requests; /* requests per connection; default 10000 */
    uint64_t max_body;           /* request body bytes; default 1 MiB */
    size_t max_header_bytes;     /* default 32 KiB */
    size_t open_file_cache;      /* entries per worker; default 1024, 0 = off */
    size_t sndbuf;               /* SO_SNDBUF of client sockets; default 256 KiB, 0 = autotuning */
    size_t notsent_lowat;        /* TCP_NOTSENT_LOWAT of client sockets; default 16 KiB, 0 = off */
    uint64_t open_file_ttl;      /* ns; default 1 s */
    uint64_t busy_poll;          /* ns each worker loop polls before it sleeps; default 0 = off */

    /* Logs. */
    char *access_log; /* path, "-" for stdout, NULL = off */
    httpd_log_format_t access_format;
    char *error_log; /* path, "-" = stderr (default) */
    char *resolver;  /* DNS servers for upstream names ("127.0.0.1:5353,..."); NULL: resolv.conf */

    /* Status page and Prometheus metrics paths (NULL = off). */
    char *status_path;      /* default "/_hark/status" */
    char *metrics_path;     /* default "/metrics" */
    uint64_t drain_timeout; /* SIGTERM: wait at most this for in-flight requests; default 10 s */
} httpd_config_t;

/*
 * The configuration used without a file: serve root on listen (NULL:
 * 127.0.0.1:8080) with threads workers, defaults for the rest. NULL on ENOMEM.
 */
httpd_config_t *httpd_config_defaults(const char *root, const char *listen, unsigned threads);

/*
 * Loads and validates a config file (docs/httpd-config.md). On failure
 * returns NULL and writes a message naming the file, line, column and what
 * was expected into err ("hark.conf:12:16: expected a duration such as 10s
 * ..., got \"ten\""). Reads files with blocking calls: not on a loop thread.
 */
httpd_config_t *httpd_config_load(const char *path, char *err, size_t errlen);

/*
 * Finds the location for a decoded path: the longest prefix matching at a
 * segment boundary ("/img" takes "/img/a" but not "/imgs"); a prefix ending
 * in '/' also takes the path without that slash ("/api/" takes "/api"),
 * below an exact "/api". Never NULL for a valid config ("/" takes the rest).
 */
const httpd_location_t *httpd_config_route(const httpd_config_t *cfg, const char *path, size_t len);

httpd_config_t *httpd_config_ref(httpd_config_t *cfg);
void httpd_config_unref(httpd_config_t *cfg);

#endif
