/*
 * The access channel: lines the caller formats itself (an HTTP server's
 * access log), written verbatim to a sink of their own.
 *
 * Why through the same rings as hk_log: a server that logs an access line
 * and an error line for the same request from one loop thread pays the same
 * price for both (a copy into its ring, no lock, no system call), both are
 * bounded by the same never-blocking writer, and one ring per thread keeps
 * its lines of both channels in the order they were logged. Why a separate
 * sink and no decoration: access logs are parsed by tools that expect
 * nginx's formats or one JSON object per line exactly as the server wrote
 * it, in a file rotated on its own schedule.
 *
 * Why the sink is opened here and not by the writer: the caller wants the
 * open's errno (a missing directory, a permission) at start-up. The sink and
 * its buffer are then published to the running writer with a release store
 * of access_ready, and only after that may hk_log_access queue lines, so the
 * writer always has the sink by the time it meets an access line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/internal.h"

int hk_log_access_open(const char *path)
{
    if (!path)
        return -EINVAL;
    int r = 0, fd = -1, kind = 0;
    char *copy = NULL;
    char *buf = NULL;
    pthread_mutex_lock(&hk__log.api_lock);
    if (!atomic_load_explicit(&hk__log.open, memory_order_relaxed)) {
        r = -EBADF;
        goto out;
    }
    if (atomic_load_explicit(&hk__log.access_open, memory_order_relaxed)) {
        r = -EBUSY;
        goto out;
    }
    int is_stdout = strcmp(path, "-") == 0;
    if ((!is_stdout && !(copy = strdup(path))) || !(buf = malloc(HK__OUT_CAP))) {
        r = -ENOMEM;
        goto out;
    }
    fd = is_stdout ? hk__log_sink_from_fd(STDOUT_FILENO, &kind)
                   : hk__log_sink_open_path(copy, &kind);
    if (fd < 0) {
        r = fd;
        goto out;
    }
    pthread_mutex_lock(&hk__log.ctl_lock);
    free(hk__log.path[HK__CHAN_ACCESS]);
    hk__log.path[HK__CHAN_ACCESS] = copy; /* NULL for stdout: nothing to reopen */
    copy = NULL;
    hk__log.sink_fd[HK__CHAN_ACCESS] = fd;
    hk__log.sink_kind[HK__CHAN_ACCESS] = kind;
    hk__log.out_buf[HK__CHAN_ACCESS] = buf;
    buf = NULL;
    pthread_mutex_unlock(&hk__log.ctl_lock);
    atomic_store_explicit(&hk__log.access_ready, 1, memory_order_release);
    atomic_store_explicit(&hk__log.access_open, 1, memory_order_release);
out:
    pthread_mutex_unlock(&hk__log.api_lock);
    free(copy);
    free(buf);
    return r;
}

int hk_log_access_reopen(const char *path)
{
    return hk__log_reopen(HK__CHAN_ACCESS, path);
}

int hk_log_access(const char *line, size_t len)
{
    if (__builtin_expect(!atomic_load_explicit(&hk__log.access_open, memory_order_acquire), 0))
        return -EBADF;
    if (!line && len)
        return -EINVAL;
    if (len && line[len - 1] == '\n')
        len--;
    /* One call, one line: the counts of lines written rely on it, and so do the parsers. */
    if (len && memchr(line, '\n', len))
        return -EINVAL;
    hk__log_ring_t *r = hk__log_ring_get();
    if (__builtin_expect(!r, 0)) {
        atomic_fetch_add_explicit(&hk__log.cs[HK__CHAN_ACCESS].dropped_nomem, 1,
                                  memory_order_relaxed);
        return -ENOMEM;
    }
    if (__builtin_expect(!hk__log_call_begin(r, &hk__log.access_open), 0))
        return -EBADF;
    int rc = hk__log_ring_push_access(r, line, len);
    hk__log_call_end(r);
    return rc;
}
