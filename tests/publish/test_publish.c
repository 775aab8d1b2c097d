/*
 * hark/publish.h: the contract, one rule per test. Reclamation runs on
 * liburcu's call_rcu thread, so every test is threaded (label "threads": it
 * also runs under TSan). Nothing here asserts a duration: a reclamation that
 * must not happen is checked for while it cannot happen (a reader still holds
 * the version), and one that must happen is awaited with hk_publish_barrier.
 */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

/* ---- get and set from the callbacks of an attached loop ---------------- */

typedef struct basic {
    hk_publish_t *pub;
    counts_t *c;
    version_t *v1, *v2;
    void *got0, *got1, *got2;
    long freed_in_callback;
    int set1, set2;
} basic_t;

static void basic_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    basic_t *b = t->base.data;
    b->got0 = hk_publish_get(b->pub);
    b->set1 = hk_publish_set(b->pub, b->v1);
    b->got1 = hk_publish_get(b->pub);
    b->set2 = hk_publish_set(b->pub, b->v2);
    b->got2 = hk_publish_get(b->pub);
    /* v1 was replaced, but this thread is inside a callback: no grace period can end. */
    usleep(20 * 1000);
    b->freed_in_callback = atomic_load(&b->c->freed);
    hk_close(&t->base, NULL);
}

Test(publish, get_returns_the_newest_and_replaced_versions_are_freed)
{
    counts_t c = {0};
    basic_t b = {.pub = publish_new(&c), .c = &c};
    b.v1 = version_new(&c, 1);
    b.v2 = version_new(&c, 2);
    run_attached_once(basic_tick, &b);

    cr_assert_null(b.got0, "no version before the first set");
    cr_assert_eq(b.set1, 0);
    cr_assert_eq(b.set2, 0);
    cr_assert_eq(b.got1, b.v1);
    cr_assert_eq(b.got2, b.v2);
    cr_assert_eq(b.freed_in_callback, 0, "v1 freed while its reader's callback ran");
    cr_assert_eq(hk_publish_count(b.pub), 2);

    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), 1, "v1 freed once a grace period passed");
    cr_assert_eq(atomic_load(&c.last_freed), 1);
    cr_assert_eq(hk_publish_free(b.pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), 2, "hk_publish_free frees the current version");
    cr_assert_eq(atomic_load(&c.live), 0);
    cr_assert_eq(atomic_load(&c.bad_frees), 0);
}

/* ---- errors ----------------------------------------------------------- */

static void *attach_elsewhere(void *loop)
{
    return (void *)(intptr_t)hk_publish_attach(loop);
}

static void never_called(hk_subscriber_t *sub, void *version)
{
    (void)sub;
    (void)version;
    cr_assert_fail("subscriber callback ran");
}

Test(publish, errors)
{
    counts_t c = {0};
    cr_assert_eq(hk_publish_new(NULL, version_free, &c), -EINVAL);
    cr_assert_eq(hk_publish_set(NULL, NULL), -EINVAL);
    cr_assert_eq(hk_publish_free(NULL), -EINVAL);
    cr_assert_eq(hk_publish_attach(NULL), -EINVAL);

    hk_publish_t *pub = publish_new(&c);
    hk_loop_t *loop = loop_new();
    hk_subscriber_t sub;
    cr_assert_eq(hk_publish_subscribe(pub, loop, &sub, NULL), -EINVAL);
    cr_assert_eq(hk_publish_subscribe(NULL, loop, &sub, never_called), -EINVAL);
    cr_assert_eq(hk_publish_subscribe(pub, loop, &sub, never_called), 0);
    cr_assert_eq(hk_publish_free(pub), -EBUSY, "subscribers left");
    cr_assert_eq(hk_loop_free(loop), -EBUSY, "a subscription is an open handle");

    cr_assert_eq(hk_publish_attach(loop), 0, "attaching twice is a no-op");
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, attach_elsewhere, loop), 0);
    void *res;
    pthread_join(th, &res);
    cr_assert_eq((int)(intptr_t)res, -EXDEV, "the loop belongs to the thread that attached it");

    hk_publish_unsubscribe(&sub, NULL);
    loop_finish(loop);
    cr_assert_eq(hk_publish_free(pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), 0, "no version was ever published");
}

/* ---- a reader's version outlives its callback, not more --------------- */

typedef struct holder {
    hk_publish_t *pub;
    counts_t *c;
    atomic_int holding, released;
    long violations;
    uint64_t held_num;
} holder_t;

static void hold_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    holder_t *h = t->base.data;
    version_t *v = hk_publish_get(h->pub);
    h->held_num = v ? v->num : 0;
    atomic_store(&h->holding, 1);
    /* The writer replaces v meanwhile; v must stay intact until we return. */
    for (int i = 0; i < 100; i++) {
        usleep(2000);
        if (!v || !version_ok(v) || atomic_load(&h->c->freed) != 0)
            h->violations++;
    }
    atomic_store(&h->released, 1);
    hk_close(&t->base, NULL);
}

