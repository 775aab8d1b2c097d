/*
 * hark/co.h: coroutines on an M:N scheduler.
 *
 * A runtime runs coroutines on N worker threads. Each worker has a bounded
 * run queue and a "run next" slot; a global queue takes overflow and work from
 * other threads, and idle workers steal half of a busy worker's queue. One
 * netpoller (an edge-triggered epoll set) is shared: a worker that runs out of
 * work blocks in it, the others park on a condition variable.
 *
 * Structured concurrency: every coroutine belongs to a scope. Closing a scope
 * cancels its coroutines (their blocking calls return -ECANCELED) and waits
 * for them to finish, so no coroutine outlives its scope.
 *
 * Blocking calls take an absolute CLOCK_MONOTONIC deadline in ns: 0 tries once,
 * HK_FOREVER never expires; -ETIMEDOUT when it passes, -ECANCELED when the
 * coroutine's scope is cancelled, -EINVAL for a deadline >= HK_DEADLINE_MAX
 * (other than HK_FOREVER), -ENOMEM if there was no memory to record the
 * deadline (the call then fails at once rather than wait without one).
 * Unless stated otherwise, the functions below must
 * be called from a coroutine (-EPERM otherwise).
 *
 * Errors: >= 0 on success, -errno on failure.
 */
#ifndef HARK_CO_H
#define HARK_CO_H

#include "hark/api.h"
#include "hark/loop.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hk_co hk_co_t;
typedef struct hk_co_runtime hk_co_runtime_t;
typedef struct hk_co_scope hk_co_scope_t;

/* The body of a coroutine; its return value is what hk_co_join() reports. */
typedef void *(*hk_co_fn)(void *arg);

/* ------------------------------------------------------------------------ */
/* Runtime                                                                  */
/* ------------------------------------------------------------------------ */

/* Default stack size of a coroutine (virtual; pages are committed when touched). */
#define HK_CO_STACK_DEFAULT ((size_t)64 * 1024)
#define HK_CO_STACK_MIN ((size_t)16 * 1024)

/* hk_co_runtime_options_t.stall_ns: no stall monitor. */
#define HK_CO_STALL_OFF UINT64_MAX

typedef struct hk_co_runtime_options {
    unsigned workers;  /* worker threads; 0 = the number of online CPUs */
    size_t stack_size; /* default stack size; 0 = HK_CO_STACK_DEFAULT */
    /*
     * The stall monitor: a coroutine that runs longer than stall_ns without
     * switching away (a long computation, a blocking call that was not
     * offloaded) holds its worker; the other workers steal its queue, and
     * the monitor reports it. 0 = HK_STALL_DEFAULT_NS (25 ms), at least 1 ms,
     * HK_CO_STALL_OFF = no monitor.
     */
    uint64_t stall_ns;
    /*
     * Called on the monitor's thread, at most once a second, while the
     * coroutine still runs (a stall the limit holds back is reported once
     * the second has passed if it still runs; one that ends first is
     * counted in the next report's suppressed): loop is NULL,
     * symbol is the coroutine's name, callback its function, duration_ns a
     * lower bound of how long it has run (reports come at most stall_ns / 4
     * late), cpu_ns the worker's CPU time over that span (close to
     * duration_ns: computing; small: blocked), frames/nframes the
     * coroutine's backtrace taken on its worker by a signal (SIGRTMAX - 2)
     * while it ran, or 0 frames when the worker did not answer within 5 ms
     * or had switched away (docs/co.md). Must not block for long. NULL: a
     * line on stderr, with the backtrace.
     */
    hk_stall_cb stall_cb;
    void *stall_arg;
} hk_co_runtime_options_t;

/*
 * Creates a runtime and starts its workers. opts may be NULL. Call from any
 * thread that is not a worker. Errors: -EINVAL (stack size below
 * HK_CO_STACK_MIN, stall_ns below 1 ms), -ENOMEM, -EAGAIN (no threads),
 * -EMFILE.
 */
HK_API int hk_co_runtime_new(hk_co_runtime_t **rtp, const hk_co_runtime_options_t *opts);

/*
 * Stops the workers and frees the runtime. No hk_co_run() may be in progress
 * (-EBUSY), and it may not be called from a worker (-EPERM).
 */
HK_API int hk_co_runtime_free(hk_co_runtime_t *rt);

/*
 * Runs fn(arg) as a coroutine in a new root scope and blocks the calling
 * (non-worker) thread until it returns; then closes the root scope (cancels
 * and waits for every coroutine still in it). Stores fn's result in *result if
 * result is not NULL. Thread-safe. Errors: -EPERM (called from a worker),
 * -ENOMEM.
 */
