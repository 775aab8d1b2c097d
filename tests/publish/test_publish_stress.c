/*
 * Readers never see a freed version, and memory does not grow.
 *
 * Four reader loops, one thread each, dereference the current version all the
 * time while one writer publishes 100,000 versions as fast as it can and the
 * replaced ones are freed: one reader spins (an idle hook: it never sleeps),
 * the others read from a 50 us timer and from their subscriber callback. Each
 * version carries a magic value that its free function poisons before
 * free(): a reader that saw a freed version would read the poison, and in the
 * ASan build the read itself aborts the test. The free function also counts
 * the versions alive; the writer records the largest count it saw, which
 * HK_PUBLISH_MAX_PENDING bounds however fast it publishes.
 */
#include "util.h"

#include <pthread.h>
#include <sched.h>

enum { READERS = 4, PUBLICATIONS = 100000, READS_PER_VISIT = 64 };

typedef struct reader {
    hk_publish_t *pub;
    int spin; /* idle hook instead of a timer */
    pthread_t th;
    hk_loop_t *loop;
    hk_subscriber_t sub;
    hk_timer_t timer;
    hk_hook_t idle;
    hk_async_t stop;
    atomic_int ready;
    atomic_ulong last_delivered; /* num of the last version the subscriber got */
    long bad;                    /* versions that failed the check */
    long out_of_order;           /* deliveries not newer than the previous one */
    long visits, deliveries;
} reader_t;

static void read_current(reader_t *r)
{
    version_t *v = hk_publish_get(r->pub);
    if (!v)
        return;
    for (int i = 0; i < READS_PER_VISIT; i++)
        if (!version_ok(v))
            r->bad++;
    r->visits++;
}

static void on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    read_current(t->base.data);
}

static void on_idle(hk_hook_t *h)
{
    read_current(h->base.data);
}

static void on_version(hk_subscriber_t *sub, void *version)
{
    reader_t *r = sub->data;
    version_t *v = version;
    if (!version_ok(v))
        r->bad++;
    if (v->num <= atomic_load(&r->last_delivered))
        r->out_of_order++;
    atomic_store(&r->last_delivered, v->num);
    r->deliveries++;
}

static void on_stop(hk_async_t *a)
{
    reader_t *r = a->base.data;
    hk_publish_unsubscribe(&r->sub, NULL);
    hk_close(r->spin ? &r->idle.base : &r->timer.base, NULL);
    hk_close(&a->base, NULL);
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    hk_loop_t *loop = loop_new();
    cr_assert_eq(hk_publish_subscribe(r->pub, loop, &r->sub, on_version), 0);
    r->sub.data = r;
    cr_assert_eq(hk_async_init(loop, &r->stop, on_stop), 0);
    r->stop.base.data = r;
    if (r->spin) {
        cr_assert_eq(hk_hook_init(loop, &r->idle, HK_HOOK_IDLE), 0);
        r->idle.base.data = r;
        cr_assert_eq(hk_hook_start(&r->idle, on_idle), 0);
    } else {
        cr_assert_eq(hk_timer_init(loop, &r->timer), 0);
        r->timer.base.data = r;
        cr_assert_eq(hk_timer_start_in(&r->timer, on_timer, 0, 50 * 1000), 0);
    }
    atomic_store(&r->ready, 1);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    loop_finish(loop);
    return NULL;
}

Test(publish_stress, readers_never_see_a_freed_version_and_memory_stays_bounded)
{
    static reader_t readers[READERS];
    counts_t c = {0};
    hk_publish_t *pub = publish_new(&c);
    cr_assert_eq(hk_publish_set(pub, version_new(&c, 1)), 0);
    for (int i = 0; i < READERS; i++) {
        readers[i].pub = pub;
        readers[i].spin = i == 0;
        cr_assert_eq(pthread_create(&readers[i].th, NULL, reader_main, &readers[i]), 0);
    }
    for (int i = 0; i < READERS; i++)
        while (!atomic_load(&readers[i].ready))
            sched_yield();

    long max_live = 0;
    for (uint64_t n = 2; n <= PUBLICATIONS; n++) {
        int r = hk_publish_set(pub, version_new(&c, n));
        cr_assert_eq(r, 0, "hk_publish_set #%llu: %s", (unsigned long long)n, hk_err_name(r));
        long live = atomic_load(&c.live);
        if (live > max_live)
            max_live = live;
    }
    /* Every subscriber gets the last version (a later wake-up is never lost). */
    for (int i = 0; i < READERS; i++)
        while (atomic_load(&readers[i].last_delivered) != PUBLICATIONS)
            sched_yield();
    for (int i = 0; i < READERS; i++) {
        hk_async_send(&readers[i].stop);
        pthread_join(readers[i].th, NULL);
    }

    long visits = 0, deliveries = 0;
    for (int i = 0; i < READERS; i++) {
        cr_assert_eq(readers[i].bad, 0, "reader %d saw %ld damaged or freed versions", i,
                     readers[i].bad);
        cr_assert_eq(readers[i].out_of_order, 0, "reader %d got a version twice", i);
        visits += readers[i].visits;
        deliveries += readers[i].deliveries;
    }
    cr_assert_gt(visits, 0);
    cr_assert_leq(deliveries, (long)READERS * PUBLICATIONS);
    /* current + queued (the cap) + one being freed synchronously + one being published */
    cr_assert_leq(max_live, HK_PUBLISH_MAX_PENDING + 3, "live versions peaked at %ld", max_live);
    cr_assert_eq(hk_publish_count(pub), PUBLICATIONS);

    cr_assert_eq(hk_publish_free(pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.live), 0, "every version freed at the end");
    cr_assert_eq(atomic_load(&c.freed), PUBLICATIONS);
    cr_assert_eq(atomic_load(&c.bad_frees), 0);
    cr_log_info("publish_stress: max_live=%ld visits=%ld deliveries=%ld", max_live, visits,
                deliveries);
}
