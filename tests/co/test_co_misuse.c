/*
 * The coroutine runtime at edges a review probed: which ready case a select
 * takes, and calls made the wrong way or from the wrong place (a condition
 * wait without the mutex, a scope closed by its own coroutine, an absurd
 * stack size, a wait group pushed past INT64_MAX, a try-once channel call off
 * the workers, a connect with a bad deadline, a send of nothing), which must
 * fail cleanly, or succeed, and leave things as they were; two coroutines
 * that wake each other, which must not keep their worker from everything
 * else; and a receive into NULL, which discards the element.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>

#include "co_check.h"
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- 1. a select takes each ready case about equally often ---- */

#define FAIR_ROUNDS 4000

/* Each channel holds one element; the select takes one, the loop puts it back. */
static int fair_counts(hk_chan_case_t *cases, size_t n, unsigned *counts)
{
    for (int round = 0; round < FAIR_ROUNDS; round++) {
        int i = hk_chan_select(cases, n, 0);
        if (i < 0 || (size_t)i >= n || cases[i].status != 0)
            return -1;
        counts[i]++;
        int v = 0;
        if (hk_chan_send(cases[i].chan, &v, 0) != 0)
            return -1;
    }
    return 0;
}

static void *select_fair_main(void *arg)
{
    (void)arg;
    hk_chan_t *a, *b, *empty;
    int v = 0, out;
    CHECK(hk_chan_new(&a, sizeof(int), 1) == 0);
    CHECK(hk_chan_new(&b, sizeof(int), 1) == 0);
    CHECK(hk_chan_new(&empty, sizeof(int), 1) == 0);
    CHECK(hk_chan_send(a, &v, 0) == 0);
    CHECK(hk_chan_send(b, &v, 0) == 0);

    /* Ignored (NULL) cases between the two ready ones. */
    hk_chan_case_t gaps[4] = {{a, HK_CHAN_RECV, &out, 0},
                              {NULL, 0, NULL, 0},
                              {NULL, 0, NULL, 0},
                              {b, HK_CHAN_RECV, &out, 0}};
    unsigned c1[4] = {0};
    CHECK(fair_counts(gaps, 4, c1) == 0);
    /* Even odds: 2000 each, one standard deviation 32; before, 1000 and 3000. */
    CHECK(c1[0] > FAIR_ROUNDS * 35 / 100 && c1[3] > FAIR_ROUNDS * 35 / 100);

    /* A case that is never ready after the two ready ones. */
    hk_chan_case_t blocked[3] = {
        {a, HK_CHAN_RECV, &out, 0}, {b, HK_CHAN_RECV, &out, 0}, {empty, HK_CHAN_RECV, &out, 0}};
    unsigned c2[3] = {0};
    CHECK(fair_counts(blocked, 3, c2) == 0);
    CHECK(c2[0] > FAIR_ROUNDS * 35 / 100 && c2[1] > FAIR_ROUNDS * 35 / 100);

    hk_chan_free(a);
    hk_chan_free(b);
    hk_chan_free(empty);
    return (void *)1;
}

Test(co_misuse, select_takes_ready_cases_evenly, .timeout = 30)
{
    co_run(select_fair_main, 1, NULL);
}

/* ---- 2. hk_co_cond_wait with a mutex the caller does not hold ---- */

static void *cond_unlocked_main(void *arg)
{
    (void)arg;
    hk_co_mutex_t m;
    hk_co_cond_t c;
    hk_co_mutex_init(&m);
    hk_co_cond_init(&c);
    CHECK(hk_co_cond_wait(&c, &m, 0) == -EPERM);
    CHECK(hk_co_cond_wait(&c, &m, hk_time_now() + 5 * MS) == -EPERM);
    /* Still unlocked: the failed waits did not leave the caller holding it. */
    CHECK(hk_co_mutex_unlock(&m) == -EPERM);
    return (void *)1;
}

Test(co_misuse, cond_wait_without_the_mutex_is_eperm, .timeout = 30)
{
    co_run(cond_unlocked_main, 2, NULL);
}

/*
 * Off the coroutines, a condition wait is refused before the mutex is
 * touched: a thread holding m and calling it must keep m throughout, so a
 * second thread trying m all the while never gets it.
 */
struct cond_off {
    hk_co_mutex_t m;
    hk_co_cond_t c;
    int stop;            /* atomic */
    unsigned long taken; /* times the second thread got m */
};

static void *cond_off_taker(void *arg)
{
    struct cond_off *o = arg;
    while (!__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE)) {
        if (hk_co_mutex_lock(&o->m, 0) == 0) {
            o->taken++;
            hk_co_mutex_unlock(&o->m);
        }
    }
    return NULL;
}