static void *holder_main(void *arg)
{
    holder_t *h = arg;
    run_attached_once(hold_tick, h);
    return NULL;
}

Test(publish, a_version_is_not_freed_while_a_reader_holds_it)
{
    counts_t c = {0};
    holder_t h = {.pub = publish_new(&c), .c = &c};
    cr_assert_eq(hk_publish_set(h.pub, version_new(&c, 1)), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, holder_main, &h), 0);
    while (!atomic_load(&h.holding))
        sched_yield();
    cr_assert_eq(hk_publish_set(h.pub, version_new(&c, 2)), 0, "from a thread with no loop");
    pthread_join(th, NULL);

    cr_assert_eq(h.held_num, 1);
    cr_assert_eq(h.violations, 0, "the held version was freed or damaged under its reader");
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), 1);
    cr_assert_eq(atomic_load(&c.last_freed), 1);
    cr_assert_eq(hk_publish_free(h.pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.live), 0);
}

/* ---- a loop asleep in epoll never delays a grace period --------------- */

typedef struct sleeper {
    hk_async_t stop;
    hk_hook_t check;
    atomic_long wakeups;
    atomic_int ready;
} sleeper_t;

static void sleeper_stop(hk_async_t *a)
{
    sleeper_t *s = a->base.data;
    hk_close(&s->check.base, NULL);
    hk_close(&a->base, NULL);
}

static void sleeper_woke(hk_hook_t *hook)
{
    sleeper_t *s = hook->base.data;
    atomic_fetch_add(&s->wakeups, 1);
}

static void *sleeper_main(void *arg)
{
    sleeper_t *s = arg;
    hk_loop_t *loop = loop_new();
    cr_assert_eq(hk_publish_attach(loop), 0);
    cr_assert_eq(hk_async_init(loop, &s->stop, sleeper_stop), 0);
    s->stop.base.data = s;
    cr_assert_eq(hk_hook_init(loop, &s->check, HK_HOOK_CHECK), 0);
    s->check.base.data = s;
    cr_assert_eq(hk_hook_start(&s->check, sleeper_woke), 0);
    atomic_store(&s->ready, 1);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    loop_finish(loop);
    return NULL;
}

Test(publish, a_sleeping_loop_does_not_delay_reclamation)
{
    counts_t c = {0};
    hk_publish_t *pub = publish_new(&c);
    sleeper_t s = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sleeper_main, &s), 0);
    while (!atomic_load(&s.ready))
        sched_yield();
    usleep(20 * 1000); /* most likely asleep in epoll by now; offline before that, too */
    long before = atomic_load(&s.wakeups);

    cr_assert_eq(hk_publish_set(pub, version_new(&c, 1)), 0);
    cr_assert_eq(hk_publish_set(pub, version_new(&c, 2)), 0);
    /* Would wait forever (test timeout) if the sleeping reader counted as online. */
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), 1);
    cr_assert_eq(atomic_load(&s.wakeups), before, "the reader loop was woken");

    hk_async_send(&s.stop);
    pthread_join(th, NULL);
    cr_assert_eq(hk_publish_free(pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.live), 0);
}

/* ---- subscribers ------------------------------------------------------ */

typedef struct subs {
    hk_publish_t *pub;
    counts_t *c;
    hk_subscriber_t sub;
    hk_timer_t timer;
    int calls, closed;
    int bursts; /* start the burst timer after the first delivery */
    uint64_t got[8];
} subs_t;

static void subs_burst(hk_timer_t *t, uint64_t expirations);

static void subs_got(hk_subscriber_t *sub, void *version)
{
    subs_t *s = sub->data;
    version_t *v = version;
    if (s->calls < 8)
        s->got[s->calls] = v ? v->num : 0;
    s->calls++;
    /* After the first delivery (the version current at subscription), the bursts begin. */
    if (s->calls == 1 && s->bursts)
        cr_assert_eq(hk_timer_start_in(&s->timer, subs_burst, 0, 1000 * 1000), 0);
}

static void subs_closed(hk_subscriber_t *sub)
{
    subs_t *s = sub->data;
    s->closed++;
}

/* Three publications within one callback: one subscriber call, with the third. */
static void subs_burst(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    subs_t *s = t->base.data;
    uint64_t first = s->calls == 1 ? 1 : 4;
    for (uint64_t n = first; n < first + 3; n++)
        cr_assert_eq(hk_publish_set(s->pub, version_new(s->c, n)), 0);
    if (first == 1)
        return; /* the timer repeats once more, after the subscriber's call */
    hk_publish_unsubscribe(&s->sub, subs_closed);
    hk_close(&t->base, NULL);
}

