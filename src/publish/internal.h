/* Private parts of publish: the version record, the object, the reader side's helpers. */
#ifndef HK_PUBLISH_INTERNAL_H
#define HK_PUBLISH_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <urcu-qsbr.h>

#include "hark/publish.h"

#if defined(__SANITIZE_THREAD__)
#define HK__PUBLISH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HK__PUBLISH_TSAN 1
#endif
#endif
#ifdef HK__PUBLISH_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/*
 * One publication: what hk_publish_t.current points to. Wrapping the user's
 * pointer costs readers one more load, and buys a sequence number that is
 * read together with the version, so a subscriber never gets the same
 * version twice, even when a freed version's address comes back for a new one.
 */
struct hk__version {
    struct rcu_head rcu; /* call_rcu's node */
    void *version;
    uint64_t seq;
    hk_publish_t *pub;
};

struct hk_publish {
    struct hk__version *current; /* atomic: release by setters, acquire by readers */
    hk_publish_free_fn free_fn;
    void *arg;
    uint64_t seq;         /* atomic: versions published */
    unsigned pending;     /* atomic: retired versions queued on call_rcu */
    unsigned refs;        /* atomic: 1 for the owner + 1 per retired version not yet freed */
    pthread_mutex_t lock; /* the subscriber list */
    hk_subscriber_t *subs;
};

/*
 * ThreadSanitizer cannot see liburcu's grace periods (its code is not
 * instrumented, and it orders memory with fences and futexes), so it would
 * report every free of a version as a race with the readers' loads. We tell
 * it what the grace period guarantees: each reader releases a shared token
 * when it goes offline (every loop iteration), and reclamation acquires it
 * after the grace period, so every read of the version happens before its
 * free. The same pair on a version record covers its trip through call_rcu's
 * queue. Outside TSan builds these are empty.
 */
static inline void hk__tsan_release(void *addr)
{
#ifdef HK__PUBLISH_TSAN
    __tsan_release(addr);
#else
    (void)addr;
#endif
}

static inline void hk__tsan_acquire(void *addr)
{
#ifdef HK__PUBLISH_TSAN
    __tsan_acquire(addr);
#else
    (void)addr;
#endif
}

/* attach.c */
void *hk__publish_gp_token(void);
bool hk__publish_online(void);
void hk__publish_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *head));

/* subscribe.c */
void hk__publish_notify(hk_publish_t *pub);

#endif