Test(co_misuse, cond_wait_off_the_coroutines_keeps_the_mutex, .timeout = 60)
{
    struct cond_off o = {0};
    hk_co_mutex_init(&o.m);
    hk_co_cond_init(&o.c);
    cr_assert_eq(hk_co_mutex_lock(&o.m, 0), 0); /* uncontended: taken off a worker too */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, cond_off_taker, &o), 0);
    int bad = 0;
    for (int i = 0; i < 200000; i++)
        if (hk_co_cond_wait(&o.c, &o.m, 0) != -EPERM)
            bad++;
    __atomic_store_n(&o.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    cr_assert_eq(bad, 0, "%d waits did not give -EPERM", bad);
    cr_assert_eq(o.taken, 0, "the other thread took the mutex %lu times during the waits", o.taken);
}

/* ---- 3. a coroutine closes its own scope ---- */

struct own {
    hk_co_scope_t *scope;
    int close_result;
    int cancelled_after;
};

static void *close_own(void *arg)
{
    struct own *o = arg;
    o->close_result = hk_co_scope_close(o->scope);
    o->cancelled_after = hk_co_cancelled();
    return NULL;
}

static void *sibling(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)hk_co_sleep_until(hk_time_now() + 50 * MS);
}

static void *close_own_main(void *arg)
{
    (void)arg;
    struct own o = {0};
    CHECK(hk_co_scope_new(&o.scope) == 0);
    hk_co_t *sib, *closer;
    CHECK(hk_co_spawn(o.scope, sibling, NULL, NULL, &sib) == 0);
    CHECK(hk_co_spawn(o.scope, close_own, &o, NULL, &closer) == 0);
    CHECK(hk_co_join(closer, NULL, HK_FOREVER) == 0);
    CHECK(o.close_result == -EDEADLK);
    /* The refused close changed nothing: nobody cancelled, the scope still takes spawns. */
    CHECK(o.cancelled_after == 0);
    void *r;
    CHECK(hk_co_join(sib, &r, HK_FOREVER) == 0);
    CHECK(r == (void *)0);
    hk_co_t *again;
    CHECK(hk_co_spawn(o.scope, sibling, NULL, NULL, &again) == 0);
    CHECK(hk_co_join(again, &r, HK_FOREVER) == 0 && r == (void *)0);
    CHECK(hk_co_scope_close(o.scope) == 0);
    return (void *)1;
}

Test(co_misuse, closing_own_scope_is_refused_without_cancelling, .timeout = 30)
{
    co_run(close_own_main, 2, NULL);
}

/* ---- 4. a stack size that cannot be rounded up to pages ---- */

static void *nothing(void *arg)
{
    return arg;
}

static void *huge_stack_main(void *arg)
{
    (void)arg;
    hk_co_attr_t attr = {.stack_size = SIZE_MAX - 100};
    hk_co_t *co = NULL;
    CHECK(hk_co_spawn(NULL, nothing, NULL, &attr, &co) == -ENOMEM);
    attr.flags = HK_CO_UNGUARDED;
    CHECK(hk_co_spawn(NULL, nothing, NULL, &attr, &co) == -ENOMEM);
    /* A sane one still works. */
    attr.stack_size = 0;
    CHECK(hk_co_spawn(NULL, nothing, (void *)7, &attr, &co) == 0);
    void *r;
    CHECK(hk_co_join(co, &r, HK_FOREVER) == 0 && r == (void *)7);
    return (void *)1;
}

Test(co_misuse, huge_stack_size_is_enomem, .timeout = 30)
{
    co_run(huge_stack_main, 1, NULL);
}

/* ---- 5. a wait group counter that would pass INT64_MAX ---- */

static void *wg_overflow_main(void *arg)
{
    (void)arg;
    hk_co_wg_t wg;
    hk_co_wg_init(&wg);
    CHECK(hk_co_wg_add(&wg, 1) == 0);
    CHECK(hk_co_wg_add(&wg, INT64_MAX) == -EINVAL);
    CHECK(hk_co_wg_add(&wg, INT64_MIN) == -EINVAL);
    CHECK(hk_co_wg_done(&wg) == 0);
    CHECK(hk_co_wg_wait(&wg, 0) == 0);
    return (void *)1;
}

Test(co_misuse, wait_group_overflow_is_einval, .timeout = 30)
{
    co_run(wg_overflow_main, 1, NULL);
}

/* ---- 6. try-once channel calls from a thread that is not a coroutine ---- */

