/*
 * hark/loop.h: the epoll reactor.
 *
 * One loop per thread. A loop watches file descriptors (io), absolute
 * nanosecond timers, signals, child processes and cross-thread wake-ups
 * (async), and runs prepare/check/idle hooks and deferred callbacks. An
 * iteration costs O(K) in the K ready events, never O(N) in the N watchers.
 *
 * Watchers are structs the caller embeds, so the hot path never allocates.
 * Every watcher begins with an hk_handle_t, so a pointer to any watcher can be
 * cast to (hk_handle_t *). Lifecycle: init -> start/stop (any number of
 * times) -> hk_close(handle, cb). The memory of a watcher may be reused or
 * freed only once its close callback has run.
 *
 * Errors: functions return >= 0 on success and -errno on failure; a call
 * that fails changes nothing and never invokes its callback.
 *
 * Threads: nothing here is thread-safe except hk_async_send().
 *
 * Time: uint64_t nanoseconds of CLOCK_MONOTONIC everywhere.
 */
#ifndef HARK_LOOP_H
#define HARK_LOOP_H

#include "hark/api.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A deadline that never passes. */
#define HK_FOREVER UINT64_MAX

/* Deadlines at or above this (about 146 years of uptime) are rejected with -EINVAL. */
#define HK_DEADLINE_MAX (UINT64_C(1) << 62)

typedef struct hk_loop hk_loop_t;

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

typedef enum hk_run_mode {
    HK_RUN_DEFAULT = 0, /* run until hk_loop_stop() or no active, referenced handle is left */
    HK_RUN_ONCE = 1,    /* one iteration; sleeps only if no callback has run yet in this call
                           and an active, referenced handle could wake it */
    HK_RUN_NOWAIT = 2,  /* one iteration that never sleeps */
} hk_run_mode_t;

/* Flags for hk_loop_new(). */
#define HK_LOOP_TIMERFD 0x1u /* sleep with epoll_wait + one timerfd even if epoll_pwait2 exists */
/*
 * Skip the time accounting (ns_in_callbacks, ns_asleep) and the lag histogram:
 * saves two or three clock reads per iteration. Counters stay. It exists to
 * measure what the metrics cost (bench/pipes runs both); leave them on.
 */
#define HK_LOOP_NO_METRICS 0x2u

/*
 * Creates a loop. On success stores it in *loopp and returns 0.
 * Errors: -EINVAL (unknown flag), -EMFILE/-ENFILE/-ENOMEM (no fd or memory).
 */
HK_API int hk_loop_new(hk_loop_t **loopp, unsigned flags);

/*
 * Frees a loop. Every handle must have been closed and its close callback run
 * (run the loop once after the last hk_close). Returns -EBUSY and frees nothing
 * while a handle is still open or a close is pending.
 */
HK_API int hk_loop_free(hk_loop_t *loop);

/*
 * Runs the loop in the given mode. Returns the number of active, referenced
 * handles left (0 means the loop would exit on its own), or a negative errno if
 * epoll itself failed (-EINVAL for an unknown mode, -EBUSY when called from
 * inside a callback of the same loop).
 */
HK_API int hk_loop_run(hk_loop_t *loop, hk_run_mode_t mode);

/* Makes hk_loop_run() return at the end of the current iteration. */
HK_API void hk_loop_stop(hk_loop_t *loop);

/* Non-zero while the loop has active, referenced handles or pending work. */
HK_API int hk_loop_alive(const hk_loop_t *loop);

/*
 * The loop's cached time: CLOCK_MONOTONIC in ns, refreshed once per iteration
 * right after the loop wakes up. Cheap: no system call.
 */
HK_API uint64_t hk_loop_now(const hk_loop_t *loop);

/* Refreshes the cached time now (for long callbacks). */
HK_API void hk_loop_update_time(hk_loop_t *loop);

/* CLOCK_MONOTONIC now, in ns (one vDSO call). */
HK_API uint64_t hk_time_now(void);

/*
 * Rebuilds the loop's kernel state (epoll set, eventfd, signalfd, timerfd) in a
 * child after fork(). Call it in the child before using the loop there; the
 * parent's loop is unaffected. Only the forking thread's loop survives a fork:
 * never touch the child's copies of other threads' loops. Nor do the pool's
 * threads: work submitted before the fork (hk_work_submit, hark/fs.h)
 * never completes in the child, and a loop that waits for it never returns
 * from HK_RUN_DEFAULT there; fork with no such work in flight.
 */
