/*
 * hark/log.h: structured logging that never blocks the caller.
 *
 * Logging is process state: one logger per process, opened with hk_log_open()
 * and closed with hk_log_close(). A log call on any thread formats its line
 * into that thread's own single-producer ring (lock-free, no system call in
 * the common case) and returns; one writer thread drains the rings to the sink
 * (stderr, a file, a pipe or a socket). A thread's ring is created on its
 * first log call and freed after the thread exits and the writer drained it.
 *
 * When a ring is full the line is dropped and counted; once the writer has
 * made room again it writes "N messages dropped" into the stream, where the
 * gap is. The sink is written without ever blocking (a private non-blocking
 * file description for pipes, ttys and sockets), so a sink nobody reads only
 * costs dropped lines, never a stuck caller, a stuck writer or a stuck exit:
 * hk_log_close() and the exit handler wait for pending lines with a deadline.
 *
 * Output formats, one line per call:
 *   text:  2026-11-27T10:59:01.123456Z level=info msg="accepted" fd=7 peer=10.0.0.2:5100
 *   json:  {"ts":"2026-11-27T10:59:01.123456Z","level":"info","msg":"accepted","fd":7,...}
 * Timestamps are CLOCK_REALTIME read by the caller, in UTC, microseconds.
 *
 * Fields: the third argument of hk_log() is a printf format of space-separated
 * key=value fields, "fd=%d peer=%s". Spaces in the format separate fields;
 * spaces produced by a conversion stay inside the value ("path=%s" with "a b"
 * gives path="a b"). Values are quoted and escaped by the writer, so no input
 * can break the line structure: quotes, backslashes, newlines, control bytes
 * and invalid UTF-8 are escaped. A field without '=' gets the key "_". In
 * JSON, a value that is exactly one numeric conversion (%d %u %f ...) is a
 * JSON number; everything else is a string. %n is ignored. A line longer than
 * HK_LOG_LINE_MAX bytes (message and fields before escaping) is cut and marked
 * truncated=true.
 *
 * Before hk_log_open() and after hk_log_close(), log calls are dropped and
 * counted (hk_log_stats().dropped_closed); they never write anywhere.
 *
 * Access log: a second channel for lines the caller formats itself (an HTTP
 * server's access log in nginx's formats or as JSON), written verbatim, with
 * no timestamp or level, to a second sink (hk_log_access_open). Its lines go
 * through the same thread rings as hk_log() lines, tagged with the channel,
 * so each thread's lines of both channels stay in order; the writer routes
 * them. A consequence: a stalled sink of either channel holds back both, and
 * callers of both drop (they never block).
 *
 * Threads: every function here is thread-safe. hk_log() and its macros are
 * also safe on loop threads (they never block); hk_log_open, hk_log_close and
 * hk_log_flush wait (with bounds) and belong to start-up, shutdown and tests.
 * None is async-signal-safe: use hk_signal (signalfd) for SIGHUP and call
 * hk_log_reopen() from its callback.
 */
#ifndef HARK_LOG_H
#define HARK_LOG_H

#include "hark/api.h"
#include "hark/loop.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hk_log_level {
    HK_LOG_DEBUG = 0,
    HK_LOG_INFO = 1,
    HK_LOG_WARN = 2,
    HK_LOG_ERROR = 3,
} hk_log_level_t;

typedef enum hk_log_format {
    HK_LOG_TEXT = 0, /* logfmt-like key=value lines */
    HK_LOG_JSON = 1, /* JSON lines: one object per line */
} hk_log_format_t;

/* Longest message plus fields of one line, in bytes, before escaping. */
#define HK_LOG_LINE_MAX 4000

/* Defaults of hk_log_options_t (used for zero fields). */
#define HK_LOG_DEFAULT_RING_BYTES (256u * 1024)
#define HK_LOG_DEFAULT_FLUSH_NS (UINT64_C(2) * 1000 * 1000)
#define HK_LOG_DEFAULT_EXIT_NS (UINT64_C(1000) * 1000 * 1000)

/* Every field may be left zero for its default. */
typedef struct hk_log_options {
    /*
     * The sink: a file opened for appending (created 0644) when path is set;
     * otherwise the file descriptor fd, duplicated (the caller keeps and
     * closes its own). fd 0 means stderr: stdin is never a log sink.
     */
    const char *path;
    int fd;
    hk_log_level_t level;   /* minimum level written (default HK_LOG_DEBUG) */
    hk_log_format_t format; /* default HK_LOG_TEXT */
    /*
     * Bytes of each thread's ring (0: HK_LOG_DEFAULT_RING_BYTES), rounded up
     * to a power of two, at least 16 KiB and at most 256 MiB (larger values
     * are capped).
     */
    size_t ring_bytes;
    /* Longest time a line waits in a ring before the writer looks (latency). */
    uint64_t flush_interval_ns;
    /* At exit(), pending lines are flushed for at most this long. */
    uint64_t exit_timeout_ns;
} hk_log_options_t;