Test(co_misuse, channel_try_once_off_the_workers_is_etimedout, .timeout = 30)
{
    hk_chan_t *ch;
    int v = 1, out = 0;
    cr_assert_eq(hk_chan_new(&ch, sizeof(int), 1), 0);
    cr_assert_eq(hk_chan_recv(ch, &out, 0), -ETIMEDOUT); /* empty: would block */
    cr_assert_eq(hk_chan_send(ch, &v, 0), 0);
    cr_assert_eq(hk_chan_send(ch, &v, 0), -ETIMEDOUT); /* full: would block */
    hk_chan_case_t c = {ch, HK_CHAN_SEND, &v, 0};
    cr_assert_eq(hk_chan_select(&c, 1, 0), -ETIMEDOUT);
    /* Only a call that would really wait needs a coroutine. */
    cr_assert_eq(hk_chan_send(ch, &v, hk_time_now() + MS), -EPERM);
    cr_assert_eq(hk_chan_recv(ch, &out, 0), 0);
    cr_assert_eq(out, 1);
    hk_chan_free(ch);
}

/* ---- 7. hk_co_connect with a deadline it must refuse ---- */

static void *connect_bad_deadline_main(void *arg)
{
    (void)arg;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 8) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(hk_co_connect(fd, (struct sockaddr *)&a, sizeof a, HK_DEADLINE_MAX) == -EINVAL);
    /* Refused before anything happened: no connection attempt under way. */
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    CHECK(getpeername(fd, (struct sockaddr *)&peer, &plen) < 0 && errno == ENOTCONN);
    CHECK(hk_co_connect(fd, (struct sockaddr *)&a, sizeof a, hk_time_now() + 2000 * MS) == 0);
    hk_co_close(fd);
    close(l);
    return (void *)1;
}

Test(co_misuse, connect_with_a_bad_deadline_starts_nothing, .timeout = 30)
{
    co_run(connect_bad_deadline_main, 1, NULL);
}

/*
 * ---- 8. a pair of coroutines that hand work to each other does not starve the rest ----
 *
 * Each wakes the other into its worker's "run next" slot; with one worker,
 * the others (a coroutine in the ring, a sleeper whose timer is due, a
 * coroutine spawned from another thread into the global queue, a reader
 * whose socket became readable: only the netpoller wakes it) must still
 * get to run while the pair goes on.
 */
struct starve {
    hk_chan_t *ping, *pong;
    int ring_ran, sleeper_ran, global_ran, reader_ran; /* atomic */
    int fds[2];                                        /* the reader's socketpair */
};

static void *ponger(void *arg)
{
    struct starve *s = arg;
    int v;
    while (hk_chan_recv(s->ping, &v, HK_FOREVER) == 0)
        if (hk_chan_send(s->pong, &v, HK_FOREVER) != 0)
            break;
    return NULL;
}