HK_API int hk_loop_fork(hk_loop_t *loop);

/*
 * Busy polling. Before the loop would sleep in epoll, it polls (epoll_wait
 * with a zero timeout) for up to spin_ns, never past its next timer deadline,
 * and sleeps only when nothing came. Why: when a peer's packet finds the
 * loop asleep, the kernel must wake the loop's thread (try_to_wake_up, often
 * an inter-processor interrupt), and on loopback that work is charged to the
 * sender's CPU; a loop still polling takes the event without a wake-up, and
 * itself skips the sleep and the wake. A loaded server whose client runs on
 * the same machine (or whose core would idle anyway) gains; the price is up
 * to spin_ns of CPU after every burst of work, on a core that would
 * otherwise sleep. Async wake-ups, signals and timers are served as usual
 * (an async sent while the loop spins costs no eventfd write). The spin
 * counts as asleep in the stats (ns_asleep) and for the stall detector.
 * 0 (the default) turns it off. Errors: -EINVAL (spin_ns > HK_LOOP_SPIN_MAX_NS).
 */
#define HK_LOOP_SPIN_MAX_NS (UINT64_C(10) * 1000 * 1000)
HK_API int hk_loop_busy_poll(hk_loop_t *loop, uint64_t spin_ns);

/*
 * The epoll fd, for embedding the loop in another poller (read-only use).
 * After hk_loop_fork ask again (a new epoll set, maybe another number). When
 * the loop rebuilt its set (epoll_rebuilds in hk_loop_stats grew: a
 * registration had outlived its fd, docs/loop.md), the same number names a
 * new epoll instance: register it with the outer poller again.
 */
HK_API int hk_loop_backend_fd(const hk_loop_t *loop);

/* ------------------------------------------------------------------------ */
/* Handles: the base of every watcher                                       */
/* ------------------------------------------------------------------------ */

typedef enum hk_handle_type {
    HK_HANDLE_IO = 1,
    HK_HANDLE_TIMER,
    HK_HANDLE_SIGNAL,
    HK_HANDLE_CHILD,
    HK_HANDLE_ASYNC,
    HK_HANDLE_HOOK,
} hk_handle_type_t;

typedef struct hk_handle hk_handle_t;
typedef void (*hk_close_cb)(hk_handle_t *handle);

/* An intrusive list link; private to the loop. */
struct hk__link {
    struct hk__link *_prev, *_next;
};

struct hk_handle {
    hk_loop_t *loop; /* read-only */
    void *data;      /* free for the caller */
    hk_close_cb _close_cb;
    hk_handle_t *_next_closing;
    uint16_t _type;
    uint16_t _flags;
};

/*
 * Stops the handle and calls cb (may be NULL) from the loop, after the current
 * callback phase. Until cb has run, the memory must stay valid. Closing a
 * handle twice is misuse (asserts in debug builds; ignored otherwise).
 */
HK_API void hk_close(hk_handle_t *handle, hk_close_cb cb);

HK_API int hk_is_active(const hk_handle_t *handle);
HK_API int hk_is_closing(const hk_handle_t *handle);

/*
 * An unreferenced handle does not keep hk_loop_run(HK_RUN_DEFAULT) going
 * (for example a metrics timer). Handles start referenced.
 */
HK_API void hk_ref(hk_handle_t *handle);
HK_API void hk_unref(hk_handle_t *handle);

/* ------------------------------------------------------------------------ */
/* io watchers                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Interest (hk_io_start) and readiness (callback) bits. Their values are
 * epoll's own (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP), so the dispatcher hands
 * the kernel's bits to the callback with one AND, no translation.
 */
