/*
 * Between metrics.c (/metrics and the status page) and metrics_upstream.c
 * (their upstream part): a growing text buffer.
 */
#ifndef HTTPD_METRICS_H
#define HTTPD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "httpd.h"

typedef struct httpd_mbuf {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory: the render returns NULL */
} httpd_mbuf_t;

/* Appends printf-style text (the buffer grows; on ENOMEM it is marked failed). */
__attribute__((format(printf, 2, 3))) void httpd_out(httpd_mbuf_t *b, const char *fmt, ...);

/* The hark_upstream_* families, one line per upstream server. */
void httpd_metrics_upstreams(httpd_mbuf_t *b, httpd_t *srv);

/* The status page's upstream table (nothing when no upstream was ever used). */
void httpd_status_upstreams(httpd_mbuf_t *b, httpd_t *srv);

#endif