HK_API int hk_co_run(hk_co_runtime_t *rt, hk_co_fn fn, void *arg, void **result);

/* Number of workers of a runtime. Thread-safe. */
HK_API unsigned hk_co_runtime_workers(const hk_co_runtime_t *rt);

/* Counters of a runtime (approximate while it runs). Thread-safe. */
typedef struct hk_co_runtime_stats {
    uint64_t spawned;    /* coroutines created */
    uint64_t switches;   /* switches into a coroutine */
    uint64_t steals;     /* steal operations that moved work */
    uint64_t migrations; /* coroutines taken from another worker's queue */
    uint64_t polls;      /* netpoller calls */
    uint64_t parks;      /* times a worker went to sleep */
    uint64_t stalls;     /* coroutines seen running longer than stall_ns (reported or not) */
} hk_co_runtime_stats_t;

HK_API int hk_co_runtime_stats(const hk_co_runtime_t *rt, hk_co_runtime_stats_t *out);

/* ------------------------------------------------------------------------ */
/* Coroutines                                                               */
/* ------------------------------------------------------------------------ */

/*
 * HK_CO_UNGUARDED: no PROT_NONE guard page below the stack. Each guarded stack
 * costs two kernel memory mappings and Linux allows 65530 per process by
 * default (vm.max_map_count), so about 30,000 guarded coroutines can exist at
 * once; unguarded stacks merge into few mappings. Use for many small,
 * well-understood coroutines only: an overflow then corrupts memory silently.
 */
#define HK_CO_UNGUARDED 0x1u

typedef struct hk_co_attr {
    const char *name;  /* copied (up to 31 bytes); NULL = "co-<id>" */
    size_t stack_size; /* 0 = the runtime's default; rounded up to pages */
    unsigned flags;    /* HK_CO_UNGUARDED */
} hk_co_attr_t;

/*
 * Starts fn(arg) as a coroutine in scope (NULL: the calling coroutine's
 * scope). With cop non-NULL the caller gets a handle and must hk_co_join() or
 * hk_co_detach() it; with NULL the coroutine is detached. Errors: -EINVAL,
 * -ECANCELED (the scope is cancelled or closing; fn never runs), -ENOMEM,
 * -EPERM (not in a coroutine and scope is NULL).
 */
HK_API int hk_co_spawn(hk_co_scope_t *scope, hk_co_fn fn, void *arg, const hk_co_attr_t *attr,
                       hk_co_t **cop);

/*
 * Waits until co returns, stores its result in *result (may be NULL) and
 * releases the handle. On -ETIMEDOUT or -ECANCELED the handle stays valid.
 * Errors: -EDEADLK (joining oneself).
 */
HK_API int hk_co_join(hk_co_t *co, void **result, uint64_t deadline);

/* Releases a handle without waiting; the coroutine runs on. Thread-safe. */
HK_API void hk_co_detach(hk_co_t *co);

/*
 * Requests cancellation of one coroutine: its current and future blocking
 * calls return -ECANCELED. Thread-safe; the handle must be valid.
 */
HK_API void hk_co_cancel(hk_co_t *co);

/* The calling coroutine, or NULL outside coroutines. */
HK_API hk_co_t *hk_co_self(void);

/* Name of a coroutine (valid while its handle is, or while it runs). */
HK_API const char *hk_co_name(const hk_co_t *co);

/* Non-zero if the calling coroutine has been cancelled. */
HK_API int hk_co_cancelled(void);

/* Lets other runnable coroutines run. Returns 0 or -EPERM. */
HK_API int hk_co_yield(void);

/*
 * Sleeps until the absolute deadline. Returns 0 once it has passed,
 * -ECANCELED when cancelled first, -EINVAL for a bad deadline.
 */
HK_API int hk_co_sleep_until(uint64_t deadline);

/* ------------------------------------------------------------------------ */
/* Scopes                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Creates a scope nested in the calling coroutine's scope: cancelling the
 * parent cancels it too. Errors: -ENOMEM, -ECANCELED, -EPERM.
 */
HK_API int hk_co_scope_new(hk_co_scope_t **scopep);

/* Cancels every coroutine of the scope and of its nested scopes. Thread-safe. */
HK_API void hk_co_scope_cancel(hk_co_scope_t *scope);

/*
 * Waits until every coroutine of the scope has returned (new ones may still
 * be spawned meanwhile). Errors: -ETIMEDOUT, -ECANCELED.
 */
