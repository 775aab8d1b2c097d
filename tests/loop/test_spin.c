/*
 * Busy polling (hk_loop_busy_poll): the loop polls before it sleeps, finds
 * io that arrives meanwhile without sleeping, stops spinning at a timer's
 * deadline, and loses no async wake-up sent while it spins. Counts, not
 * times: each case makes its event come well inside the spin budget.
 */
#include "util.h"

#include <pthread.h>
#include <sys/timerfd.h>
#include <time.h>

Test(spin, bounds)
{
    hk_loop_t *loop = new_loop(0);
    cr_assert_eq(hk_loop_busy_poll(loop, HK_LOOP_SPIN_MAX_NS + 1), -EINVAL);
    cr_assert_eq(hk_loop_busy_poll(NULL, 0), -EINVAL);
    cr_assert_eq(hk_loop_busy_poll(loop, HK_LOOP_SPIN_MAX_NS), 0);
    cr_assert_eq(hk_loop_busy_poll(loop, 0), 0);
    finish_loop(loop);
}

static void on_tfd(hk_io_t *io, unsigned revents)
{
    (void)revents;
    uint64_t n;
    cr_assert_eq(read(io->fd, &n, sizeof n), (ssize_t)sizeof n);
    hk_io_stop(io);
}

/* A timerfd due in 200 us, a 10 ms budget: the spin finds it, the loop never sleeps. */
Test(spin, finds_io_without_sleeping)
{
    hk_loop_t *loop = new_loop(0);
    cr_assert_eq(hk_loop_busy_poll(loop, HK_LOOP_SPIN_MAX_NS), 0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    cr_assert_geq(tfd, 0);
    hk_io_t io;
    cr_assert_eq(hk_io_init(loop, &io, tfd), 0);
    cr_assert_eq(hk_io_start(&io, HK_READABLE, on_tfd), 0);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_NOWAIT), 1); /* registers the fd */
    struct itimerspec its = {.it_value = {.tv_nsec = 200000}};
    cr_assert_eq(timerfd_settime(tfd, 0, &its, NULL), 0);
    hk_loop_stats_t st;
    cr_assert_eq(hk_loop_stats(loop, &st), 0);
    uint64_t polls0 = st.spin_polls;
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(hk_loop_stats(loop, &st), 0);
    cr_assert_eq(st.spin_hits, 1, "the event came while the loop polled");
    cr_assert_gt(st.spin_polls, polls0);
    hk_close(&io.base, NULL);
    finish_loop(loop);
    close(tfd);
}

static void on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    uint64_t *ran = t->base.data;
    *ran = hk_time_now();
}

/* Nothing but a timer 2 ms away and a 10 ms budget: the spin ends at the deadline. */
Test(spin, stops_at_the_timer_deadline)
{
    hk_loop_t *loop = new_loop(0);
    cr_assert_eq(hk_loop_busy_poll(loop, HK_LOOP_SPIN_MAX_NS), 0);
    hk_timer_t t;
    uint64_t ran = 0;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    t.base.data = &ran;
    uint64_t due = hk_time_now() + 2000000;
    cr_assert_eq(hk_timer_start(&t, on_timer, due, 0), 0);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert_geq(ran, due);
    hk_loop_stats_t st;
    cr_assert_eq(hk_loop_stats(loop, &st), 0);
    cr_assert_gt(st.spin_polls, 0);
    cr_assert_eq(st.spin_hits, 0);
    cr_assert_eq(st.timers_fired, 1);
    hk_close(&t.base, NULL);
    finish_loop(loop);
}

typedef struct spin_async {
    hk_async_t async;
    int runs;
} spin_async_t;

static void on_async(hk_async_t *a)
{
    spin_async_t *s = (spin_async_t *)a;
    if (__atomic_add_fetch(&s->runs, 1, __ATOMIC_RELEASE) == 100)
        hk_close(&a->base, NULL);
}

static spin_async_t *volatile spin_shared;

static void *sender(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        /* Each send waits until the previous one ran, so none coalesce. */
        while (__atomic_load_n(&spin_shared->runs, __ATOMIC_ACQUIRE) < i)
            ;
        cr_assert_eq(hk_async_send(&spin_shared->async), 0);
        if (i % 10 == 0)
            usleep(500);
    }
    return NULL;
}

/* 100 asyncs, some sent while the loop spins, some while it sleeps: every one runs. */
Test(spin, async_while_spinning_is_not_lost)
{
    hk_loop_t *loop = new_loop(0);
    cr_assert_eq(hk_loop_busy_poll(loop, 200000), 0);
    spin_async_t s = {0};
    cr_assert_eq(hk_async_init(loop, &s.async, on_async), 0);
    spin_shared = &s;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sender, NULL), 0);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    cr_assert_eq(__atomic_load_n(&s.runs, __ATOMIC_ACQUIRE), 100);
    finish_loop(loop);
}