/*
 * Opens the process logger: opens or duplicates the sink and starts the
 * writer thread (it blocks every signal). opts may be NULL (text on stderr).
 * Registers an exit handler (once per process) that closes the logger with
 * exit_timeout_ns. Errors: -EBUSY (already open), -EINVAL (bad level or
 * format, or no path and a negative fd), -EBADF (fd is not an open file
 * descriptor), -errno of open(2) for path, -EMFILE, -ENOMEM, -EAGAIN (no
 * thread).
 */
HK_API int hk_log_open(const hk_log_options_t *opts);

/*
 * Closes the logger: new calls are dropped from now on; pending lines, and
 * the line of a call that was already past its open check, are written for
 * at most flush_timeout_ns (0: one non-blocking attempt), then the rest is
 * counted as lost and the writer stops (a call that outlives the deadline
 * has its line counted as lost, at the next hk_log_open at the latest). Returns 0 when every
 * line was written, -ETIMEDOUT when some were lost to the deadline (the
 * logger is closed all the same), -EALREADY when it was not open.
 * A sink that accepts nothing (a full pipe nobody reads) cannot stretch the
 * wait beyond the deadline; a regular file on a hung disk or network file
 * system can (its writes cannot be made non-blocking).
 */
HK_API int hk_log_close(uint64_t flush_timeout_ns);

/*
 * Log rotation: makes the writer open path and swap it in for the main sink.
 * Lines logged before the call (by this thread, or by any thread before
 * something that happens before the call) go to the old sink, lines logged
 * after it to the new one, even if the writer takes the request late: the call
 * marks where each thread's lines end. path NULL reopens
 * every sink that was opened from a path, the main sink and the access sink
 * alike (what logrotate's rename-then-signal needs); a given path moves the
 * main sink only (hk_log_access_reopen moves the access sink). Returns once
 * the request is queued, without waiting for the writer: 0, or -EBADF (not
 * open), -EINVAL (path NULL and no sink is a path), -ENOMEM. If an open
 * fails the writer keeps that old sink, counts hk_log_stats().reopen_errors
 * and logs an error line to the main sink. Call hk_log_flush() to wait until
 * the swap is done. The swap waits until the old sink has taken those lines,
 * the last one whole (a line goes whole into one file); an old sink that
 * takes nothing for a second (a full pipe nobody reads) is given up on: the
 * rest of a line begun there is dropped (counted as lost) and the other
 * waiting lines go to the new sink.
 */
HK_API int hk_log_reopen(const char *path);

/*
 * Waits until every line logged before the call (by any thread) has been
 * written to the sink, and any earlier hk_log_reopen() is done, or until
 * timeout_ns passed. Returns 0, -ETIMEDOUT or -EBADF (not open).
 */
HK_API int hk_log_flush(uint64_t timeout_ns);

/* Longest access line, its newline included. */
#define HK_LOG_ACCESS_LINE_MAX 8000

/*
 * Opens the access sink, after hk_log_open: path is opened for appending
 * (created 0644), or "-" for standard output (a private non-blocking
 * description of it, as for the main sink). It stays open until
 * hk_log_close, which flushes and closes it with the main sink. Errors:
 * -EBADF (the logger is not open), -EBUSY (already open), -EINVAL (path
 * NULL), -errno of open(2), -ENOMEM.
 */
HK_API int hk_log_access_open(const char *path);

/*
 * Moves the access sink to path (NULL: opens its own path again, for
 * rotation), like hk_log_reopen does for the main sink: queued, done by the
 * writer, a failed open keeps the old sink and is logged to the main sink.
 * Returns 0, -EBADF (no access sink), -EINVAL (path NULL and the access sink
 * is standard output), -ENOMEM.
 */
HK_API int hk_log_access_reopen(const char *path);

/*
 * Queues one access line: line[0 .. len) is written verbatim to the access
 * sink, with a '\n' added when it does not end in one. It must not contain
 * another newline: escaping is the caller's (one call, one line). Same
 * promises as hk_log(): never blocks, no lock (but once per thread), no
 * system call but to wake an idle writer. Returns 0 when queued; -EAGAIN
 * (the thread's ring is full), -EMSGSIZE (longer than
 * HK_LOG_ACCESS_LINE_MAX), -ENOMEM (no ring): dropped and counted in
 * hk_log_stats().access_dropped, and reported by an "N access lines
 * dropped" warning in the main sink; -EBADF (no access sink) and -EINVAL
 * (an embedded newline, or line NULL with len > 0): not counted.
 */