#define HK_READABLE 0x01u
#define HK_WRITABLE 0x04u
/* Readiness only: the fd has an error (EPOLLERR), or the peer hung up (EPOLLHUP). */
#define HK_ERROR 0x08u
#define HK_HANGUP 0x10u
/*
 * Modes (hk_io_start only). Level-triggered is the default.
 * HK_EDGE: EPOLLET; the callback runs once per change of state, so read or
 *   write until EAGAIN.
 * HK_ONESHOT: EPOLLONESHOT; after one event the watcher becomes inactive; a
 *   new hk_io_start re-arms it with a single EPOLL_CTL_MOD.
 * HK_EXCLUSIVE: EPOLLEXCLUSIVE, for one fd watched by several loops (accept).
 *   The kernel allows it with EPOLL_CTL_ADD only and rejects it with ONESHOT;
 *   so an exclusive watcher's interest cannot be modified in place: changing
 *   it costs a DEL and an ADD, and HK_EXCLUSIVE|HK_ONESHOT gives -EINVAL.
 */
#define HK_EDGE 0x100u
#define HK_ONESHOT 0x200u
#define HK_EXCLUSIVE 0x400u

typedef struct hk_io hk_io_t;
typedef void (*hk_io_cb)(hk_io_t *io, unsigned revents);

struct hk_io {
    hk_handle_t base;
    int fd; /* read-only */
    unsigned _events;
    hk_io_cb _cb;
    struct hk__link _file_link; /* always-ready list (regular files) */
};

/*
 * Prepares an io watcher on fd. No system call. One io watcher per fd per
 * loop may be active at a time (it carries both read and write interest).
 * Errors: -EBADF (fd < 0).
 */
HK_API int hk_io_init(hk_loop_t *loop, hk_io_t *io, int fd);

/*
 * Starts watching for events (HK_READABLE and/or HK_WRITABLE, plus mode bits:
 * HK_EDGE and HK_ONESHOT combine; HK_EXCLUSIVE combines with HK_EDGE only).
 * HK_HANGUP and HK_ERROR are readiness bits only: passing them gives -EINVAL. A regular file, which
 * epoll refuses with EPERM, is reported ready on every iteration instead. Errors: -EINVAL (no
 * interest, unknown bits, or EXCLUSIVE with ONESHOT), -EBUSY (already active), -EEXIST (another
 * watcher of this loop is active on the same fd), -EBADF (also for an fd number of 2^26 or
 * more, beyond the loop's fd table), -ENOMEM, -ENOSPC (epoll's max_user_watches), or any other
 * errno of EPOLL_CTL_ADD.
 */
HK_API int hk_io_start(hk_io_t *io, unsigned events, hk_io_cb cb);

/*
 * Changes the interest of an active watcher. Inside callbacks this is the
 * cheap path: nothing happens when the mask is unchanged, and changes are
 * applied once, just before the loop next sleeps. events must repeat the mode
 * bits the watcher was started with (HK_EDGE | HK_READABLE for an edge
 * watcher); to change the mode, stop and start. Errors: -EINVAL (bad bits, or
 * a different mode), -ENOTCONN (not active).
 */
HK_API int hk_io_modify(hk_io_t *io, unsigned events);

/*
 * Stops watching. Events already fetched in the current batch for this fd are
 * dropped (generation tag), so closing the fd right after, or even before,
 * hk_io_stop is safe, and so is reusing the fd number in the same batch. The
 * kernel registration is removed before the next sleep (hk_close removes it
 * at once); an fd with dup'ed copies closed before that costs the loop one
 * rebuild of its epoll set (docs/loop.md, pitfall 2).
 * To watch a new file (even one that got the same fd number), call
 * hk_io_init again before hk_io_start: a plain stop + start of the same
 * watcher is assumed to be the same file, and costs no system call.
 * Returns 0, or -EALREADY when the watcher was not active (nothing changes).
 */
HK_API int hk_io_stop(hk_io_t *io);

/* ------------------------------------------------------------------------ */
/* Timers                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct hk_timer hk_timer_t;

/*
 * expirations: how many deadlines of the timer's grid have passed since the
 * last call (1 when on time; more when the loop was late for a repeating timer,
 * as timerfd counts them). The grid is kept: the next deadline is always
 * first + k * period for the smallest k in the future.
 */
typedef void (*hk_timer_cb)(hk_timer_t *timer, uint64_t expirations);

struct hk_timer {
    hk_handle_t base;
    hk_timer_cb _cb;
    uint64_t _deadline;
    uint64_t _period;
    uint64_t _seq;
    uint32_t _heap_index;
};

HK_API int hk_timer_init(hk_loop_t *loop, hk_timer_t *timer);