Test(publish, a_subscriber_gets_the_current_then_the_newest_once_per_burst)
{
    counts_t c = {0};
    subs_t s = {.pub = publish_new(&c), .c = &c, .bursts = 1};
    cr_assert_eq(hk_publish_set(s.pub, version_new(&c, 100)), 0, "current before subscribing");
    hk_loop_t *loop = loop_new();
    hk_timer_init(loop, &s.timer);
    s.timer.base.data = &s;
    s.sub.data = &s;
    cr_assert_eq(hk_publish_subscribe(s.pub, loop, &s.sub, subs_got), 0);
    cr_assert_eq(s.sub.data, &s, "subscribing leaves data alone");
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    loop_finish(loop);

    cr_assert_eq(s.calls, 2,
                 "the current version, then one call for a burst of three "
                 "(the second burst came after unsubscribing)");
    cr_assert_eq(s.got[0], 100);
    cr_assert_eq(s.got[1], 3);
    cr_assert_eq(s.closed, 1, "the close callback runs once");
    cr_assert_eq(hk_publish_count(s.pub), 7);
    cr_assert_eq(hk_publish_free(s.pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.live), 0);
    cr_assert_eq(atomic_load(&c.freed), 7);
}

static void unsub_then_set(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    subs_t *s = t->base.data;
    hk_publish_unsubscribe(&s->sub, subs_closed);
    cr_assert_eq(hk_publish_set(s->pub, version_new(s->c, 1)), 0);
    hk_close(&t->base, NULL);
}

Test(publish, no_callback_after_unsubscribe)
{
    counts_t c = {0};
    subs_t s = {.pub = publish_new(&c), .c = &c};
    hk_loop_t *loop = loop_new();
    s.sub.data = &s;
    cr_assert_eq(hk_publish_subscribe(s.pub, loop, &s.sub, subs_got), 0);
    hk_timer_init(loop, &s.timer);
    s.timer.base.data = &s;
    cr_assert_eq(hk_timer_start_in(&s.timer, unsub_then_set, 0, 0), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    loop_finish(loop);
    cr_assert_eq(s.calls, 0);
    cr_assert_eq(s.closed, 1);
    cr_assert_eq(hk_publish_free(s.pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.live), 0);
}

/* ---- the cap on versions waiting for reclamation ---------------------- */

typedef struct capped {
    hk_publish_t *pub;
    counts_t *c;
    int ok, last, barrier;
} capped_t;

static void capped_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    capped_t *k = t->base.data;
    for (uint64_t n = 1; n <= 2 * HK_PUBLISH_MAX_PENDING; n++) {
        version_t *v = version_new(k->c, n);
        k->last = hk_publish_set(k->pub, v);
        if (k->last < 0) {
            version_free(v, k->c); /* not published: still ours */
            atomic_fetch_sub(&k->c->freed, 1);
            break;
        }
        k->ok++;
    }
    k->barrier = hk_publish_barrier();
    hk_close(&t->base, NULL);
}

Test(publish, a_setter_inside_a_callback_gets_eagain_at_the_cap)
{
    counts_t c = {0};
    capped_t k = {.pub = publish_new(&c), .c = &c};
    run_attached_once(capped_tick, &k);

    /* No grace period can end inside the callback, so the queue only grows. */
    cr_assert_eq(k.ok, HK_PUBLISH_MAX_PENDING + 1);
    cr_assert_eq(k.last, -EAGAIN);
    cr_assert_eq(k.barrier, -EDEADLK, "a barrier inside a reader's callback");
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), HK_PUBLISH_MAX_PENDING);
    cr_assert_eq(hk_publish_free(k.pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.live), 0);
    cr_assert_eq(atomic_load(&c.bad_frees), 0);
}

/* ---- registration follows the loops of a thread ----------------------- */

static void *loops_in_turn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        hk_loop_t *loop = loop_new();
        cr_assert_eq(hk_publish_attach(loop), 0);
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
        loop_finish(loop);
    }
    return NULL;
}

Test(publish, loops_attach_in_turn_and_exited_threads_are_forgotten)
{
    /* A second registration of one thread would trip liburcu's assertions. */
    loops_in_turn(NULL);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, loops_in_turn, NULL), 0);
    pthread_join(th, NULL);
    /* A grace period must not wait for, or touch, the thread that exited. */
    counts_t c = {0};
    hk_publish_t *pub = publish_new(&c);
    cr_assert_eq(hk_publish_set(pub, version_new(&c, 1)), 0);
    cr_assert_eq(hk_publish_set(pub, version_new(&c, 2)), 0);
    cr_assert_eq(hk_publish_free(pub), 0);
    cr_assert_eq(hk_publish_barrier(), 0);
    cr_assert_eq(atomic_load(&c.freed), 2);
    cr_assert_eq(atomic_load(&c.live), 0);
}
