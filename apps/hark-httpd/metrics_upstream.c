/*
 * The upstream part of /metrics and of the status page: the registry of
 * upstream_stats.h summed over the workers. Gauges are sums too (exchanges
 * in progress and idle connections over all workers), and "down" counts the
 * workers that would skip the server now: health is each worker's own view
 * (upstream.h), so one failing worker may see a server down while another
 * still uses it.
 */
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

typedef struct ufamily {
    const char *name, *type, *help;
    size_t off; /* of the uint64_t in httpd_ustat_t */
} ufamily_t;

static const ufamily_t families[] = {
    {"hark_upstream_requests_total", "counter",
     "Exchanges started with an upstream server (each try).", offsetof(httpd_ustat_t, requests)},
    {"hark_upstream_connections_total", "counter",
     "Connections opened to an upstream server for requests.", offsetof(httpd_ustat_t, connects)},
    {"hark_upstream_reused_total", "counter",
     "Exchanges on a pooled keep-alive upstream connection.", offsetof(httpd_ustat_t, reused)},
    {"hark_upstream_failures_total", "counter",
     "Failed exchanges: connect errors, timeouts, cut or malformed responses.",
     offsetof(httpd_ustat_t, failures)},
    {"hark_upstream_marked_down_total", "counter",
     "Times passive health (max_fails) marked a server down in a worker.",
     offsetof(httpd_ustat_t, downs)},
    {"hark_upstream_active", "gauge", "Exchanges in progress.", offsetof(httpd_ustat_t, active)},
    {"hark_upstream_idle_connections", "gauge", "Idle keep-alive connections in the pools.",
     offsetof(httpd_ustat_t, idle)},
};

static uint64_t sum(const httpd_ustats_entry_t *e, unsigned nworkers, size_t off)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < nworkers; i++)
        n += httpd_read((const uint64_t *)(const void *)((const char *)&e->w[i] + off));
    return n;
}

/* Workers that see the server down now. */
static unsigned down_in(const httpd_ustats_entry_t *e, unsigned nworkers, uint64_t now)
{
    unsigned n = 0;
    for (unsigned i = 0; i < nworkers; i++)
        n += httpd_read(&e->w[i].down_until) > now;
    return n;
}

/* s as a Prometheus label value (html false) or as HTML text. */
static void escaped(httpd_mbuf_t *b, const char *s, bool html)
{
    for (; *s; s++) {
        const char *rep = NULL;
        if (html)
            rep = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        else
            rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (rep)
            httpd_out(b, "%s", rep);
        else
            httpd_out(b, "%c", *s);
    }
}

static void labels(httpd_mbuf_t *b, const char *name, const httpd_ustats_entry_t *e)
{
    httpd_out(b, "%s{upstream=\"", name);
    escaped(b, e->upstream, false);
    httpd_out(b, "\",server=\"");
    escaped(b, e->server, false);
    httpd_out(b, "\"");
}

static void render_metrics(httpd_mbuf_t *b, httpd_t *srv, const httpd_ustats_entry_t *list,
                           uint64_t now)
{
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        httpd_out(b, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                  families[f].name, families[f].type);
        for (const httpd_ustats_entry_t *e = list; e; e = e->next) {
            labels(b, families[f].name, e);
            httpd_out(b, "} %llu\n", (unsigned long long)sum(e, srv->nworkers, families[f].off));
        }
    }
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    httpd_out(b, "# HELP hark_upstream_responses_total Response heads received, by status class.\n"
                 "# TYPE hark_upstream_responses_total counter\n");
    for (const httpd_ustats_entry_t *e = list; e; e = e->next) {
        for (size_t k = 0; k < 5; k++) {
            labels(b, "hark_upstream_responses_total", e);
            httpd_out(
                b, ",code=\"%s\"} %llu\n", classes[k],
                (unsigned long long)sum(e, srv->nworkers,
                                        offsetof(httpd_ustat_t, responses) + k * sizeof(uint64_t)));
        }
    }
    httpd_out(b, "# HELP hark_upstream_health_checks_total Active health checks, by result.\n"
                 "# TYPE hark_upstream_health_checks_total counter\n");
    for (const httpd_ustats_entry_t *e = list; e; e = e->next) {
        labels(b, "hark_upstream_health_checks_total", e);
        httpd_out(b, ",result=\"ok\"} %llu\n",
                  (unsigned long long)sum(e, srv->nworkers, offsetof(httpd_ustat_t, checks_ok)));
        labels(b, "hark_upstream_health_checks_total", e);
        httpd_out(
            b, ",result=\"failed\"} %llu\n",
            (unsigned long long)sum(e, srv->nworkers, offsetof(httpd_ustat_t, checks_failed)));
    }
    httpd_out(b, "# HELP hark_upstream_down Workers that see the server down now.\n"
                 "# TYPE hark_upstream_down gauge\n");
    for (const httpd_ustats_entry_t *e = list; e; e = e->next) {
        labels(b, "hark_upstream_down", e);
        httpd_out(b, "} %u\n", down_in(e, srv->nworkers, now));
    }
}

static void render_status(httpd_mbuf_t *b, httpd_t *srv, const httpd_ustats_entry_t *list,
                          uint64_t now)
{
    httpd_out(b, "<h2>Upstreams</h2><table><tr><th>upstream</th><th>server</th><th>down in</th>"
                 "<th>active</th><th>idle</th><th>requests</th><th>reused</th>"
                 "<th>failures</th></tr>");
    for (const httpd_ustats_entry_t *e = list; e; e = e->next) {
        httpd_out(b, "<tr><th>");
        escaped(b, e->upstream, true);
        httpd_out(b, "</th><th>");
        escaped(b, e->server, true);
        unsigned nw = srv->nworkers;
        httpd_out(b,
                  "</th><td>%u of %u</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td>"
                  "<td>%llu</td></tr>",
                  down_in(e, nw, now), nw,
                  (unsigned long long)sum(e, nw, offsetof(httpd_ustat_t, active)),
                  (unsigned long long)sum(e, nw, offsetof(httpd_ustat_t, idle)),
                  (unsigned long long)sum(e, nw, offsetof(httpd_ustat_t, requests)),
                  (unsigned long long)sum(e, nw, offsetof(httpd_ustat_t, reused)),
                  (unsigned long long)sum(e, nw, offsetof(httpd_ustat_t, failures)));
    }
    httpd_out(b, "</table>");
}

typedef void render_fn(httpd_mbuf_t *b, httpd_t *srv, const httpd_ustats_entry_t *list,
                       uint64_t now);

/* Held throughout: a worker may append an entry meanwhile (a rare, short wait for it). */
static void render_locked(httpd_mbuf_t *b, httpd_t *srv, render_fn *render)
{
    uint64_t now = hk_time_now();
    pthread_mutex_lock(&srv->ustats_lock);
    if (srv->ustats)
        render(b, srv, srv->ustats, now);
    pthread_mutex_unlock(&srv->ustats_lock);
}

void httpd_metrics_upstreams(httpd_mbuf_t *b, httpd_t *srv)
{
    render_locked(b, srv, render_metrics);
}

void httpd_status_upstreams(httpd_mbuf_t *b, httpd_t *srv)
{
    render_locked(b, srv, render_status);
}
