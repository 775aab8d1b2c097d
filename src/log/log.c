/*
 * The logger's public face: open, close, reopen, flush, levels, counters and
 * the log call itself.
 *
 * Why calls before open and after close are dropped (and counted) rather
 * than written to stderr synchronously: a synchronous write is exactly the
 * blocking this module exists to avoid, and a library call that sometimes
 * blocks depending on start-up order is worse than one that never does.
 *
 * Why the eventfd is created once and never closed: a producer that saw the
 * logger open may still be about to write the eventfd when another thread
 * closes the logger; had we closed the fd, that write could land in an
 * unrelated file that reused its number. One fd for the life of the process
 * is the price of a lock-free hot path. The one exception is a child after
 * fork(), where no other thread exists: it gets an eventfd of its own.
 *
 * Shutdown is bounded: hk_log_close gives the writer a deadline and joins
 * it; the writer checks the deadline on every pass and sleeps no longer than
 * what is left of it, and its sink never blocks (writer.c). An exit handler
 * does the same with exit_timeout_ns. In a child after fork() there is no
 * writer: the child starts with the logger closed (its lines are dropped)
 * and may open it again. It keeps nothing of the parent's that a new writer
 * could act on: a new eventfd, and no lines logged before the fork (the
 * parent writes those; the rings of its other threads are freed).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log/internal.h"

#define MIN_RING_BYTES (16u * 1024)
#define MAX_RING_BYTES (256u * 1024 * 1024)

/*
 * api_lock serialises open, close and hk_log_access_open; close holds it
 * while joining the writer, which never takes it.
 */
hk__log_state_t hk__log = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .api_lock = PTHREAD_MUTEX_INITIALIZER,
    .ctl_lock = PTHREAD_MUTEX_INITIALIZER,
    .eventfd = -1,
    .sink_fd = {-1, -1},
    .ring_bytes = HK_LOG_DEFAULT_RING_BYTES,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_err;

/* Closes the sinks and frees what the writer used; the writer is gone. */
static void release_sinks(void)
{
    for (int ch = 0; ch < HK__CHANS; ch++) {
        if (hk__log.sink_fd[ch] >= 0)
            close(hk__log.sink_fd[ch]);
        hk__log.sink_fd[ch] = -1;
        free(hk__log.out_buf[ch]);
        hk__log.out_buf[ch] = NULL;
        free(hk__log.reopen_path[ch]);
        hk__log.reopen_path[ch] = NULL;
    }
    /* The main path stays for hk_log_reopen's -EINVAL test; the access sink is gone. */
    free(hk__log.path[HK__CHAN_ACCESS]);
    hk__log.path[HK__CHAN_ACCESS] = NULL;
    atomic_store_explicit(&hk__log.access_ready, 0, memory_order_relaxed);
}

static void at_exit(void)
{
    if (atomic_load_explicit(&hk__log.open, memory_order_acquire))
        (void)hk_log_close(hk__log.exit_timeout_ns);
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&hk__log.ctl_lock);
    pthread_mutex_lock(&hk__log.lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&hk__log.lock);
    pthread_mutex_unlock(&hk__log.ctl_lock);
}

