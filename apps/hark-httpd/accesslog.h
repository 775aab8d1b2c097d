/*
 * hark-httpd's access log: one line per request, in nginx's "common" or
 * "combined" format or as one JSON object, written through the library's
 * access channel (hk_log_access: the worker's ring, never a system call on
 * the request path) to the file of the access_log directive.
 *
 *   common:   127.0.0.1 - - [27/Nov/2026:13:15:39 +0000] "GET /a?q HTTP/1.1" 200 12
 *   combined: the same, then "referer" "user-agent" ("-" when absent)
 *   json:     {"time":"2026-11-27T13:15:39Z","remote":"127.0.0.1","method":"GET",
 *              "target":"/a?q","proto":"HTTP/1.1","status":200,"bytes":12,
 *              "referer":"","ua":"curl/8.5.0"}   (on one line)
 *
 * Times are UTC. Request bytes are escaped as nginx does, so that no request
 * can break a line or forge one: in common and combined, '"', '\' and bytes
 * below 0x20 or from 0x7f up become \xHH; in JSON, strings are escaped as
 * JSON asks, valid UTF-8 stays, invalid bytes become U+FFFD. Long fields are
 * cut (at an escape boundary) so that a line always fits one access record.
 */
#ifndef HTTPD_ACCESSLOG_H
#define HTTPD_ACCESSLOG_H

#include <stdint.h>

#include "conn.h"

/*
 * Opens the access sink when cfg->access_log is set ("-": standard output),
 * after hk_log_open; does nothing (0) when it is NULL. Control thread, once
 * at start-up. Returns 0 or the -errno of hk_log_access_open.
 */
int httpd_access_open(const httpd_config_t *cfg);

/*
 * A reload's access_log: opens the sink if it was off, moves it when the
 * path changed (hk_log_access_reopen); turning it off needs nothing (lines
 * are only written while the config in effect names a log). Moving between
 * a file and standard output needs a restart: -ENOTSUP, the old sink stays.
 * A new path that cannot be opened gives the -errno of open(2) and changes
 * nothing (the reload is then refused). Control thread only (it remembers
 * the path in effect). Returns 0 or -errno.
 */
int httpd_access_reload(const httpd_config_t *cfg);

/*
 * Logs one finished request of c in the format of c->gen->cfg (read per
 * line: a reload may change it). req may be NULL, or partly parsed (a
 * request answered 400): missing parts are logged as "-" or "". status is
 * the status sent and bytes the body bytes sent. Worker thread; never
 * blocks; a line the logger drops is counted there
 * (hk_log_stats().access_dropped).
 */
void httpd_access_log(const httpd_conn_t *c, const hk_http_request_t *req, int status,
                      uint64_t bytes);

#endif
