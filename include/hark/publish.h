/*
 * hark/publish.h: one shared object (a configuration, a routing table), many
 * loops reading it without locks, one writer replacing it now and then.
 *
 * The writer publishes a new version with hk_publish_set from any thread.
 * Readers on loop threads take the current version with hk_publish_get: one
 * atomic load, no lock, no reference count. Replaced versions are handed to
 * the object's free function once every reading loop has passed a quiescent
 * state (RCU, liburcu's QSBR flavour): here, once each of them has finished
 * the loop iteration it was in. A loop sleeping in epoll is not reading, so it
 * never delays that. Loops that subscribe are woken through their eventfd and
 * run a callback with the newest version; publications in a row coalesce.
 *
 * Rules:
 * - A version returned by hk_publish_get, or passed to a subscriber callback,
 *   stays valid until the loop's current iteration ends (until it next sleeps
 *   in epoll). To keep it longer (a connection that must finish with the
 *   configuration it started with), take your own reference inside it, for
 *   example a reference count that your free function respects.
 * - Versions are read-only once published.
 * - Threads: hk_publish_set may be called from any thread; hk_publish_get,
 *   hk_publish_attach, hk_publish_subscribe and hk_publish_unsubscribe on the
 *   loop's own thread. Each function says so below. Nothing here is
 *   async-signal-safe: publish from a thread (an hk_signal_t callback), not a
 *   signal handler.
 *
 * Errors: functions return >= 0 on success and -errno on failure; a call that
 * fails changes nothing.
 */
#ifndef HARK_PUBLISH_H
#define HARK_PUBLISH_H

#include "hark/api.h"
#include "hark/loop.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hk_publish hk_publish_t;
typedef struct hk_subscriber hk_subscriber_t;

/*
 * Frees a version that no reader can see any more. It runs on liburcu's
 * call_rcu thread, or on the thread of an hk_publish_set that had to wait
 * (see HK_PUBLISH_MAX_PENDING); it must not call hk_publish_* functions.
 */
typedef void (*hk_publish_free_fn)(void *version, void *arg);

/*
 * Old versions of one object waiting for their grace period, at most. Beyond
 * this, hk_publish_set waits for a grace period itself and frees the version
 * it replaced before returning, so a writer faster than reclamation cannot
 * make memory grow: live versions stay below this plus a few.
 */
#define HK_PUBLISH_MAX_PENDING 128

/*
 * Creates a published object with no version yet (hk_publish_get returns
 * NULL). free_fn (may be NULL: versions are not freed) receives every version
 * that was replaced, and arg. Any thread.
 * Errors: -ENOMEM.
 */
HK_API int hk_publish_new(hk_publish_t **pubp, hk_publish_free_fn free_fn, void *arg);

/*
 * Publishes version (may be NULL) as the current one and wakes every
 * subscriber. The version it replaces goes to free_fn after a grace period:
 * asynchronously, on liburcu's call_rcu thread (about 10 ms later), unless
 * HK_PUBLISH_MAX_PENDING old versions are already waiting; then this call
 * waits for one grace period (until each reading loop has finished its
 * current iteration) and frees it synchronously.
 * Thread-safe: any thread, including a loop thread. Concurrent setters are
 * allowed (the last swap wins). Errors: -EINVAL (pub NULL), -ENOMEM, -EAGAIN
 * (called from a callback of an attached loop while HK_PUBLISH_MAX_PENDING
 * versions wait: such a caller may still hold the version it would replace
 * and must not block; publish again from a later callback). Nothing changes
 * on error.
 */
HK_API int hk_publish_set(hk_publish_t *pub, void *version);

/*
 * The current version, or NULL. One atomic load. Call only on a loop thread
 * attached with hk_publish_attach (subscribing attaches), from a callback of
 * that loop: the pointer stays valid until the loop's iteration ends.
 */
HK_API void *hk_publish_get(hk_publish_t *pub);

/*
 * Number of versions published so far (0 before the first hk_publish_set).
 * Any thread.
 */
HK_API uint64_t hk_publish_count(const hk_publish_t *pub);

/*
 * Frees the object. The current version goes to free_fn after a grace period,
 * like any replaced one. Nothing may use pub afterwards: no reader may call
 * hk_publish_get on it again, no setter may be running. Any thread.
 * Errors: -EINVAL (NULL), -EBUSY (subscribers left: unsubscribe them first).
 */
HK_API int hk_publish_free(hk_publish_t *pub);

/*
 * Waits until every version handed over for reclamation so far (by any
 * object) has gone to its free function. For shutdown and tests: it blocks
 * for one reclamation round (tens of milliseconds), so do not call it from a
 * loop that must stay responsive. Any thread, except inside a free function.
 * Errors: -EDEADLK (called from a callback of an attached loop, whose reads
 * it would end).
 */
HK_API int hk_publish_barrier(void);

/*
 * Makes the calling thread a reader for loop, which must be this thread's
 * loop: registers the thread with liburcu-qsbr and makes the loop report a
 * quiescent state each iteration (the thread is offline while the loop
 * sleeps in epoll and outside hk_loop_run). Registration ends in
 * hk_loop_free, which must then run on this thread. Attaching a loop twice
 * is a no-op. Several attached loops of one thread must not run nested (one
 * inside another's callback).
 * Errors: -EINVAL (NULL), -EXDEV (the loop was attached on another thread),
 * -ENOMEM.
 */
HK_API int hk_publish_attach(hk_loop_t *loop);

/*
 * A subscriber: a struct you embed; its first member is an async handle, so
 * (hk_handle_t *)sub is its handle (hk_unref on it makes the subscription not
 * keep hk_loop_run going). Fields starting with _ are private.
 */
typedef void (*hk_subscriber_cb)(hk_subscriber_t *sub, void *version);
typedef void (*hk_subscriber_close_cb)(hk_subscriber_t *sub);

struct hk_subscriber {
    hk_async_t _async;     /* first member: the eventfd wake-up */
    void *data;            /* free for the caller */
    hk_publish_t *publish; /* read-only */
    hk_subscriber_cb _cb;
    hk_subscriber_close_cb _close_cb;
    uint64_t _seen; /* sequence number of the last version delivered */
    hk_subscriber_t *_prev, *_next;
};

/*
 * Starts a subscription (init + start): cb runs on loop with the current
 * version (if one was published), then again after each publication, always
 * with the newest version: publications made before the callback runs
 * coalesce into one call, and a version is never delivered twice. version is
 * NULL only if the writer published NULL. Attaches loop (hk_publish_attach).
 * On the loop's thread. Errors: -EINVAL (NULL argument), -EXDEV, -ENOMEM.
 */
HK_API int hk_publish_subscribe(hk_publish_t *pub, hk_loop_t *loop, hk_subscriber_t *sub,
                                hk_subscriber_cb cb);

/*
 * Ends a subscription (stop + close): no callback runs after this call; cb
 * (may be NULL) runs from the loop once the struct may be reused or freed.
 * On the loop's thread. Unsubscribing twice is misuse.
 */
HK_API void hk_publish_unsubscribe(hk_subscriber_t *sub, hk_subscriber_close_cb cb);

#ifdef __cplusplus
}
#endif

#endif
