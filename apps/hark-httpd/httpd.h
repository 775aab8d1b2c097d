/*
 * hark-httpd: the types shared by the server's files.
 *
 * One worker per thread, each with its own loop, listeners (SO_REUSEPORT by
 * default), open-file cache and counters; nothing on the request path is
 * shared between workers. The configuration is a "generation": the parsed
 * config plus what the server derived from it (root directory fds, TLS
 * contexts). The control thread builds a generation and publishes it
 * (hark/publish.h); each worker switches to it from its subscriber callback,
 * and every connection holds a reference to the generation it started with,
 * so a request in flight finishes on it.
 */
#ifndef HTTPD_H
#define HTTPD_H

#include <errno.h>
#include <hark.h>
#include <hark/http.h>
#include <hark/publish.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "upstream_stats.h"

/* The methods served by the static handler and the built-in pages (405, 501, OPTIONS). */
#define HTTPD_ALLOW_LINE "Allow: GET, HEAD, OPTIONS\r\n"
/*
 * A proxied location, answering itself when Max-Forwards is 0: every method
 * goes to the upstream but TRACE, which the proxy refuses (405) rather than
 * reflect a request with its cookies.
 */
#define HTTPD_PROXY_ALLOW_LINE "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n"

typedef struct httpd_gen {
    _Atomic unsigned refs;
    unsigned id;         /* 1, 2, ... one per successful (re)load */
    httpd_config_t *cfg; /* owned */
    int *root_fds;       /* per location: O_PATH directory fd, -1 for proxies */
    hk_tls_ctx_t **tls;  /* per listener: the context, NULL for plain ones */
} httpd_gen_t;

httpd_gen_t *httpd_gen_new(httpd_config_t *cfg, unsigned id, char *err, size_t errlen);
httpd_gen_t *httpd_gen_ref(httpd_gen_t *gen);
void httpd_gen_unref(httpd_gen_t *gen);

/* Response status classes and a few exact codes, for /metrics. */
enum {
    HTTPD_ST_200,
    HTTPD_ST_206,
    HTTPD_ST_301,
    HTTPD_ST_304,
    HTTPD_ST_400,
    HTTPD_ST_403,
    HTTPD_ST_404,
    HTTPD_ST_405,
    HTTPD_ST_408,
    HTTPD_ST_412,
    HTTPD_ST_413,
    HTTPD_ST_414,
    HTTPD_ST_416,
    HTTPD_ST_431,
    HTTPD_ST_500,
    HTTPD_ST_501,
    HTTPD_ST_502,
    HTTPD_ST_503,
    HTTPD_ST_504,
    HTTPD_ST_505,
    HTTPD_ST_OTHER,
    HTTPD_ST_COUNT
};

/* Counters a worker updates on its own thread; others read them (relaxed atomics). */
typedef struct httpd_counters {
    uint64_t requests;
    uint64_t by_status[HTTPD_ST_COUNT];
    uint64_t bytes_out;
    uint64_t conns_total;
    uint64_t conns_open;
    uint64_t conns_refused; /* over max_conns */
    uint64_t header_timeouts;
    uint64_t idle_timeouts;
    uint64_t cache_hits, cache_misses;
    uint64_t reloads_seen;
} httpd_counters_t;

typedef struct httpd httpd_t;
typedef struct httpd_conn httpd_conn_t;
typedef struct httpd_fcache httpd_fcache_t;

typedef struct httpd_worker {
    httpd_t *server;
    unsigned index;
    pthread_t thread;
    hk_loop_t *loop;
    hk_fs_t *fs;
    httpd_gen_t *gen; /* current generation (own reference) */
    hk_subscriber_t sub;
    hk_async_t stop_async;     /* drain request from the control thread */
    pthread_mutex_t stop_lock; /* the control thread sends stop_async only while !exited */
    bool exited;               /* the loop is ending: stop_async is closed, the loop freed */
    hk_timer_t tick;           /* once a second: the Date header, stats snapshot */
    httpd_fcache_t *fcache;
    httpd_conn_t *conns; /* every open connection (doubly linked) */
    char date[HK_HTTP_DATE_LEN + 1];
    time_t date_sec;
    bool draining;
    bool forced;
    httpd_counters_t counters;
    /* Snapshot of the loop's stats, taken on the worker's thread, read by /metrics. */
    pthread_mutex_t snap_lock;
    hk_loop_stats_t snap;
    hk_accept_stats_t accept_snap;
    int started; /* 1 running, -errno failed to start */
} httpd_worker_t;

struct httpd {
    httpd_worker_t *workers;
    unsigned nworkers;
    hk_accept_group_t *groups;    /* one per listener */
    hk_accept_member_t **members; /* [listener][worker] */
    unsigned nlisteners;
    hk_publish_t *publish;      /* the current generation */
    httpd_config_t *listen_cfg; /* the first config: its listeners stay for the process's life */
    httpd_gen_t *initial;       /* the generation the workers start with (own reference) */
    hk_pool_t *pool;
    uint64_t started_ns;
    _Atomic unsigned gen_id;
    uint64_t drain_timeout;          /* of the current generation (the control thread's copy) */
    _Atomic unsigned members_closed; /* accept members closed by draining workers */
    bool unlistened;                 /* the listening sockets are closed (drain) */
    pthread_mutex_t ustats_lock;     /* guards the list of ustats (upstream_stats.h) */
    httpd_ustats_entry_t *ustats;    /* upstream counters, kept across reloads */
};

/* server.c */
int httpd_server_start(httpd_t *srv, httpd_gen_t *gen);
int httpd_server_reload(httpd_t *srv, const char *path);
void httpd_server_drain(httpd_t *srv);
/* Once every worker stopped accepting: closes the listening sockets (new connections refused). */
void httpd_server_unlisten(httpd_t *srv);
uint64_t httpd_server_open_conns(httpd_t *srv);
void httpd_server_stop(httpd_t *srv);

/* worker.c */
void *httpd_worker_main(void *arg);
void httpd_worker_accept(hk_accept_member_t *member, int fd);
const char *httpd_worker_date(httpd_worker_t *w);

/* metrics.c: the /metrics text and the status page, into a malloc'd buffer. */
char *httpd_metrics_render(httpd_t *srv, size_t *len);
char *httpd_status_render(httpd_t *srv, size_t *len);

/* mime.c */
const char *httpd_mime_type(const char *path, size_t len);

/*
 * Adds n to a counter only this thread writes (relaxed: readers on other
 * threads sum it); a gauge goes down by (uint64_t)-1, which wraps.
 */
static inline void httpd_count(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline uint64_t httpd_read(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

#endif