/*
 * Starts a timer due at the absolute CLOCK_MONOTONIC time deadline_ns (a time
 * in the past fires on the next iteration). period_ns > 0 repeats on the grid
 * deadline + k * period; 0 fires once. Errors: -EINVAL (period < 0, deadline
 * >= HK_DEADLINE_MAX), -EBUSY (already active).
 */
HK_API int hk_timer_start(hk_timer_t *timer, hk_timer_cb cb, uint64_t deadline_ns,
                          int64_t period_ns);

/*
 * As hk_timer_start with deadline hk_loop_now() + delay_ns.
 * Errors: -EINVAL (delay or period < 0, or the deadline would be too far).
 */
HK_API int hk_timer_start_in(hk_timer_t *timer, hk_timer_cb cb, int64_t delay_ns,
                             int64_t period_ns);

/*
 * Flags for hk_timer_start_flags().
 *
 * HK_TIMER_ONTIME: run the callback on schedule on average, although the loop
 * is busy. A loop serves one callback at a time, so a timer whose moment comes
 * while another callback runs waits for it: on average lambda E[S^2] / 2, the
 * mean residual service time (lambda: callbacks per second, S: their duration;
 * see hk_loop_queue_stats), and when it comes while the loop sleeps, for the
 * wake-up. An ONTIME timer is armed that much early (advance_ns): the
 * callback for grid point d becomes runnable at d - advance, where advance is
 * the loop's current estimate of that wait, at most half the period (and at most
 * HK_TIMER_ONTIME_MAX_NS), 0 until the estimate has HK_QUEUE_MIN_SAMPLES samples.
 * So the callback may run up to advance before d (never earlier), and on a
 * loop that is idle at d - advance it does. The grid stays first + k * period:
 * only the arming moment moves, never the deadlines, so nothing accumulates.
 * expirations counts the grid points whose arming moment has passed (1 when
 * on time, early or not); hk_timer_deadline() is the grid point, not the
 * arming moment. The lag histogram records max(0, run time - grid point).
 * While at least one ONTIME timer is active the loop measures every io and
 * timer callback (one clock read each, see hk_loop_queue_measure) and, at
 * every callback boundary, runs the timers that fell due (refreshing
 * hk_loop_now() first), not only at the top of the next iteration (after the
 * rest of the io batch, and the next batch when io is ready); with no ONTIME
 * timer active the loop's costs and order are unchanged.
 */
#define HK_TIMER_ONTIME 0x1u
/* The largest advance of an ONTIME timer (10 ms), whatever the load. */
#define HK_TIMER_ONTIME_MAX_NS (UINT64_C(10) * 1000 * 1000)

/*
 * HK_TIMER_HOLD (implies HK_TIMER_ONTIME): run the callback at its grid
 * point, not only on average. ONTIME centres the timer's lateness on zero but
 * cannot narrow it: the wait for the callback in progress is random. A HOLD
 * timer reserves the loop instead. It is armed hold_window_ns before its grid
 * point (hk_loop_queue_stats: twice the wake-up latency plus three mean
 * residual service times E[S^2] / (2 E[S]), at least HK_TIMER_HOLD_MIN_NS, at
 * most a quarter of the period, (1 - rho) / 2 of it, and
 * HK_TIMER_ONTIME_MAX_NS: a held loop serves nothing, so the hold may take at
 * most half of the capacity the load leaves). At the first
 * callback boundary after that moment the loop stops starting other
 * callbacks: it sleeps (clock_nanosleep, TIMER_ABSTIME) until a little before
 * the grid point, spins on the clock for the rest (about twice the wake-up
 * latency), and runs the callback at the grid point. Only a callback that was
 * already running when the window opened and is still running at the grid
 * point makes the timer late (holds_late counts those runs).
 * The price, paid by everything else on the loop: io events, other timers and
 * deferred work that become ready inside a window wait until the timer's
 * callback has run, up to the window; the spin costs CPU time (held_ns sums
 * the holds). Use it for a few timers whose exact moment matters (a sampling
 * clock, a frame deadline), not for housekeeping.
 */
#define HK_TIMER_HOLD 0x2u
/* The shortest hold window (100 us), used while the loop has no estimate. */
#define HK_TIMER_HOLD_MIN_NS (UINT64_C(100) * 1000)

