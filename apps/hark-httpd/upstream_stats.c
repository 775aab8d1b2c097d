/*
 * The registry of upstream counters (upstream_stats.h). Entries are found
 * or added under srv->ustats_lock, which only a worker building a
 * generation's upstream state and the /metrics renderer take: never the
 * request path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

httpd_ustat_t *httpd_ustats_slot(httpd_t *srv, unsigned worker, const char *upstream,
                                 const char *host, int port)
{
    if (worker >= srv->nworkers)
        return NULL;
    char server[300];
    int n = snprintf(server, sizeof(server), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    if (n < 0 || (size_t)n >= sizeof(server))
        return NULL;
    pthread_mutex_lock(&srv->ustats_lock);
    httpd_ustats_entry_t *e = srv->ustats;
    while (e && (strcmp(e->upstream, upstream) != 0 || strcmp(e->server, server) != 0))
        e = e->next;
    if (!e && (e = calloc(1, sizeof(*e))) != NULL) {
        e->upstream = strdup(upstream);
        e->server = strdup(server);
        e->w = aligned_alloc(_Alignof(httpd_ustat_t), srv->nworkers * sizeof(*e->w));
        if (!e->upstream || !e->server || !e->w) {
            free(e->upstream);
            free(e->server);
            free(e->w);
            free(e);
            e = NULL;
        } else {
            memset(e->w, 0, srv->nworkers * sizeof(*e->w));
            /* Appended: /metrics lists the servers in the order they were first configured. */
            httpd_ustats_entry_t **pp = &srv->ustats;
            while (*pp)
                pp = &(*pp)->next;
            *pp = e;
        }
    }
    pthread_mutex_unlock(&srv->ustats_lock);
    return e ? &e->w[worker] : NULL;
}

void httpd_ustats_free(httpd_t *srv)
{
    httpd_ustats_entry_t *e = srv->ustats;
    while (e) {
        httpd_ustats_entry_t *next = e->next;
        free(e->upstream);
        free(e->server);
        free(e->w);
        free(e);
        e = next;
    }
    srv->ustats = NULL;
}