HK_API int hk_co_scope_wait(hk_co_scope_t *scope, uint64_t deadline);

/*
 * Cancels the scope, waits for all its coroutines to finish (even if the
 * caller itself is cancelled: nothing outlives its scope) and frees it. Nested
 * scopes must have been closed first (-EBUSY); a coroutine of the scope
 * cannot close it (-EDEADLK). Either error leaves the scope as it was.
 */
HK_API int hk_co_scope_close(hk_co_scope_t *scope);

/* ------------------------------------------------------------------------ */
/* I/O on non-blocking fds (the netpoller)                                  */
/* ------------------------------------------------------------------------ */

/*
 * Waits until fd is readable and/or writable (HK_READABLE, HK_WRITABLE).
 * Returns the ready bits (may include HK_ERROR, HK_HANGUP). fd is registered
 * with the netpoller on first use and stays registered: close it with
 * hk_co_close(). One coroutine at a time may wait for each direction of an
 * fd (-EBUSY). Errors: -EBADF, -EINVAL, -ETIMEDOUT, -ECANCELED.
 */
HK_API int hk_co_wait_fd(int fd, unsigned events, uint64_t deadline);

/*
 * Unregisters fd from the netpoller (waiters, and waits that start before
 * it returns, get -EBADF) and closes it. Callable from any thread. Returns
 * close()'s result.
 */
HK_API int hk_co_close(int fd);

/*
 * As the system calls of the same names, on non-blocking fds: when the call
 * would block, the coroutine parks until the fd is ready. -errno on failure.
 */
HK_API ssize_t hk_co_read(int fd, void *buf, size_t len, uint64_t deadline);
HK_API ssize_t hk_co_write(int fd, const void *buf, size_t len, uint64_t deadline);
HK_API ssize_t hk_co_readv(int fd, const struct iovec *iov, int iovcnt, uint64_t deadline);
HK_API ssize_t hk_co_writev(int fd, const struct iovec *iov, int iovcnt, uint64_t deadline);
HK_API ssize_t hk_co_recv(int fd, void *buf, size_t len, int flags, uint64_t deadline);
HK_API ssize_t hk_co_send(int fd, const void *buf, size_t len, int flags, uint64_t deadline);
HK_API ssize_t hk_co_sendfile(int out_fd, int in_fd, off_t *offset, size_t count,
                              uint64_t deadline);
/* Writes all len bytes (partial progress is lost on error). */
HK_API ssize_t hk_co_write_all(int fd, const void *buf, size_t len, uint64_t deadline);
/* The accepted socket is non-blocking and close-on-exec. */
HK_API int hk_co_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, uint64_t deadline);
/*
 * Connects a non-blocking socket; returns 0 once connected. After -ETIMEDOUT
 * or -ECANCELED (or with deadline 0) the connection attempt goes on in the
 * kernel: close the fd, or wait for it with hk_co_wait_fd(fd, HK_WRITABLE)
 * and read SO_ERROR; calling hk_co_connect again gives -EALREADY or -EISCONN.
 */
HK_API int hk_co_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, uint64_t deadline);

/*
 * Runs fn(arg) on the thread pool (hark/pool.h, class HK_WORK_SLOW) and parks
 * the coroutine meanwhile; stores fn's result in *result. Neither deadline
 * nor cancellation can interrupt fn, so the coroutine always waits for it.
 * Errors: -ENOMEM, -ESHUTDOWN.
 */
HK_API int hk_co_blocking(hk_co_fn fn, void *arg, void **result);

/* ------------------------------------------------------------------------ */
/* Channels                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct hk_chan hk_chan_t;

/*
 * A channel of elements of elem_size bytes (1..65536) with capacity buffered
 * elements (0 = unbuffered: a send waits for a receiver). Thread-safe, and
 * callable from any thread: with deadline 0 (-ETIMEDOUT when the call would
 * block); with another deadline only from coroutines (-EPERM otherwise).
 */
HK_API int hk_chan_new(hk_chan_t **chp, size_t elem_size, size_t capacity);

/* Frees a channel; no coroutine may be waiting on it. */
HK_API void hk_chan_free(hk_chan_t *ch);

/*
 * Closes a channel: waiting and later senders get -EPIPE; receivers drain the
 * buffer, then get -EPIPE. Returns 0 or -EALREADY.
 */
HK_API int hk_chan_close(hk_chan_t *ch);

/*
 * Copies elem_size bytes from elem into the channel / out of it into elem. A
 * receive with elem NULL takes the element and discards it; a send needs
 * one (-EINVAL). Errors: -EPIPE (closed), -ETIMEDOUT, -ECANCELED, -EINVAL.
 */