/*
 * As hk_timer_start, with flags (0, HK_TIMER_ONTIME or HK_TIMER_HOLD). Errors: as
 * hk_timer_start, -EINVAL for unknown flags, -ENOMEM (the loop's queue model
 * could not be allocated, for the first ONTIME timer).
 */
HK_API int hk_timer_start_flags(hk_timer_t *timer, hk_timer_cb cb, uint64_t deadline_ns,
                                int64_t period_ns, unsigned flags);

/* Returns 0, or -EALREADY when the timer was not active. */
HK_API int hk_timer_stop(hk_timer_t *timer);

/*
 * The next deadline of an active timer (undefined when inactive). Inside a
 * repeating timer's callback it is already the next grid point.
 */
HK_API uint64_t hk_timer_deadline(const hk_timer_t *timer);

/* ------------------------------------------------------------------------ */
/* Signals (signalfd)                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Rule for several loops: signals are process-wide. Every loop with an active
 * watcher for a signal sees each delivery of it (standard signals coalesce
 * while pending, as the kernel does); a loop without a watcher for it never
 * sees it. Whichever watching loop reads the signal from its signalfd forwards
 * it to the others through their async wake-up. hk_signal_start blocks the
 * signal in the calling thread; block it in every thread of the process (or
 * start the watcher before creating threads) so that no thread takes the
 * default action.
 */
typedef struct hk_signal hk_signal_t;
typedef void (*hk_signal_cb)(hk_signal_t *sig, int signum);

struct hk_signal {
    hk_handle_t base;
    int signum; /* read-only */
    hk_signal_cb _cb;
    struct hk__link _link;
};

HK_API int hk_signal_init(hk_loop_t *loop, hk_signal_t *sig);

/*
 * Errors: -EINVAL (signum out of range, SIGKILL or SIGSTOP), -EBUSY (active).
 * Several watchers, in one loop or several, may watch the same signal.
 */
HK_API int hk_signal_start(hk_signal_t *sig, hk_signal_cb cb, int signum);

/*
 * Returns 0, or -EALREADY when not active. When the last watcher of a signal
 * in the process stops, the calling thread unblocks it (its default action is
 * back); a delivery of it still pending then, not yet read by any loop, is
 * dropped rather than let through to that action.
 */
HK_API int hk_signal_stop(hk_signal_t *sig);

/* ------------------------------------------------------------------------ */
/* Child processes (pidfd)                                                  */
/* ------------------------------------------------------------------------ */

typedef struct hk_child hk_child_t;

/*
 * Called once when the child exits, after it has been reaped. exit_status is
 * the exit code (or -1 if killed); term_signal is the signal that killed it
 * (or 0). If someone else reaped it first, exit_status is -ECHILD and
 * term_signal 0. The watcher is inactive when the callback runs.
 */
typedef void (*hk_child_cb)(hk_child_t *child, int exit_status, int term_signal);

struct hk_child {
    hk_handle_t base;
    pid_t pid; /* read-only */
    hk_child_cb _cb;
    hk_io_t _io;
};

HK_API int hk_child_init(hk_loop_t *loop, hk_child_t *child);

/*
 * Watches child process pid (of this process) through a pidfd; no SIGCHLD
 * handler is involved. Errors: -EINVAL (pid <= 0), -ESRCH (no such process),
 * -EBUSY (active), -EMFILE, -ENOSYS (kernel without pidfd).
 */
HK_API int hk_child_start(hk_child_t *child, hk_child_cb cb, pid_t pid);

/* Stops watching; the child is not reaped. 0 or -EALREADY. */
HK_API int hk_child_stop(hk_child_t *child);

/* ------------------------------------------------------------------------ */
/* Async wake-ups (eventfd)                                                 */
/* ------------------------------------------------------------------------ */

typedef struct hk_async hk_async_t;
typedef void (*hk_async_cb)(hk_async_t *async);

struct hk_async {
    hk_handle_t base;
    hk_async_cb _cb;
    int _pending; /* accessed atomically */
    int _senders; /* hk_async_send calls in progress (atomic) */
    struct hk__link _link;
};

/* Initialises and starts an async handle (it is active until closed). */
HK_API int hk_async_init(hk_loop_t *loop, hk_async_t *async, hk_async_cb cb);

