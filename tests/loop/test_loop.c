/*
 * The loop object itself: creation flags, run modes and their return values,
 * hk_loop_stop, ref/unref, alive, cached time, the backend fd.
 */
#include "util.h"

#include <stdio.h>

static int g_calls;

static void tick_cb(hk_timer_t *t, uint64_t e)
{
    (void)e;
    g_calls++;
    if (g_calls == 3)
        hk_loop_stop(t->base.loop);
}

Test(loop, new_free_empty)
{
    hk_loop_t *loop = new_loop(0);
    cr_assert_not(hk_loop_alive(loop));
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0, "an empty loop returns at once");
    cr_assert_eq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(hk_loop_free(loop), 0);
    loop = new_loop(HK_LOOP_TIMERFD);
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(hk_loop_free(loop), 0);
}

Test(loop, backend_fd_is_epoll)
{
    hk_loop_t *loop = new_loop(0);
    int fd = hk_loop_backend_fd(loop);
    cr_assert_geq(fd, 0);
    char path[64], target[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    cr_assert_gt(n, 0);
    target[n] = 0;
    cr_assert_str_eq(target, "anon_inode:[eventpoll]");
    cr_assert_eq(hk_loop_free(loop), 0);
}

Test(loop, stop_and_return_value)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, tick_cb, MS(1), MS(1)), 0);
    cr_assert(hk_loop_alive(loop));
    int r = hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_not(g.fired);
    cr_assert_eq(g_calls, 3, "hk_loop_stop returns at the end of the iteration");
    cr_assert_eq(r, 1, "one active referenced handle left");

    /* Unreferenced: DEFAULT returns at once with 0; ref again: alive. */
    hk_unref(&t.base);
    cr_assert_not(hk_loop_alive(loop));
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert(hk_is_active(&t.base), "unref does not stop");
    hk_ref(&t.base);
    cr_assert(hk_loop_alive(loop));
    cr_assert_eq(hk_timer_stop(&t), 0);
    cr_assert_not(hk_loop_alive(loop));
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    hk_close(&t.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

static uint64_t g_now_a, g_now_b, g_now_c;

static void time_cb(hk_timer_t *t, uint64_t e)
{
    hk_loop_t *loop = t->base.loop;
    (void)e;
    g_now_a = hk_loop_now(loop);
    busy_wait_ns(2000000);
    g_now_b = hk_loop_now(loop); /* cached: unchanged */
    hk_loop_update_time(loop);
    g_now_c = hk_loop_now(loop);
}

Test(loop, cached_time)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    uint64_t before = hk_time_now();
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, time_cb, 0, 0), 0);
    RUN_UNTIL(loop, &g, g_now_a != 0);
    cr_assert_geq(g_now_a, before);
    cr_assert_eq(g_now_b, g_now_a, "hk_loop_now is cached within a callback");
    cr_assert_geq(g_now_c, g_now_a + 2000000, "hk_loop_update_time refreshes it");
    cr_assert_leq(hk_loop_now(loop), hk_time_now());
    hk_close(&t.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

static void nop_async(hk_async_t *a)
{
    (void)a;
}

static void closed_cb(hk_handle_t *h)
{
    (*(int *)h->data)++;
}

Test(loop, close_every_kind_of_handle)
{
    hk_loop_t *loop = new_loop(0);
    int closed = 0;
    int p[2];
    make_pipe(p);
    hk_io_t io;
    hk_timer_t t;
    hk_signal_t s;
    hk_child_t c;
    hk_async_t a;
    hk_hook_t h;
    cr_assert_eq(hk_io_init(loop, &io, p[0]), 0);
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_signal_init(loop, &s), 0);
    cr_assert_eq(hk_child_init(loop, &c), 0);
    cr_assert_eq(hk_async_init(loop, &a, nop_async), 0);
    cr_assert_eq(hk_hook_init(loop, &h, HK_HOOK_IDLE), 0);
    hk_handle_t *all[] = {&io.base, &t.base, &s.base, &c.base, &a.base, &h.base};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        all[i]->data = &closed;
        cr_assert_eq(all[i]->loop, loop);
        cr_assert_not(hk_is_closing(all[i]));
    }
    cr_assert_eq(hk_loop_free(loop), -EBUSY);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        hk_close(all[i], closed_cb);
        cr_assert(hk_is_closing(all[i]));
    }
    cr_assert_eq(closed, 0);
    cr_assert_eq(hk_loop_free(loop), -EBUSY);
    finish_loop(loop);
    cr_assert_eq(closed, 6);
    close_pair(p);
}
