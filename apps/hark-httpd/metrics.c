/*
 * /metrics (Prometheus text format 0.0.4) and the status page (HTML that
 * refreshes itself, no external assets). Both read the workers' counters
 * with relaxed atomic loads and their loop statistics from the snapshot each
 * worker takes once a second on its own thread (hk_loop_stats may only be
 * called there).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "metrics.h"

void httpd_out(httpd_mbuf_t *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static const int status_codes[HTTPD_ST_COUNT] = {200, 206, 301, 304, 400, 403, 404,
                                                 405, 408, 412, 413, 414, 416, 431,
                                                 500, 501, 502, 503, 504, 505, 0};

static void sum_counters(httpd_t *srv, httpd_counters_t *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const httpd_counters_t *c = &srv->workers[i].counters;
        t->requests += httpd_read(&c->requests);
        for (int k = 0; k < HTTPD_ST_COUNT; k++)
            t->by_status[k] += httpd_read(&c->by_status[k]);
        t->bytes_out += httpd_read(&c->bytes_out);
        t->conns_total += httpd_read(&c->conns_total);
        t->conns_open += httpd_read(&c->conns_open);
        t->conns_refused += httpd_read(&c->conns_refused);
        t->header_timeouts += httpd_read(&c->header_timeouts);
        t->idle_timeouts += httpd_read(&c->idle_timeouts);
        t->cache_hits += httpd_read(&c->cache_hits);
        t->cache_misses += httpd_read(&c->cache_misses);
    }
}

static void counter(httpd_mbuf_t *b, const char *name, const char *help, uint64_t v)
{
    httpd_out(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
              (unsigned long long)v);
}

static void lag_histogram(httpd_mbuf_t *b, httpd_t *srv)
{
    static const double bounds[] = {1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 1.0};
    httpd_out(b, "# HELP hark_loop_lag_seconds How late ready events and timers were served.\n"
                 "# TYPE hark_loop_lag_seconds histogram\n");
    for (unsigned i = 0; i < srv->nworkers; i++) {
        httpd_worker_t *w = &srv->workers[i];
        pthread_mutex_lock(&w->snap_lock);
        hk_loop_stats_t st = w->snap;
        pthread_mutex_unlock(&w->snap_lock);
        for (size_t k = 0; k < sizeof(bounds) / sizeof(bounds[0]); k++) {
            uint64_t n = 0;
            for (unsigned bk = 0; bk < HK_LAG_BUCKETS; bk++)
                if ((double)hk_lag_bucket_max(bk) <= bounds[k] * 1e9)
                    n += st.lag_hist[bk];
            httpd_out(b, "hark_loop_lag_seconds_bucket{worker=\"%u\",le=\"%g\"} %llu\n", i,
                      bounds[k], (unsigned long long)n);
        }
        httpd_out(b, "hark_loop_lag_seconds_bucket{worker=\"%u\",le=\"+Inf\"} %llu\n", i,
                  (unsigned long long)st.lag_count);
        httpd_out(b, "hark_loop_lag_seconds_sum{worker=\"%u\"} %.9f\n", i,
                  (double)st.lag_sum_ns / 1e9);
        httpd_out(b, "hark_loop_lag_seconds_count{worker=\"%u\"} %llu\n", i,
                  (unsigned long long)st.lag_count);
    }
}

#define PER_WORKER(b, srv, name, help, type, expr)                                                 \
    do {                                                                                           \
        httpd_out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);                      \
        for (unsigned i_ = 0; i_ < (srv)->nworkers; i_++) {                                        \
            httpd_worker_t *w = &(srv)->workers[i_];                                               \
            pthread_mutex_lock(&w->snap_lock);                                                     \
            unsigned long long v_ = (unsigned long long)(expr);                                    \
            pthread_mutex_unlock(&w->snap_lock);                                                   \
            httpd_out(b, "%s{worker=\"%u\"} %llu\n", name, i_, v_);                                \
        }                                                                                          \
    } while (0)

char *httpd_metrics_render(httpd_t *srv, size_t *len)
{
    httpd_mbuf_t b = {.cap = 8192};
    b.p = malloc(b.cap);
    if (!b.p)
        return NULL;
    httpd_counters_t t;
    sum_counters(srv, &t);
    httpd_out(&b, "# HELP hark_http_requests_total Responses sent, by status code.\n"
                  "# TYPE hark_http_requests_total counter\n");
    for (int k = 0; k < HTTPD_ST_COUNT; k++) {
        if (status_codes[k])
            httpd_out(&b, "hark_http_requests_total{code=\"%d\"} %llu\n", status_codes[k],
                      (unsigned long long)t.by_status[k]);
        else
            httpd_out(&b, "hark_http_requests_total{code=\"other\"} %llu\n",
                      (unsigned long long)t.by_status[k]);
    }
    counter(&b, "hark_http_response_bytes_total", "Bytes of responses queued.", t.bytes_out);
    counter(&b, "hark_http_connections_total", "Connections accepted.", t.conns_total);
    httpd_out(&b,
              "# HELP hark_http_connections_open Connections open now.\n"
              "# TYPE hark_http_connections_open gauge\nhark_http_connections_open %llu\n",
              (unsigned long long)t.conns_open);
    counter(&b, "hark_http_connections_refused_total", "Connections over max_conns.",
            t.conns_refused);
    counter(&b, "hark_http_header_timeouts_total", "Heads not complete in header_timeout.",
            t.header_timeouts);
    counter(&b, "hark_http_idle_timeouts_total", "Keep-alive connections closed idle.",
            t.idle_timeouts);
    counter(&b, "hark_open_file_cache_hits_total", "Files served from the open-file cache.",
            t.cache_hits);
    counter(&b, "hark_open_file_cache_misses_total", "Files opened.", t.cache_misses);
    PER_WORKER(&b, srv, "hark_loop_iterations_total", "Loop iterations.", "counter",
               w->snap.iterations);
    PER_WORKER(&b, srv, "hark_loop_stalls_total", "Callbacks over the stall threshold.", "counter",
               w->snap.stalls);
    PER_WORKER(&b, srv, "hark_accept_wakeups_total", "Listener wake-ups.", "counter",
               w->accept_snap.wakeups);
    PER_WORKER(&b, srv, "hark_accept_empty_wakeups_total",
               "Listener wake-ups with nothing to accept.", "counter", w->accept_snap.empty);
    PER_WORKER(&b, srv, "hark_accept_backoffs_total",
               "Times accepting paused for want of file descriptors or memory.", "counter",
               w->accept_snap.backoffs);
    lag_histogram(&b, srv);
    hk_pool_stats_t ps;
    if (hk_pool_stats(srv->pool ? srv->pool : hk_pool_default(), &ps) == 0) {
        httpd_out(&b, "# HELP hark_pool_queue_depth Jobs waiting in the blocking-work pool.\n"
                      "# TYPE hark_pool_queue_depth gauge\n");
        httpd_out(&b, "hark_pool_queue_depth{class=\"fast\"} %u\n", ps.queued[HK_WORK_FAST]);
        httpd_out(&b, "hark_pool_queue_depth{class=\"slow\"} %u\n", ps.queued[HK_WORK_SLOW]);
    }
    httpd_metrics_upstreams(&b, srv);
    httpd_out(&b,
              "# HELP hark_config_generation Configuration generation in use (1 + reloads).\n"
              "# TYPE hark_config_generation gauge\nhark_config_generation %u\n",
              atomic_load(&srv->gen_id));
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

char *httpd_status_render(httpd_t *srv, size_t *len)
{
    httpd_mbuf_t b = {.cap = 8192};
    b.p = malloc(b.cap);
    if (!b.p)
        return NULL;
    httpd_counters_t t;
    sum_counters(srv, &t);
    double up = (double)(hk_time_now() - srv->started_ns) / 1e9;
    httpd_out(&b,
              "<!doctype html><html><head><meta charset=\"utf-8\">"
              "<meta http-equiv=\"refresh\" content=\"2\"><title>hark-httpd status</title>"
              "<style>body{font:14px sans-serif;margin:2em}td,th{padding:2px 12px;text-align:right}"
              "th{text-align:left}</style></head><body><h1>hark-httpd</h1>");
    httpd_out(&b, "<p>up %.0f s, configuration generation %u, %u worker(s)</p><table>", up,
              atomic_load(&srv->gen_id), srv->nworkers);
    httpd_out(
        &b,
        "<tr><th>requests</th><td>%llu</td></tr><tr><th>open connections</th><td>%llu</td>"
        "</tr><tr><th>connections</th><td>%llu</td></tr><tr><th>bytes out</th><td>%llu</td></tr>"
        "<tr><th>file cache hits / misses</th><td>%llu / %llu</td></tr>",
        (unsigned long long)t.requests, (unsigned long long)t.conns_open,
        (unsigned long long)t.conns_total, (unsigned long long)t.bytes_out,
        (unsigned long long)t.cache_hits, (unsigned long long)t.cache_misses);
    for (int k = 0; k < HTTPD_ST_COUNT; k++) {
        if (!t.by_status[k])
            continue;
        if (status_codes[k])
            httpd_out(&b, "<tr><th>status %d</th><td>%llu</td></tr>", status_codes[k],
                      (unsigned long long)t.by_status[k]);
        else /* HTTPD_ST_OTHER */
            httpd_out(&b, "<tr><th>other statuses</th><td>%llu</td></tr>",
                      (unsigned long long)t.by_status[k]);
    }
    httpd_out(&b,
              "</table><h2>Loops</h2><table><tr><th>worker</th><th>iterations</th><th>events</th>"
              "<th>lag p99 (us)</th><th>stalls</th><th>accept wake-ups</th></tr>");
    for (unsigned i = 0; i < srv->nworkers; i++) {
        httpd_worker_t *w = &srv->workers[i];
        pthread_mutex_lock(&w->snap_lock);
        hk_loop_stats_t st = w->snap;
        hk_accept_stats_t acc = w->accept_snap;
        pthread_mutex_unlock(&w->snap_lock);
        httpd_out(
            &b,
            "<tr><td>%u</td><td>%llu</td><td>%llu</td><td>%.1f</td><td>%llu</td><td>%llu</td></tr>",
            i, (unsigned long long)st.iterations, (unsigned long long)st.events,
            (double)hk_loop_stats_lag_quantile(&st, 0.99) / 1e3, (unsigned long long)st.stalls,
            (unsigned long long)acc.wakeups);
    }
    httpd_out(&b, "</table>");
    httpd_status_upstreams(&b, srv);
    httpd_out(&b, "</body></html>\n");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