static void fork_child(void)
{
    /*
     * Only this thread exists in the child, so nothing can be about to write
     * the eventfd: it is safe to replace it here (and only here). Sharing the
     * parent's would let two writers steal each other's wake-ups once the
     * child opens the logger again.
     */
    if (hk__log.eventfd >= 0) {
        close(hk__log.eventfd);
        /* On failure producers write -1 (EBADF, harmless) and hk_log_open retries. */
        hk__log.eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    atomic_store_explicit(&hk__log.wake_pending, 0, memory_order_relaxed);
    atomic_store_explicit(&hk__log.writer_sleeping, 0, memory_order_relaxed);
    /* Drop what the parent's writer will write, so a new writer here cannot write it again. */
    hk__log_ring_fork_child();
    pthread_mutex_unlock(&hk__log.lock);
    pthread_mutex_unlock(&hk__log.ctl_lock);
    pthread_mutex_init(&hk__log.api_lock, NULL);
    if (atomic_load_explicit(&hk__log.open, memory_order_relaxed) || hk__log.writer_running) {
        /* The writer did not survive the fork: start closed, release what it held. */
        atomic_store_explicit(&hk__log.open, 0, memory_order_relaxed);
        atomic_store_explicit(&hk__log.access_open, 0, memory_order_relaxed);
        hk__log.writer_running = 0;
        release_sinks();
        free(hk__log.path[HK__CHAN_MAIN]);
        hk__log.path[HK__CHAN_MAIN] = NULL;
    }
}

static void init_once(void)
{
    hk__log.eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (hk__log.eventfd < 0) {
        once_err = -errno;
        return;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hk__log.flushed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (atexit(at_exit) != 0)
        once_err = -ENOMEM;
}

static uint32_t ring_size(size_t want)
{
    if (want == 0)
        want = HK_LOG_DEFAULT_RING_BYTES;
    if (want > MAX_RING_BYTES)
        want = MAX_RING_BYTES;
    uint32_t cap = MIN_RING_BYTES;
    while (cap < want)
        cap <<= 1;
    return cap;
}

int hk_log_open(const hk_log_options_t *opts)
{
    static const hk_log_options_t defaults = {0};
    if (!opts)
        opts = &defaults;
    if ((unsigned)opts->level > HK_LOG_ERROR || (unsigned)opts->format > HK_LOG_JSON ||
        (!opts->path && opts->fd < 0))
        return -EINVAL;
    pthread_once(&once, init_once);
    if (once_err)
        return once_err;

    pthread_mutex_lock(&hk__log.api_lock);
    int r = 0;
    char *path = NULL;
    char *buf = NULL;
    int fd = -1, kind = 0;
    if (atomic_load_explicit(&hk__log.open, memory_order_relaxed)) {
        r = -EBUSY;
        goto out;
    }
    if (hk__log.eventfd < 0) {
        /* A child after fork() whose new eventfd could not be made: the writer needs one. */
        hk__log.eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (hk__log.eventfd < 0) {
            r = -errno;
            goto out;
        }
    }
    if (opts->path && !(path = strdup(opts->path))) {
        r = -ENOMEM;
        goto out;
    }
    buf = malloc(HK__OUT_CAP);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    fd = path ? hk__log_sink_open_path(path, &kind)
              : hk__log_sink_from_fd(opts->fd ? opts->fd : STDERR_FILENO, &kind);
    if (fd < 0) {
        r = fd;
        goto out;
    }

    pthread_mutex_lock(&hk__log.ctl_lock);
    free(hk__log.path[HK__CHAN_MAIN]);
    hk__log.path[HK__CHAN_MAIN] = path;
    path = NULL;
    pthread_mutex_unlock(&hk__log.ctl_lock);
    hk__log.sink_fd[HK__CHAN_MAIN] = fd;
    hk__log.sink_kind[HK__CHAN_MAIN] = kind;
    hk__log.out_buf[HK__CHAN_MAIN] = buf;
    hk__log.format = opts->format;
    hk__log.flush_interval_ns =
        opts->flush_interval_ns ? opts->flush_interval_ns : HK_LOG_DEFAULT_FLUSH_NS;
    hk__log.exit_timeout_ns =
        opts->exit_timeout_ns ? opts->exit_timeout_ns : HK_LOG_DEFAULT_EXIT_NS;
    atomic_store(&hk__log.min_level, (int)opts->level);
    atomic_store(&hk__log.stop, 0);
    atomic_store(&hk__log.writer_sleeping, 0);
    atomic_store(&hk__log.wake_pending, 0);
    pthread_mutex_lock(&hk__log.lock);
    /*
     * Lines committed after the last close gave up (a call that outlived its
     * deadline) belong to that session: counted as lost, not written here.
     */
    for (hk__log_ring_t *rg = hk__log.rings; rg; rg = rg->next)
        hk__log_ring_discard(rg);
    hk__log.ring_bytes = ring_size(opts->ring_bytes);
    hk__log.writer_running = 1;
    pthread_mutex_unlock(&hk__log.lock);

    /* The writer inherits a full signal mask: signals stay with the loops' signalfds. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&hk__log.writer, NULL, hk__log_writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    buf = NULL; /* hk__log owns it now */
    if (e != 0) {
        pthread_mutex_lock(&hk__log.lock);
        hk__log.writer_running = 0;
        pthread_mutex_unlock(&hk__log.lock);
        release_sinks();
        r = -EAGAIN;
        goto out;
    }
    pthread_setname_np(hk__log.writer, "hk-log");
    atomic_store_explicit(&hk__log.open, 1, memory_order_release);
out:
    pthread_mutex_unlock(&hk__log.api_lock);
    free(path);
    free(buf);
    return r;
}

int hk_log_close(uint64_t flush_timeout_ns)
{
    pthread_mutex_lock(&hk__log.api_lock);
    if (!atomic_load_explicit(&hk__log.open, memory_order_relaxed)) {
        pthread_mutex_unlock(&hk__log.api_lock);
        return -EALREADY;
    }
    /* seq_cst: pairs with hk__log_call_begin, so the writer sees every call still running. */
    atomic_store_explicit(&hk__log.access_open, 0, memory_order_seq_cst);
    atomic_store_explicit(&hk__log.open, 0, memory_order_seq_cst);
    uint64_t now = hk__log_mono_ns();
    uint64_t deadline = flush_timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + flush_timeout_ns;
    atomic_store_explicit(&hk__log.stop_deadline, deadline, memory_order_relaxed);
    atomic_store_explicit(&hk__log.stop, 1, memory_order_release);
    hk__log_wake_force();
    pthread_join(hk__log.writer, NULL);
    int r = hk__log.stop_result;

    pthread_mutex_lock(&hk__log.lock);
    hk__log.writer_running = 0;
    hk__log_ring_reap_dead(0);
    /*
     * A call that was still running when the deadline passed may have
     * committed its line after the writer's last look: lost, and counted.
     */
    for (hk__log_ring_t *rg = hk__log.rings; rg; rg = rg->next)
        hk__log_ring_discard(rg);
    pthread_mutex_unlock(&hk__log.lock);

    pthread_mutex_lock(&hk__log.ctl_lock);
    release_sinks();
    pthread_cond_broadcast(&hk__log.flushed);
    pthread_mutex_unlock(&hk__log.ctl_lock);
    pthread_mutex_unlock(&hk__log.api_lock);
    return r;
}

/* Queues path (NULL: the sink's own) as the next sink of channel ch; ctl_lock held. */
static int queue_reopen(int ch, const char *path)
{
    char *copy = strdup(path ? path : hk__log.path[ch]);
    if (!copy)
        return -ENOMEM;
    free(hk__log.reopen_path[ch]);
    hk__log.reopen_path[ch] = copy;
    return 0;
}

int hk__log_reopen(int ch, const char *path)
{
    int r = 0;
    pthread_mutex_lock(&hk__log.ctl_lock);
    int have = ch == HK__CHAN_MAIN
                   ? atomic_load_explicit(&hk__log.open, memory_order_acquire)
                   : atomic_load_explicit(&hk__log.access_open, memory_order_acquire);
    if (!have) {
        r = -EBADF;
    } else if (path) {
        r = queue_reopen(ch, path);
    } else if (ch == HK__CHAN_ACCESS) {
        r = hk__log.path[ch] ? queue_reopen(ch, NULL) : -EINVAL;
    } else {
        /* Rotation: every sink that has a path (the access sink has one only while open). */
        r = -EINVAL;
        for (int c = 0; c < HK__CHANS && r != -ENOMEM; c++)
            if (hk__log.path[c])
                r = queue_reopen(c, NULL);
    }
    if (r == 0) {
        /*
         * The lines logged before this call end at each ring's tail now: they
         * go to the old sink, later ones to the new (the writer takes the
         * request later, when more lines may be in the rings).
         */
        hk__log.reopen_gen++;
        pthread_mutex_lock(&hk__log.lock);
        for (hk__log_ring_t *rg = hk__log.rings; rg; rg = rg->next) {
            rg->reopen_req_gen = hk__log.reopen_gen;
            rg->reopen_req_mark = atomic_load_explicit(&rg->tail, memory_order_acquire);
        }
        pthread_mutex_unlock(&hk__log.lock);
        atomic_fetch_add_explicit(&hk__log.reopen_seq, 1, memory_order_release);
    }
    pthread_mutex_unlock(&hk__log.ctl_lock);
    if (r == 0)
        hk__log_wake_force();
    return r;
}

int hk_log_reopen(const char *path)
{
    return hk__log_reopen(HK__CHAN_MAIN, path);
}

int hk_log_flush(uint64_t timeout_ns)
{
    if (!atomic_load_explicit(&hk__log.open, memory_order_acquire))
        return -EBADF;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t sec = timeout_ns / 1000000000u;
    ts.tv_sec += (time_t)(sec > (uint64_t)INT32_MAX ? INT32_MAX : sec);
    ts.tv_nsec += (long)(timeout_ns % 1000000000u);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    uint64_t mine = atomic_fetch_add(&hk__log.flush_req, 1) + 1;
    hk__log_wake_force();
    int r = 0;
    pthread_mutex_lock(&hk__log.ctl_lock);
    while (hk__log.flush_done < mine) {
        if (!atomic_load_explicit(&hk__log.open, memory_order_acquire)) {
            r = -ETIMEDOUT;
            break;
        }
        if (pthread_cond_timedwait(&hk__log.flushed, &hk__log.ctl_lock, &ts) == ETIMEDOUT) {
            r = hk__log.flush_done >= mine ? 0 : -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&hk__log.ctl_lock);
    return r;
}

int hk_log_set_level(hk_log_level_t level)
{
    if ((unsigned)level > HK_LOG_ERROR)
        return -EINVAL;
    atomic_store_explicit(&hk__log.min_level, (int)level, memory_order_relaxed);
    return 0;
}

hk_log_level_t hk_log_level(void)
{
    return (hk_log_level_t)atomic_load_explicit(&hk__log.min_level, memory_order_relaxed);
}

const char *hk_log_level_name(hk_log_level_t level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    return (unsigned)level <= HK_LOG_ERROR ? names[level] : "unknown";
}

int hk_logv(hk_log_level_t level, const char *msg, const char *fields, va_list ap)
{
    if ((int)level < atomic_load_explicit(&hk__log.min_level, memory_order_relaxed))
        return 0;
    if ((unsigned)level > HK_LOG_ERROR)
        level = HK_LOG_ERROR;
    if (__builtin_expect(!atomic_load_explicit(&hk__log.open, memory_order_acquire), 0)) {
        atomic_fetch_add_explicit(&hk__log.dropped_closed, 1, memory_order_relaxed);
        return -EBADF;
    }
    hk__log_ring_t *r = hk__log_ring_get();
    if (__builtin_expect(!r, 0)) {
        atomic_fetch_add_explicit(&hk__log.cs[HK__CHAN_MAIN].dropped_nomem, 1,
                                  memory_order_relaxed);
        return -ENOMEM;
    }
    /* Checked again, now visibly in the call: a closing writer waits for this line. */
    if (__builtin_expect(!hk__log_call_begin(r, &hk__log.open), 0)) {
        atomic_fetch_add_explicit(&hk__log.dropped_closed, 1, memory_order_relaxed);
        return -EBADF;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    va_list cp;
    va_copy(cp, ap);
    uint32_t size = hk__log_format(r->scratch, (int)level, ns, msg, fields, &cp);
    va_end(cp);
    int rc = hk__log_ring_push(r, r->scratch, size);
    hk__log_call_end(r);
    return rc;
}

int hk_log(hk_log_level_t level, const char *msg, const char *fields, ...)
{
    va_list ap;
    va_start(ap, fields);
    int r = hk_logv(level, msg, fields, ap);
    va_end(ap);
    return r;
}

int hk_log_stats(hk_log_stats_t *out)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    uint64_t acc[HK__CHANS], drop[HK__CHANS];
    pthread_mutex_lock(&hk__log.lock);
    for (int ch = 0; ch < HK__CHANS; ch++) {
        acc[ch] = hk__log.retired_accepted[ch];
        drop[ch] = hk__log.retired_dropped[ch];
        for (hk__log_ring_t *r = hk__log.rings; r; r = r->next) {
            acc[ch] += atomic_load_explicit(&r->accepted[ch], memory_order_relaxed);
            drop[ch] += atomic_load_explicit(&r->dropped[ch], memory_order_relaxed);
        }
    }
    out->rings = hk__log.nrings;
    pthread_mutex_unlock(&hk__log.lock);
#define CS(ch, f) atomic_load_explicit(&hk__log.cs[ch].f, memory_order_relaxed)
    out->logged = acc[HK__CHAN_MAIN];
    out->dropped = drop[HK__CHAN_MAIN] + CS(HK__CHAN_MAIN, dropped_nomem);
    out->dropped_closed = atomic_load_explicit(&hk__log.dropped_closed, memory_order_relaxed);
    out->written = CS(HK__CHAN_MAIN, written);
    out->lost = CS(HK__CHAN_MAIN, lost);
    out->drop_reports = CS(HK__CHAN_MAIN, drop_reports);
    out->bytes = CS(HK__CHAN_MAIN, bytes);
    out->write_errors = CS(HK__CHAN_MAIN, write_errors);
    out->reopens = CS(HK__CHAN_MAIN, reopens);
    out->reopen_errors = atomic_load_explicit(&hk__log.reopen_errors, memory_order_relaxed);
    out->access_lines = acc[HK__CHAN_ACCESS];
    out->access_dropped = drop[HK__CHAN_ACCESS] + CS(HK__CHAN_ACCESS, dropped_nomem);
    out->access_written = CS(HK__CHAN_ACCESS, written);
    out->access_lost = CS(HK__CHAN_ACCESS, lost);
    out->access_drop_reports = CS(HK__CHAN_ACCESS, drop_reports);
    out->access_bytes = CS(HK__CHAN_ACCESS, bytes);
    out->access_write_errors = CS(HK__CHAN_ACCESS, write_errors);
    out->access_reopens = CS(HK__CHAN_ACCESS, reopens);
#undef CS
    return 0;
}