/*
 * Thread-safe, async-signal-safe. Makes the loop run the callback soon.
 * Closing the handle waits (spins) for sends in progress on other threads to
 * return, so the loop may be freed right after the close callback; a send
 * that starts after hk_close is misuse.
 * Sends made before the callback runs coalesce into one call; a send after
 * the callback has started gives another call. Writes the loop's eventfd only
 * when that loop is asleep (or about to be); otherwise no system call.
 */
HK_API int hk_async_send(hk_async_t *async);

/* ------------------------------------------------------------------------ */
/* Hooks: prepare (before sleeping), check (after waking), idle             */
/* ------------------------------------------------------------------------ */

typedef enum hk_hook_kind {
    HK_HOOK_PREPARE = 1, /* runs every iteration just before the loop sleeps */
    HK_HOOK_CHECK,       /* runs every iteration after io callbacks */
    HK_HOOK_IDLE,        /* runs every iteration; while active the loop never sleeps */
} hk_hook_kind_t;

typedef struct hk_hook hk_hook_t;
typedef void (*hk_hook_cb)(hk_hook_t *hook);

struct hk_hook {
    hk_handle_t base;
    hk_hook_kind_t kind; /* read-only */
    hk_hook_cb _cb;
    struct hk__link _link;
};

/* Errors: -EINVAL (unknown kind). */
HK_API int hk_hook_init(hk_loop_t *loop, hk_hook_t *hook, hk_hook_kind_t kind);
/* Errors: -EBUSY (active). */
HK_API int hk_hook_start(hk_hook_t *hook, hk_hook_cb cb);
/* Returns 0, or -EALREADY when not active. */
HK_API int hk_hook_stop(hk_hook_t *hook);

/* ------------------------------------------------------------------------ */
/* Deferred callbacks                                                       */
/* ------------------------------------------------------------------------ */

/*
 * A deferred callback runs once, on the loop thread, after the callback that
 * queued it returns and before the loop next sleeps. Callbacks queued by a
 * deferred callback run in a later round of the same iteration; after 64
 * rounds in one iteration (counted over all its phases), the rest run in the
 * next iteration, which then does not sleep.
 * The struct is owned by the caller and must stay valid until it runs or is
 * cancelled.
 */
typedef struct hk_defer hk_defer_t;
typedef void (*hk_defer_cb)(hk_defer_t *defer);

struct hk_defer {
    void *data; /* free for the caller */
    hk_defer_cb _cb;
    struct hk__link _link;
    int _queued;
};

/* Errors: -EBUSY (already queued). */
HK_API int hk_defer(hk_loop_t *loop, hk_defer_t *defer, hk_defer_cb cb);
/* Returns 0, or -EALREADY when not queued. */
HK_API int hk_defer_cancel(hk_loop_t *loop, hk_defer_t *defer);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Loop lag is how late a ready event or a due timer was served: for a timer,
 * the time it ran minus its deadline; for io, one sample per batch: the time
 * the batch's callbacks were done minus the time epoll_wait returned it, an
 * upper bound on how late its last event was served (0 for a batch of one,
 * served at once, without a clock read). Kept in a log-linear
 * histogram: 4 buckets per power of two, so quantiles are within 25 %.
 */
#define HK_LAG_BUCKETS 256

typedef struct hk_loop_stats {
    uint64_t iterations;      /* loop iterations */
    uint64_t events;          /* io events dispatched to callbacks */
    uint64_t stale_events;    /* events dropped by the generation tag */
    uint64_t timers_fired;    /* timer callbacks run */
    uint64_t callbacks;       /* every callback run (io, timer, hooks, ...) */
    uint64_t epoll_ctl_calls; /* EPOLL_CTL_ADD/MOD/DEL issued */
    uint64_t stalls;          /* callbacks longer than the stall threshold (when enabled) */
    uint64_t ns_in_callbacks; /* time awake between sleeps (callbacks + hark's bookkeeping) */
    uint64_t ns_asleep;       /* time inside epoll_wait (and busy polling) */
    uint64_t spin_polls;      /* zero-timeout polls made while busy polling */
    uint64_t spin_hits;       /* ... that found events (each one a sleep and a wake-up saved) */
    uint64_t epoll_rebuilds;  /* epoll sets rebuilt to drop a registration that outlived its fd */
    uint64_t lag_count;       /* samples in lag_hist */
    uint64_t lag_sum_ns;
    uint64_t lag_max_ns;
    uint64_t lag_hist[HK_LAG_BUCKETS];
} hk_loop_stats_t;