HK_API int hk_chan_send(hk_chan_t *ch, const void *elem, uint64_t deadline);
HK_API int hk_chan_recv(hk_chan_t *ch, void *elem, uint64_t deadline);

/* Buffered elements now. */
HK_API size_t hk_chan_len(hk_chan_t *ch);

typedef enum hk_chan_op { HK_CHAN_SEND = 1, HK_CHAN_RECV = 2 } hk_chan_op_t;

typedef struct hk_chan_case {
    hk_chan_t *chan; /* NULL: the case is ignored */
    hk_chan_op_t op;
    void *elem; /* source (send) or destination (recv; NULL discards) */
    int status; /* out: 0, or -EPIPE when the channel was closed */
} hk_chan_case_t;

/* Most cases of one select. */
#define HK_CHAN_SELECT_MAX 64

/*
 * Performs exactly one of the cases that can proceed (chosen at random among
 * ready ones), waiting until one can. Returns its index; that case's status
 * says whether it completed (0) or found its channel closed (-EPIPE).
 * Errors: -EINVAL (n is 0 or above HK_CHAN_SELECT_MAX, bad op, a send case
 * without elem), -ETIMEDOUT, -ECANCELED.
 */
HK_API int hk_chan_select(hk_chan_case_t *cases, size_t n, uint64_t deadline);

/* ------------------------------------------------------------------------ */
/* Mutex, condition, semaphore, wait group                                  */
/* ------------------------------------------------------------------------ */

/*
 * These are structs the caller embeds; fields starting with _ are private.
 * Initialise with the init function (or zero the struct); no destroy is
 * needed once nobody waits. They park coroutines, never threads.
 */
struct hk__co_waitq {
    void *_head, *_tail;
};

typedef struct hk_co_mutex {
    int _lock;
    int _locked;
    struct hk__co_waitq _waiters;
} hk_co_mutex_t;

HK_API void hk_co_mutex_init(hk_co_mutex_t *m);
/* Errors: -ETIMEDOUT, -ECANCELED. The lock is handed over in FIFO order. */
HK_API int hk_co_mutex_lock(hk_co_mutex_t *m, uint64_t deadline);
/* Returns 0, or -EPERM if not locked. */
HK_API int hk_co_mutex_unlock(hk_co_mutex_t *m);

typedef struct hk_co_cond {
    int _lock;
    struct hk__co_waitq _waiters;
} hk_co_cond_t;

HK_API void hk_co_cond_init(hk_co_cond_t *c);
/*
 * Unlocks m, waits for a signal, and locks m again before returning, whatever
 * the result (re-locking ignores deadline and cancellation). Spurious wake-ups
 * are possible. Errors: -ETIMEDOUT, -ECANCELED, -EPERM (m is not locked, or
 * the caller is not a coroutine: no wait, and m stays as it was).
 */
HK_API int hk_co_cond_wait(hk_co_cond_t *c, hk_co_mutex_t *m, uint64_t deadline);
/* Wake one or every waiter; callable from any thread. */
HK_API void hk_co_cond_signal(hk_co_cond_t *c);
HK_API void hk_co_cond_broadcast(hk_co_cond_t *c);

typedef struct hk_co_sem {
    int _lock;
    uint64_t _count;
    struct hk__co_waitq _waiters;
} hk_co_sem_t;

HK_API void hk_co_sem_init(hk_co_sem_t *s, uint64_t count);
/* Errors: -ETIMEDOUT, -ECANCELED. */
HK_API int hk_co_sem_acquire(hk_co_sem_t *s, uint64_t deadline);
/* Callable from any thread. */
HK_API void hk_co_sem_release(hk_co_sem_t *s);

typedef struct hk_co_wg {
    int _lock;
    int64_t _count;
    struct hk__co_waitq _waiters;
} hk_co_wg_t;

HK_API void hk_co_wg_init(hk_co_wg_t *wg);
/*
 * Adds delta (may be negative); -EINVAL if the counter would go below 0 or
 * above INT64_MAX. Any thread.
 */
HK_API int hk_co_wg_add(hk_co_wg_t *wg, int64_t delta);
HK_API int hk_co_wg_done(hk_co_wg_t *wg);
/* Waits until the counter is 0. Errors: -ETIMEDOUT, -ECANCELED. */
HK_API int hk_co_wg_wait(hk_co_wg_t *wg, uint64_t deadline);

#ifdef __cplusplus
}
#endif

#endif
