/* report.h: alert and per-process lines (JSON through hark/log.h). */
#ifndef HARK_WATCH_REPORT_H
#define HARK_WATCH_REPORT_H

#include "baseline.h"
#include "scan.h"

/* The top remote endpoints of p's watched sockets: "tcp:127.0.0.1:80*998,unix:?*2". */
void report_endpoints(const scan_t *sc, const proc_rec_t *p, char *out, size_t cap);

/* Logs the alert for p (and returns the text line for syslog in line, when non-NULL). */
void report_alert(const scan_t *sc, const proc_rec_t *p, int cls, const verdict_t *v,
                  const baseline_t *b, char *line, size_t cap);

void report_proc(const scan_t *sc, const proc_rec_t *p, int cls, const verdict_t *v);

#endif
