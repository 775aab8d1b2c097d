/*
 * hark/pool.h: a thread pool for work that would block a loop.
 *
 * Worker threads are shared by all the loops of a process. Work is submitted
 * from a loop thread with a function to run on a worker and a callback that
 * runs back on the submitting loop when the work is done; completions reach
 * the loop through its async wake-up, one wake-up per batch.
 *
 * Work has a class, and each class has a cap on the workers it may occupy at
 * once, so slow work can never take every thread: with libuv's single queue,
 * four slow getaddrinfo calls stall every file read of the process. Classes
 * are served in priority order (HK_WORK_FAST first) whenever their cap
 * allows.
 */
#ifndef HARK_POOL_H
#define HARK_POOL_H

#include "hark/api.h"
#include "hark/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hk_work_class {
    HK_WORK_FAST = 0, /* short file operations: open, stat, read of cached data */
    HK_WORK_SLOW = 1, /* anything that may take long: DNS fallback, user jobs, fsync */
    HK_WORK_CLASSES = 2,
} hk_work_class_t;

typedef struct hk_pool hk_pool_t;

typedef struct hk_pool_options {
    /* Worker threads; 0 = the number of online CPUs, at least 4. */
    unsigned threads;
    /*
     * Workers each class may occupy at once; 0 = the default: every worker for
     * HK_WORK_FAST, half of them (at least 1, at most threads - 1) for
     * HK_WORK_SLOW, so with two or more workers at least one is always free
     * for fast work (a pool of one worker cannot promise that).
     */
    unsigned cap[HK_WORK_CLASSES];
    /*
     * Scheduling priority of the workers relative to the process (a nice
     * increment, 0..19). Workers copying data compete with loop threads for
     * the CPU; a loop thread that waits for a core delays every fd it serves,
     * a worker that waits delays one request. 0 = the default, 5 (a loop
     * thread then gets about three times a busy worker's share of a core);
     * -1 keeps the process's priority.
     */
    int nice;
} hk_pool_options_t;

/*
 * Creates a pool and starts its workers (they block every signal, so signals
 * stay with the loops' signalfds). opts may be NULL for the defaults.
 * Errors: -EINVAL (a cap larger than threads), -ENOMEM, -EAGAIN (no threads).
 */
HK_API int hk_pool_new(hk_pool_t **poolp, const hk_pool_options_t *opts);

/*
 * Stops the workers after the work they are running; queued work completes
 * with -ECANCELED on its loop. Returns -EBUSY (and does nothing) when called
 * on the default pool or from a worker thread.
 */
HK_API int hk_pool_free(hk_pool_t *pool);

/*
 * The process-wide pool, created on first use with the default options (or
 * with HARK_POOL_THREADS workers if that environment variable is set).
 * Returns NULL only if it cannot be created. Thread-safe. In a fork child the
 * first call creates the child's own default pool (the parent's workers do
 * not exist there); pools from hk_pool_new must not be used in the child.
 */
HK_API hk_pool_t *hk_pool_default(void);

/* Number of workers, and the cap of a class. */
HK_API unsigned hk_pool_threads(const hk_pool_t *pool);
HK_API unsigned hk_pool_cap(const hk_pool_t *pool, hk_work_class_t cls);

/* ------------------------------------------------------------------------ */
/* Work requests                                                            */
/* ------------------------------------------------------------------------ */

typedef struct hk_work hk_work_t;

/* Runs on a worker thread. Must not touch the loop (except hk_async_send). */
typedef void (*hk_work_fn)(hk_work_t *work);

/*
 * Runs on the submitting loop's thread when the work is over: status 0 when
 * work_fn ran, -ECANCELED when it was cancelled before it started.
 */
typedef void (*hk_work_done_cb)(hk_work_t *work, int status);

struct hk_work {
    void *data;      /* free for the caller */
    hk_loop_t *loop; /* read-only: the submitting loop */
    hk_work_fn _fn;
    hk_work_done_cb _done;
    hk_pool_t *_pool;
    struct hk_work *_prev, *_next;
    int _class;
    int _state;
    int _status;
};

/*
 * Queues work on pool (NULL: hk_pool_default()). The caller owns the struct,
 * zeroes it before its first submission (hk_work_t w = {0}), and keeps it
 * valid until done runs; it may be submitted again from done. While work is outstanding the loop
 * stays alive (hk_loop_run does not return). Errors: -EINVAL (bad class or
 * NULL function), -EBUSY (this struct is already submitted), -ESHUTDOWN (the
 * pool is being freed), -ENOMEM.
 */
HK_API int hk_work_submit(hk_loop_t *loop, hk_pool_t *pool, hk_work_t *work, hk_work_class_t cls,
                          hk_work_fn fn, hk_work_done_cb done);

/*
 * Cancels queued work: its done callback runs later on the loop with
 * -ECANCELED and work_fn never runs. Returns 0; -EBUSY when the work is
 * running, finished or already cancelled but its done callback has not run
 * yet (done reports what happened: 0, or -ECANCELED); -EINVAL when it is not
 * submitted (never, or its done callback has run). Safe after hk_pool_free.
 * Call on the submitting loop's thread.
 */
HK_API int hk_work_cancel(hk_work_t *work);

/* Counters of a pool (approximate while workers run). */
typedef struct hk_pool_stats {
    uint64_t submitted[HK_WORK_CLASSES];
    uint64_t completed[HK_WORK_CLASSES];
    uint64_t cancelled[HK_WORK_CLASSES];
    unsigned running[HK_WORK_CLASSES];
    unsigned queued[HK_WORK_CLASSES];
} hk_pool_stats_t;

HK_API int hk_pool_stats(hk_pool_t *pool, hk_pool_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
