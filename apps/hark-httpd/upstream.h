/*
 * Upstreams as one worker sees them: per server its addresses (resolved
 * with hark/dns.h and re-resolved when the answer's TTL or resolve_interval
 * runs out), its health (passive: failures counted by the proxy; active:
 * GET health_path every health_interval), its balancing state (smooth
 * weighted round robin, or least connections) and its pool of idle
 * keep-alive connections.
 *
 * Everything here belongs to one worker thread, so the request path takes no
 * lock: each worker keeps its own pools, counters and health, and a server
 * that one worker marks down may still be up for another (as nginx without
 * a shared zone). State is kept per configuration generation, because a
 * reload gives new httpd_upstream_t structs: the set of a generation that is
 * no longer the worker's current one is closed once its last request ends.
 */
#ifndef HTTPD_UPSTREAM_H
#define HTTPD_UPSTREAM_H

#include "httpd.h"

typedef struct httpd_upstreams httpd_upstreams_t; /* one worker's state */
typedef struct httpd_uset httpd_uset_t;           /* the upstreams of one generation */
typedef struct httpd_ups httpd_ups_t;             /* one upstream */
typedef struct httpd_userver httpd_userver_t;     /* one server of it */
typedef struct httpd_uconn httpd_uconn_t;         /* one connection to a server */

/* A connection is ready (status 0) or could not be made (-errno, see httpd_uconn_get). */
typedef void (*httpd_uconn_cb)(httpd_uconn_t *u, int status);

struct httpd_uconn {
    hk_stream_t stream; /* first member; stream.data belongs to the owner */
    hk_timer_t timer;   /* for the owner's timeouts while it uses the connection */
    hk_connect_t connect;
    httpd_userver_t *server;
    httpd_uconn_t *prev, *next; /* the server's idle or waiting list */
    void *owner;
    httpd_uconn_cb cb;
    uint64_t idle_since;
    unsigned requests; /* requests completed on it: > 0 means a reused connection */
    unsigned state;    /* upstream.c */
    unsigned closes;   /* handles still closing */
    bool check;        /* an active health check (upstream.c) */
};

struct httpd_userver {
    const httpd_server_t *cfg;
    httpd_ups_t *ups;
    unsigned index;
    httpd_ustat_t *stat; /* this worker's counters for the server (upstream_stats.h) */
    /* Addresses: numeric ones are filled once; names are resolved. */
    hk_dns_addr_t addrs[HK_DNS_MAX_ADDRS];
    unsigned naddrs, next_addr;
    bool numeric, resolving;
    int resolve_err;     /* the last resolution's error, while there is no address */
    uint64_t resolve_at; /* next re-resolution */
    hk_dns_req_t dns;
    httpd_uconn_t *waiting; /* connections waiting for the resolution */
    /* Balancing. */
    int64_t cw;      /* smooth weighted round robin: current weight */
    unsigned active; /* requests using this server now (least_conn) */
    /* Health. */
    unsigned fails;
    uint64_t fail_start, down_until;
    uint64_t last_fail;      /* when the last failure was reported */
    bool check_down;         /* the last active check failed */
    uint64_t check_at;       /* next active check */
    httpd_uconn_t *checking; /* the check in flight, or NULL */
    /* Pool of idle keep-alive connections, most recently used first. */
    httpd_uconn_t *idle;
    unsigned nidle;
};

struct httpd_ups {
    const httpd_upstream_t *cfg;
    httpd_uset_t *set;
    httpd_userver_t *servers;
    size_t nservers;
    unsigned rr; /* least_conn tie-break rotation */
};

/*
 * The worker's state of upstream cfg of generation gen (created on first
 * use), counted as in use until httpd_ups_leave. NULL on ENOMEM.
 */
httpd_ups_t *httpd_ups_enter(httpd_worker_t *w, httpd_gen_t *gen, const httpd_upstream_t *cfg);
void httpd_ups_leave(httpd_ups_t *ups);

/*
 * Picks a server by the upstream's balance, skipping those whose bit is set
 * in tried (server index < 64) and those marked down, unless every server
 * not tried is down (then they are tried anyway: better a chance than a
 * certain 502). NULL when every server was tried.
 */
httpd_userver_t *httpd_ups_pick(httpd_ups_t *ups, uint64_t tried);

/*
 * Passive health: a failed (connect, timeout, bad response) or good exchange
 * with s, which began at started (hk_loop_now); a good one that began before
 * the server's last failure is not counted (see upstream.c).
 */
void httpd_userver_report(httpd_userver_t *s, bool ok, uint64_t started);

/* Copies s's health into its counters (after check_down or down_until changed). */
void httpd_userver_health(httpd_userver_t *s);

/* Flags of httpd_uconn_get. */
#define HTTPD_UCONN_FRESH 0x1u /* a new connection, never one from the pool */

/*
 * A connection to s for owner. Returns 0 with *out set to an idle pooled
 * connection, ready now; or 1 when cb(*out, status) will run later from the
 * loop: 0 connected, or -ECONNREFUSED and other connect errors, -ETIMEDOUT
 * (connect_timeout), -EHOSTUNREACH (the name did not resolve). After a
 * failure u is freed when cb returns: do not release it. Or -errno
 * (-ENOMEM, -EHOSTUNREACH): cb never runs. The owner sets u->stream.data and
 * its stream callbacks; u->timer.base.data is u.
 */
int httpd_uconn_get(httpd_userver_t *s, unsigned flags, void *owner, httpd_uconn_cb cb,
                    httpd_uconn_t **out);

/*
 * The owner is done with u: back to the pool when reuse is true (the
 * exchange ended cleanly and both sides keep the connection), else closed.
 * Also ends a connection still connecting or waiting (its cb never runs).
 */
void httpd_uconn_release(httpd_uconn_t *u, bool reuse);

/*
 * Creates the worker's state for its current generation, so that health
 * checks and name lookups start before the first request (call at worker
 * start and after a generation change; otherwise the first request does it).
 */
void httpd_upstreams_start(httpd_worker_t *w);

/*
 * Worker drain (SIGTERM): idle connections and health checks close now,
 * connections in use when their request ends; the state is freed once its
 * last handle has closed. Also noticed on the state's own tick.
 */
void httpd_upstreams_drain(httpd_worker_t *w);

/* ---- Between upstream.c and upstream_conn.c ---------------------------------------------- */

struct httpd_upstreams {
    httpd_worker_t *w;
    hk_loop_t *loop;
    hk_resolver_t *resolver;
    hk_timer_t tick;
    httpd_uset_t *sets;
    bool draining, tick_closed;
};

struct httpd_uset {
    httpd_uset_t *next;
    httpd_upstreams_t *root;
    httpd_gen_t *gen; /* own reference */
    httpd_ups_t *ups; /* one per upstream of gen's config */
    size_t nups;
    unsigned inflight; /* requests between enter and leave */
    unsigned handles;  /* connections and lookups not finished */
    bool retired;      /* no new idle connections; freed when unused */
};

/* upstream.c */
int httpd_userver_resolve(httpd_userver_t *s); /* starts a lookup: 0 or -errno */
void httpd_uset_maybe_free(httpd_uset_t *set);

/* upstream_conn.c */
void httpd_userver_resolved(httpd_userver_t *s); /* the waiting connections go on or fail */
void httpd_userver_close_idle(httpd_userver_t *s, uint64_t idle_before);
void httpd_ucheck_start(httpd_userver_t *s);
void httpd_ucheck_stop(httpd_userver_t *s, uint64_t now); /* stops a check past its deadline */
void httpd_ucheck_cancel(httpd_userver_t *s);

#endif