/* Copies the loop's counters. Call on the loop's thread. */
HK_API int hk_loop_stats(const hk_loop_t *loop, hk_loop_stats_t *out);

/* Upper bound (ns) of lag quantile q in [0, 1] of the histogram in stats; 0 if empty. */
HK_API uint64_t hk_loop_stats_lag_quantile(const hk_loop_stats_t *stats, double q);

/* Histogram bucket of a lag value, and the largest value a bucket holds. */
HK_API unsigned hk_lag_bucket(uint64_t ns);
HK_API uint64_t hk_lag_bucket_max(unsigned bucket);

/* ------------------------------------------------------------------------ */
/* Queue model: the loop as an M/G/1 server                                 */
/* ------------------------------------------------------------------------ */

/*
 * A loop is one server that runs callbacks one at a time, without preemption.
 * With the queue model on, the loop measures the duration S of every io and
 * timer callback (one clock read after each; Welford's mean and variance,
 * hark/stats.h) and counts them to get their rate lambda, over a horizon of
 * one to two windows (the current window and the previous one, merged). From
 * these it computes rho = lambda E[S] (the share of time spent in callbacks)
 * and two mean waits:
 *   wait_ns     = lambda E[S^2] / (2 (1 - rho)), Pollaczek-Khinchine: how long
 *                 a callback waits between becoming ready and running, in any
 *                 order that serves the ready callbacks one by one (FIFO, or
 *                 an epoll batch); undefined for rho >= 1 (HK_FOREVER).
 *   residual_ns = lambda E[S^2] / 2 = (1 - rho) wait_ns: the mean remaining
 *                 time of the callback in progress seen by a random moment,
 *                 which is how long a timer waits when it is served at the
 *                 next callback boundary (as ONTIME timers are); finite at any
 *                 load.
 * A loop that sleeps also takes time to wake up (timer slack, scheduling):
 * wake_ns is how late it woke after the deadline of its sleeps that ended
 * past it (by timeout, or by io that came later still; reported from the
 * first such sleep), and a timer due while the loop sleeps (probability
 * 1 - rho) waits that long. advance_ns = residual_ns + (1 - rho) wake_ns is
 * the mean wait of a timer, the advance of HK_TIMER_ONTIME timers (before
 * their bounds); hold_window_ns is the window of HK_TIMER_HOLD timers. For a
 * callback, the wake-up is a set-up time that delays every busy period; with
 * L the wake-up latency, M/G/1 with set-up times gives
 *   wait_wake_ns = wait_ns + (2 E[L] + lambda E[L^2]) / (2 (1 + lambda E[L])),
 * which tends to E[L] at low load, where the P-K wait tends to 0.
 * lambda is measured as completions per second, which equals the arrival rate
 * while rho < 1 (an overloaded loop completes 1/E[S] per second).
 */
#define HK_QUEUE_WINDOW_DEFAULT_NS (UINT64_C(1000000000)) /* 1 s */
#define HK_QUEUE_MIN_SAMPLES 32 /* fewer samples in the horizon: no estimate (zeros) */

typedef struct hk_loop_queue {
    int on;                 /* the model is measuring (explicitly, or for an ONTIME timer) */
    unsigned ontime_timers; /* active HK_TIMER_ONTIME timers */
    uint64_t samples;       /* callbacks measured in the horizon */
    uint64_t horizon_ns;    /* the time they span */
    double arrival_rate;    /* lambda, callbacks per second */
    double service_mean_ns; /* E[S] */
    double service_m2_ns2;  /* E[S^2], in ns^2 */
    double rho;             /* lambda E[S] */
    uint64_t wait_ns;       /* Pollaczek-Khinchine mean wait; HK_FOREVER when rho >= 1 */
    uint64_t residual_ns;   /* lambda E[S^2] / 2 */
    uint64_t wake_ns;       /* mean lateness of the loop's wake-ups at a timer deadline */
    uint64_t wake_samples;  /* wake-ups measured in the horizon */
    uint64_t advance_ns;    /* residual_ns + (1 - rho) wake_ns: the ONTIME advance, unbounded */
    uint64_t wait_wake_ns;  /* wait_ns with the wake-up as a set-up time; HK_FOREVER at rho >= 1 */
    uint64_t callbacks;     /* callbacks measured since the model was created */
    uint64_t ontime_runs;   /* ONTIME timer callbacks run */
    uint64_t ontime_early;  /* ... of which before their grid point */
    uint64_t ontime_early_ns; /* sum of how early those were */
    uint64_t hold_window_ns;  /* the hold window of a HOLD timer, before its period's bound */
    uint64_t holds;           /* HOLD timer runs that held the loop until their grid point */
    uint64_t holds_late;      /* HOLD timer runs that reached their grid point late */
    uint64_t held_ns;         /* time the loop spent holding (sleep and spin) */
} hk_loop_queue_t;

