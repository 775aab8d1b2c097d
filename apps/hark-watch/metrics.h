/* metrics.h: a minimal, strict HTTP/1.1 responder for GET /metrics on the loop. */
#ifndef HARK_WATCH_METRICS_H
#define HARK_WATCH_METRICS_H

#include "hark/loop.h"

typedef struct metrics_server metrics_server_t;

/* Renders the body (malloc'd, freed by the server). 0 or -errno. */
typedef int (*metrics_render_fn)(void *arg, char **body, size_t *len);

/*
 * Listens on addr ("127.0.0.1:9100"; port 0 picks one, see metrics_port).
 * Errors: -EINVAL (bad address), -errno of socket/bind/listen, or of
 * hk_io_start: then the handles it had initialised are closed, and the loop
 * can be freed once it has run their close callbacks (one iteration).
 */
int metrics_start(hk_loop_t *loop, const char *addr, metrics_render_fn render, void *arg,
                  metrics_server_t **out);
int metrics_port(const metrics_server_t *m);
/* Closes the listener and every connection; frees itself once their close callbacks ran. */
void metrics_stop(metrics_server_t *m);

#endif