HK_API int hk_log_access(const char *line, size_t len);

/* The minimum level; lines below it cost one load and a compare. */
HK_API int hk_log_set_level(hk_log_level_t level); /* 0 or -EINVAL */
HK_API hk_log_level_t hk_log_level(void);

/* "debug", "info", "warn", "error" (or "unknown"). */
HK_API const char *hk_log_level_name(hk_log_level_t level);

/*
 * Logs one line. msg is a plain string (not a format); fields is a printf
 * format of space-separated key=value fields, or NULL for none ("" works
 * too, but -Wformat-zero-length warns about it).
 * Never blocks, never takes a lock (except once per thread, on its first
 * call), and makes a system call only to wake a writer that went idle.
 * Returns 0 when the line was queued or is below the minimum level,
 * -EAGAIN when it was dropped because the thread's ring is full, -EBADF when
 * the logger is not open (dropped), -ENOMEM when the thread's ring could not
 * be allocated (dropped). Every drop is counted.
 */
HK_API int hk_log(hk_log_level_t level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
HK_API int hk_logv(hk_log_level_t level, const char *msg, const char *fields, va_list ap)
    __attribute__((format(printf, 3, 0)));

/*
 * Shorthands with the fields format optional (it must then be a literal):
 * HK_LOGI("listening", "port=%d", port); HK_LOGW("disk almost full");
 * (The leading " " keeps -Wformat-zero-length quiet; spaces between fields
 * are ignored.)
 */
#define HK_LOGD(msg, ...) hk_log(HK_LOG_DEBUG, (msg), " " __VA_ARGS__)
#define HK_LOGI(msg, ...) hk_log(HK_LOG_INFO, (msg), " " __VA_ARGS__)
#define HK_LOGW(msg, ...) hk_log(HK_LOG_WARN, (msg), " " __VA_ARGS__)
#define HK_LOGE(msg, ...) hk_log(HK_LOG_ERROR, (msg), " " __VA_ARGS__)

/* Counters since the process started (they survive close and reopen). */
typedef struct hk_log_stats {
    uint64_t logged;         /* lines accepted into a ring */
    uint64_t dropped;        /* lines refused because a ring was full (or no ring memory) */
    uint64_t dropped_closed; /* lines refused because the logger was not open */
    uint64_t written;        /* lines written to the sink, "N messages dropped" lines included */
    uint64_t lost;           /* accepted lines never written: close deadline or sink error */
    uint64_t drop_reports;   /* "N messages dropped" lines produced */
    uint64_t bytes;          /* bytes written to the sink */
    uint64_t write_errors;   /* write(2) failures other than EAGAIN */
    uint64_t reopens;        /* successful swaps of the main sink */
    uint64_t reopen_errors;  /* failed reopen opens, of either sink */
    uint64_t rings;          /* thread rings alive now */
    /*
     * The access channel. The main sink's counters above do not count its
     * lines; its drop reports and failed reopens are main-sink lines, so that,
     * once flushed, written + lost = logged + drop_reports +
     * access_drop_reports + reopen_errors, and access_written + access_lost =
     * access_lines.
     */
    uint64_t access_lines;        /* access lines accepted into a ring */
    uint64_t access_dropped;      /* refused: full ring, too long, no ring memory */
    uint64_t access_written;      /* access lines written to the access sink */
    uint64_t access_lost;         /* accepted, never written: close deadline, sink error */
    uint64_t access_drop_reports; /* "N access lines dropped" lines in the main sink */
    uint64_t access_bytes;        /* bytes written to the access sink */
    uint64_t access_write_errors; /* its write(2) failures other than EAGAIN */
    uint64_t access_reopens;      /* successful access sink swaps */
} hk_log_stats_t;

/* Copies the counters (a consistent-enough snapshot while threads log). Returns 0. */
HK_API int hk_log_stats(hk_log_stats_t *out);

/*
 * A stall reporter for hk_loop_stall_detect(loop, ns, hk_log_stall_reporter,
 * NULL): logs at WARN "loop stalled for N ms in <symbol or address>" with the
 * fields duration_ms, cpu_ms, threshold_ms, suppressed and backtrace (the
 * frames, symbolised with backtrace_symbols, separated by " | "). It runs on
 * the loop thread after the stall; it allocates but never blocks. arg is
 * unused.
 */
HK_API void hk_log_stall_reporter(hk_loop_t *loop, const hk_stall_info_t *info, void *arg);

#ifdef __cplusplus
}
#endif

#endif