static void *ring_co(void *arg)
{
    struct starve *s = arg;
    __atomic_store_n(&s->ring_ran, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void *sleeper_co(void *arg)
{
    struct starve *s = arg;
    hk_co_sleep_until(hk_time_now() + 5 * MS);
    __atomic_store_n(&s->sleeper_ran, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* Parked on the netpoller: only a poll wakes it, after the main coroutine's write. */
static void *reader_co(void *arg)
{
    struct starve *s = arg;
    char c;
    if (hk_co_read(s->fds[0], &c, 1, HK_FOREVER) == 1)
        __atomic_store_n(&s->reader_ran, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void *global_co(void *arg)
{
    struct starve *s = arg;
    __atomic_store_n(&s->global_ran, 1, __ATOMIC_RELAXED);
    return NULL;
}

struct foreign_spawn {
    hk_co_scope_t *scope;
    struct starve *s;
    int result;
};

static void *spawn_from_thread(void *arg)
{
    struct foreign_spawn *f = arg;
    f->result = hk_co_spawn(f->scope, global_co, f->s, NULL, NULL);
    return NULL;
}

static int starve_all_ran(struct starve *s)
{
    return __atomic_load_n(&s->ring_ran, __ATOMIC_RELAXED) &&
           __atomic_load_n(&s->sleeper_ran, __ATOMIC_RELAXED) &&
           __atomic_load_n(&s->global_ran, __ATOMIC_RELAXED) &&
           __atomic_load_n(&s->reader_ran, __ATOMIC_RELAXED);
}

static void *starve_main(void *arg)
{
    (void)arg;
    struct starve s = {0};
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s.fds) == 0);
    CHECK(hk_chan_new(&s.ping, sizeof(int), 0) == 0);
    CHECK(hk_chan_new(&s.pong, sizeof(int), 0) == 0);
    hk_co_scope_t *scope;
    CHECK(hk_co_scope_new(&scope) == 0);
    CHECK(hk_co_spawn(scope, ponger, &s, NULL, NULL) == 0);
    int v = 0;
    /* The ponger waits in its receive; from here on the two only wake each other. */
    CHECK(hk_chan_send(s.ping, &v, HK_FOREVER) == 0 && hk_chan_recv(s.pong, &v, HK_FOREVER) == 0);
    /* The ring is FIFO: once ring_co has run, the reader has parked on its empty socket. */
    CHECK(hk_co_spawn(scope, reader_co, &s, NULL, NULL) == 0);
    CHECK(hk_co_spawn(scope, ring_co, &s, NULL, NULL) == 0);
    CHECK(hk_co_spawn(scope, sleeper_co, &s, NULL, NULL) == 0);
    /* A plain thread (not a worker): its spawn goes to the global queue. */
    struct foreign_spawn f = {scope, &s, 1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, spawn_from_thread, &f) == 0);
    /* A safety net only: the others need a few ms, the pair runs until they have run. */
    uint64_t give_up = hk_time_now() + 10000 * MS;
    unsigned long rounds = 0;
    int written = 0;
    while (!starve_all_ran(&s) && hk_time_now() < give_up) {
        if (!written && __atomic_load_n(&s.ring_ran, __ATOMIC_RELAXED)) {
            CHECK(write(s.fds[1], "x", 1) == 1);
            written = 1;
        }
        CHECK(hk_chan_send(s.ping, &v, HK_FOREVER) == 0);
        CHECK(hk_chan_recv(s.pong, &v, HK_FOREVER) == 0);
        rounds++;
    }
    if (!starve_all_ran(&s))
        fprintf(stderr, "after %lu rounds: ring %d sleeper %d global %d reader %d\n", rounds,
                s.ring_ran, s.sleeper_ran, s.global_ran, s.reader_ran);
    pthread_join(t, NULL);
    CHECK(f.result == 0);
    CHECK(starve_all_ran(&s));
    hk_chan_close(s.ping);
    CHECK(hk_co_scope_close(scope) == 0);
    hk_chan_free(s.ping);
    hk_chan_free(s.pong);
    close(s.fds[0]);
    close(s.fds[1]);
    return (void *)1;
}

Test(co_misuse, a_ping_pong_pair_does_not_starve_the_others, .timeout = 30)
{
    co_run(starve_main, 1, NULL);
}

/* ---- 9. a receive without a destination, a send without a source ---- */

static hk_chan_t *discard_ch;

static void *discard_sender(void *arg)
{
    int v = (int)(intptr_t)arg;
    return hk_chan_send(discard_ch, &v, HK_FOREVER) == 0 ? (void *)1 : NULL;
}

static void *discard_receiver(void *arg)
{
    (void)arg;
    return hk_chan_recv(discard_ch, NULL, HK_FOREVER) == 0 ? (void *)1 : NULL;
}

static void *discard_main(void *arg)
{
    (void)arg;
    int v = 7;
    /* Buffered: the element is taken (the count drops), nothing is written anywhere. */
    CHECK(hk_chan_new(&discard_ch, sizeof(int), 2) == 0);
    CHECK(hk_chan_send(discard_ch, &v, 0) == 0);
    v = 8;
    CHECK(hk_chan_send(discard_ch, &v, 0) == 0);
    CHECK(hk_chan_recv(discard_ch, NULL, 0) == 0);
    CHECK(hk_chan_len(discard_ch) == 1);
    int got = 0;
    CHECK(hk_chan_recv(discard_ch, &got, 0) == 0 && got == 8);
    /* A send of nothing is refused and changes nothing; so is a select case sending nothing. */
    CHECK(hk_chan_send(discard_ch, NULL, 0) == -EINVAL);
    hk_chan_case_t c = {.chan = discard_ch, .op = HK_CHAN_SEND, .elem = NULL};
    CHECK(hk_chan_select(&c, 1, 0) == -EINVAL);
    CHECK(hk_chan_len(discard_ch) == 0);
    hk_chan_free(discard_ch);

    /* Unbuffered, the sender waiting: the discarding receive takes its element. */
    CHECK(hk_chan_new(&discard_ch, sizeof(int), 0) == 0);
    hk_co_t *s, *r;
    CHECK(hk_co_spawn(NULL, discard_sender, (void *)(intptr_t)5, NULL, &s) == 0);
    while (hk_chan_recv(discard_ch, NULL, 0) == -ETIMEDOUT)
        hk_co_yield();
    void *res = NULL;
    CHECK(hk_co_join(s, &res, HK_FOREVER) == 0 && res == (void *)1);
    /* Unbuffered, the receiver waiting with no destination: the sender hands it over. */
    CHECK(hk_co_spawn(NULL, discard_receiver, NULL, NULL, &r) == 0);
    v = 6;
    CHECK(hk_chan_send(discard_ch, &v, HK_FOREVER) == 0);
    CHECK(hk_co_join(r, &res, HK_FOREVER) == 0 && res == (void *)1);
    hk_chan_free(discard_ch);
    return (void *)1;
}

Test(co_misuse, a_receive_into_null_discards_a_send_of_null_is_einval, .timeout = 30)
{
    co_run(discard_main, 2, NULL);
}
