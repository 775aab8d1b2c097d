/*
 * The loop's stall reports as log lines.
 *
 * Why it may allocate: the stall detector calls it on the loop thread after
 * the stalled callback returned, so the damage is done and a few
 * microseconds more do not matter; what must not happen is a second stall
 * caused by the report, so the line goes through hk_log (a ring, never the
 * sink) and backtrace_symbols (malloc and dladdr, no I/O).
 */
#include <execinfo.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/internal.h"

#define TRACE_MAX 3000

void hk_log_stall_reporter(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    (void)arg;
    if (!info)
        return;
    char where[256];
    if (info->symbol && info->symbol[0])
        snprintf(where, sizeof where, "%s", info->symbol);
    else
        snprintf(where, sizeof where, "%p", info->callback);
    char msg[320];
    snprintf(msg, sizeof msg, "loop stalled for %" PRIu64 " ms in %s", info->duration_ns / 1000000u,
             where);

    char *trace = malloc(TRACE_MAX);
    if (trace)
        trace[0] = '\0';
    if (trace && info->frames && info->nframes > 0) {
        char **syms = backtrace_symbols((void *const *)info->frames, info->nframes);
        size_t n = 0;
        for (int i = 0; i < info->nframes && n + 8 < TRACE_MAX; i++) {
            char addr[24];
            const char *s = syms ? syms[i] : addr;
            if (!syms)
                snprintf(addr, sizeof addr, "%p", info->frames[i]);
            int w = snprintf(trace + n, TRACE_MAX - n, "%s%s", i ? " | " : "", s);
            if (w < 0)
                break;
            n += (size_t)w < TRACE_MAX - n ? (size_t)w : TRACE_MAX - n - 1;
        }
        free(syms);
    }
    hk_log(HK_LOG_WARN, msg,
           "duration_ms=%.3f cpu_ms=%.3f threshold_ms=%" PRIu64 " suppressed=%" PRIu64
           " callback=%p backtrace=%s",
           (double)info->duration_ns / 1e6, (double)info->cpu_ns / 1e6,
           info->threshold_ns / 1000000u, info->suppressed, info->callback, trace ? trace : "");
    free(trace);
}