/*
 * Turns the queue model on with a window of window_ns (>= 1 ms;
 * HK_QUEUE_WINDOW_DEFAULT_NS is 1 s), or off with 0 (it stays on while an
 * ONTIME timer is active, which turns it on by itself with the default
 * window). Turning it on again keeps the samples and changes the window.
 * Cost while on: one clock read, one Welford update per io or timer callback;
 * off, nothing (one branch per io batch that was there already). Measuring
 * does not change the order of callbacks; ONTIME timers do (see above).
 * Errors: -EINVAL (window below 1 ms or >= HK_DEADLINE_MAX), -ENOMEM.
 */
HK_API int hk_loop_queue_measure(hk_loop_t *loop, uint64_t window_ns);

/*
 * Fills *out with the model's current estimate at hk_loop_now() (all zeros
 * but the counters while off or below HK_QUEUE_MIN_SAMPLES). Call on the
 * loop's thread. Errors: -EINVAL (NULL).
 */
HK_API int hk_loop_queue_stats(const hk_loop_t *loop, hk_loop_queue_t *out);

/*
 * The model's arithmetic alone: from q->arrival_rate (per second),
 * q->service_mean_ns and q->service_m2_ns2, fills q->rho, q->wait_ns (HK_FOREVER
 * when rho >= 1) and q->residual_ns. For models of workloads drawn elsewhere
 * (a benchmark's schedule). Returns 0, or -EINVAL (NULL, negative or not
 * finite inputs, or E[S^2] < E[S]^2).
 */
HK_API int hk_loop_queue_model(hk_loop_queue_t *q);

/* ------------------------------------------------------------------------ */
/* Stall detector                                                           */
/* ------------------------------------------------------------------------ */

/* What the stall detector saw: one callback that ran longer than the threshold. */
typedef struct hk_stall_info {
    uint64_t duration_ns;  /* how long the callback ran */
    uint64_t cpu_ns;       /* thread CPU time from the iteration's start to the callback's end */
    uint64_t threshold_ns; /* the configured threshold */
    const void *callback;  /* address of the callback that stalled */
    const char *symbol;    /* its name (dladdr: link executables with -rdynamic), or NULL */
    void *const *frames;   /* backtrace taken while it was still running */
    int nframes;           /* 0 when none could be taken */
    uint64_t suppressed;   /* stalls not reported since the last report (rate limit) */
} hk_stall_info_t;

typedef void (*hk_stall_cb)(hk_loop_t *loop, const hk_stall_info_t *info, void *arg);

#define HK_STALL_DEFAULT_NS (UINT64_C(25) * 1000 * 1000)

/*
 * Turns the stall detector on (threshold_ns > 0; HK_STALL_DEFAULT_NS is 25 ms)
 * or off (0). Every callback that runs longer than the threshold is counted in
 * hk_loop_stats().stalls; at most one per second is reported to cb (NULL:
 * a line on stderr; hark/log.h offers hk_log_stall_reporter), with a backtrace
 * taken by a timer signal while the callback was still running. Call on the
 * loop's thread. Costs, while on: two timer_settime calls per iteration that
 * runs callbacks, and two clock reads per callback. Errors: -EAGAIN/-ENOMEM
 * (no POSIX timer), -EINVAL (threshold below 1 ms).
 */
HK_API int hk_loop_stall_detect(hk_loop_t *loop, uint64_t threshold_ns, hk_stall_cb cb, void *arg);

#ifdef __cplusplus
}
#endif

#endif
