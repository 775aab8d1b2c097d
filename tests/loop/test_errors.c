/*
 * Every bad input returns its documented -errno, changes nothing, and leaves
 * the loop usable: after each error a timer runs through the same loop.
 */
#include "util.h"

#include <signal.h>

static int g_usable_calls;

static void usable_cb(hk_timer_t *t, uint64_t exp)
{
    (void)t;
    (void)exp;
    g_usable_calls++;
}

/* Runs one timer through the loop: proves the loop still works. */
static void assert_usable(hk_loop_t *loop, const char *after)
{
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0, "after %s", after);
    cr_assert_eq(hk_timer_start_in(&t, usable_cb, 0, 0), 0, "after %s", after);
    int before = g_usable_calls;
    RUN_UNTIL(loop, &g, g_usable_calls > before);
    hk_close(&t.base, NULL);
    guard_close(&g);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
}

#define EXPECT_ERR(call, err)                                                                      \
    do {                                                                                           \
        int e_r_ = (call);                                                                         \
        cr_assert_eq(e_r_, (err), "%s: got %d (%s), want %s", #call, e_r_, hk_err_name(e_r_),      \
                     hk_err_name(err));                                                            \
        assert_usable(loop, #call);                                                                \
    } while (0)

static void nop_io(hk_io_t *io, unsigned revents)
{
    (void)io;
    (void)revents;
}

static void nop_timer(hk_timer_t *t, uint64_t e)
{
    (void)t;
    (void)e;
}

static void nop_sig(hk_signal_t *s, int n)
{
    (void)s;
    (void)n;
}

static void nop_hook(hk_hook_t *h)
{
    (void)h;
}

static void nop_defer(hk_defer_t *d)
{
    (void)d;
}

Test(errors, loop_new_and_run)
{
    hk_loop_t *bad = NULL;
    cr_assert_eq(hk_loop_new(&bad, 0x80u), -EINVAL);
    cr_assert_null(bad, "a failed hk_loop_new stores nothing");
    cr_assert_eq(hk_loop_new(&bad, ~0u), -EINVAL);
    cr_assert_null(bad);

    hk_loop_t *loop = new_loop(0);
    EXPECT_ERR(hk_loop_run(loop, (hk_run_mode_t)7), -EINVAL);
    EXPECT_ERR(hk_loop_run(loop, (hk_run_mode_t)-1), -EINVAL);
    finish_loop(loop);
}

static int g_nested_r = 1;

static void nested_run_cb(hk_timer_t *t, uint64_t e)
{
    (void)e;
    g_nested_r = hk_loop_run(t->base.loop, HK_RUN_NOWAIT);
}

Test(errors, run_from_inside_a_callback)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    cr_assert_eq(hk_timer_start_in(&t, nested_run_cb, 0, 0), 0);
    RUN_UNTIL(loop, &g, g_nested_r != 1);
    cr_assert_eq(g_nested_r, -EBUSY);
    hk_close(&t.base, NULL);
    guard_close(&g);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    assert_usable(loop, "nested run");
    finish_loop(loop);
}

Test(errors, io)
{
    hk_loop_t *loop = new_loop(0);
    int p[2];
    make_pipe(p);
    hk_io_t io, io2;
    EXPECT_ERR(hk_io_init(loop, &io, -1), -EBADF);
    cr_assert_eq(hk_io_init(loop, &io, p[0]), 0);
    EXPECT_ERR(hk_io_start(&io, 0, nop_io), -EINVAL);
    EXPECT_ERR(hk_io_start(&io, 0x1000u, nop_io), -EINVAL);
    EXPECT_ERR(hk_io_start(&io, HK_READABLE | 0x1000u, nop_io), -EINVAL);
    EXPECT_ERR(hk_io_start(&io, HK_EDGE, nop_io), -EINVAL); /* a mode without interest */
    EXPECT_ERR(hk_io_start(&io, HK_READABLE | HK_EXCLUSIVE | HK_ONESHOT, nop_io), -EINVAL);
    cr_assert_not(hk_is_active(&io.base), "failed starts change nothing");
    EXPECT_ERR(hk_io_modify(&io, HK_READABLE), -ENOTCONN);
    EXPECT_ERR(hk_io_stop(&io), -EALREADY);

    cr_assert_eq(hk_io_start(&io, HK_READABLE | HK_EDGE, nop_io), 0);
    EXPECT_ERR(hk_io_start(&io, HK_READABLE, nop_io), -EBUSY);
    EXPECT_ERR(hk_io_modify(&io, 0x1000u), -EINVAL);
    EXPECT_ERR(hk_io_modify(&io, HK_READABLE | HK_ONESHOT), -EINVAL); /* other mode */
    cr_assert(hk_is_active(&io.base));

    /* A second watcher on the same fd in the same loop. */
    cr_assert_eq(hk_io_init(loop, &io2, p[0]), 0);
    EXPECT_ERR(hk_io_start(&io2, HK_WRITABLE, nop_io), -EEXIST);
    cr_assert_not(hk_is_active(&io2.base));
    cr_assert_eq(hk_io_stop(&io), 0);
    EXPECT_ERR(hk_io_stop(&io), -EALREADY);
    /* Once the first one is stopped, the second may start. */
    cr_assert_eq(hk_io_start(&io2, HK_READABLE, nop_io), 0);
    cr_assert_eq(hk_io_stop(&io2), 0);

    /* A closed fd. */
    int q[2];
    make_pipe(q);
    hk_io_t dead;
    cr_assert_eq(hk_io_init(loop, &dead, q[0]), 0);
    close_pair(q);
    EXPECT_ERR(hk_io_start(&dead, HK_READABLE, nop_io), -EBADF);
    cr_assert_not(hk_is_active(&dead.base));

    /* An fd number beyond the fd table's reach: refused before any allocation. */
    hk_io_t far;
    cr_assert_eq(hk_io_init(loop, &far, 1 << 26), 0);
    EXPECT_ERR(hk_io_start(&far, HK_READABLE, nop_io), -EBADF);
    cr_assert_not(hk_is_active(&far.base));
    cr_assert_eq(hk_io_start(&io2, HK_READABLE, nop_io), 0, "the loop is still usable");

    hk_close(&io.base, NULL);
    hk_close(&io2.base, NULL);
    hk_close(&dead.base, NULL);
    hk_close(&far.base, NULL);
    close_pair(p);
    finish_loop(loop);
}

Test(errors, timers)
{
    hk_loop_t *loop = new_loop(0);
    hk_timer_t t;
    cr_assert_eq(hk_timer_init(loop, &t), 0);
    uint64_t now = hk_time_now();
    EXPECT_ERR(hk_timer_start(&t, nop_timer, now, -1), -EINVAL);
    EXPECT_ERR(hk_timer_start(&t, nop_timer, now, INT64_MIN), -EINVAL);
    EXPECT_ERR(hk_timer_start(&t, nop_timer, HK_DEADLINE_MAX, 0), -EINVAL);
    EXPECT_ERR(hk_timer_start(&t, nop_timer, HK_DEADLINE_MAX + 1, 0), -EINVAL);
    EXPECT_ERR(hk_timer_start(&t, nop_timer, HK_FOREVER, 0), -EINVAL);
    EXPECT_ERR(hk_timer_start_in(&t, nop_timer, -1, 0), -EINVAL);
    EXPECT_ERR(hk_timer_start_in(&t, nop_timer, MS(1), -5), -EINVAL);
    EXPECT_ERR(hk_timer_start_in(&t, nop_timer, INT64_MAX, 0), -EINVAL);
    cr_assert_not(hk_is_active(&t.base));
    EXPECT_ERR(hk_timer_stop(&t), -EALREADY);

    /* Just below the limit is accepted. */
    cr_assert_eq(hk_timer_start(&t, nop_timer, HK_DEADLINE_MAX - 1, 0), 0);
    cr_assert_eq(hk_timer_deadline(&t), HK_DEADLINE_MAX - 1);
    EXPECT_ERR(hk_timer_start(&t, nop_timer, now, 0), -EBUSY);
    cr_assert_eq(hk_timer_deadline(&t), HK_DEADLINE_MAX - 1, "a failed start changes nothing");
    cr_assert_eq(hk_timer_stop(&t), 0);
    EXPECT_ERR(hk_timer_stop(&t), -EALREADY);
    hk_close(&t.base, NULL);
    finish_loop(loop);
}

Test(errors, signals)
{
    hk_loop_t *loop = new_loop(0);
    hk_signal_t s;
    cr_assert_eq(hk_signal_init(loop, &s), 0);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, SIGKILL), -EINVAL);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, SIGSTOP), -EINVAL);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, 0), -EINVAL);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, -1), -EINVAL);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, 65), -EINVAL);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, 1000), -EINVAL);
    cr_assert_not(hk_is_active(&s.base));
    EXPECT_ERR(hk_signal_stop(&s), -EALREADY);
    cr_assert_eq(hk_signal_start(&s, nop_sig, SIGUSR1), 0);
    EXPECT_ERR(hk_signal_start(&s, nop_sig, SIGUSR2), -EBUSY);
    cr_assert_eq(s.signum, SIGUSR1);
    cr_assert_eq(hk_signal_stop(&s), 0);
    hk_close(&s.base, NULL);
    finish_loop(loop);
}

Test(errors, hooks_and_defer)
{
    hk_loop_t *loop = new_loop(0);
    hk_hook_t h;
    EXPECT_ERR(hk_hook_init(loop, &h, (hk_hook_kind_t)0), -EINVAL);
    EXPECT_ERR(hk_hook_init(loop, &h, (hk_hook_kind_t)99), -EINVAL);
    cr_assert_eq(hk_hook_init(loop, &h, HK_HOOK_CHECK), 0);
    EXPECT_ERR(hk_hook_stop(&h), -EALREADY);
    cr_assert_eq(hk_hook_start(&h, nop_hook), 0);
    EXPECT_ERR(hk_hook_start(&h, nop_hook), -EBUSY);
    cr_assert_eq(hk_hook_stop(&h), 0);
    hk_close(&h.base, NULL);

    hk_defer_t d;
    memset(&d, 0, sizeof d);
    EXPECT_ERR(hk_defer_cancel(loop, &d), -EALREADY);
    cr_assert_eq(hk_defer(loop, &d, nop_defer), 0);
    cr_assert_eq(hk_defer(loop, &d, nop_defer), -EBUSY);
    cr_assert_eq(hk_defer_cancel(loop, &d), 0);
    EXPECT_ERR(hk_defer_cancel(loop, &d), -EALREADY);
    finish_loop(loop);
}

Test(errors, names_and_messages)
{
    static const struct {
        int err;
        const char *name;
    } tab[] = {
        {EBADF, "EBADF"},       {EINVAL, "EINVAL"}, {EBUSY, "EBUSY"},   {EALREADY, "EALREADY"},
        {EEXIST, "EEXIST"},     {ENOMEM, "ENOMEM"}, {EMFILE, "EMFILE"}, {ENFILE, "ENFILE"},
        {ENOSPC, "ENOSPC"},     {ESRCH, "ESRCH"},   {ECHILD, "ECHILD"}, {ENOSYS, "ENOSYS"},
        {ENOTCONN, "ENOTCONN"},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        const char *name = hk_err_name(-tab[i].err);
        cr_assert_not_null(name);
        cr_assert_str_eq(name, tab[i].name);
        const char *msg = hk_strerror(-tab[i].err);
        cr_assert_not_null(msg);
        cr_assert_str_neq(msg, "unknown error", "%s has no message", tab[i].name);
        cr_assert_str_eq(hk_strerror(tab[i].err), msg, "positive codes are accepted too");
    }
    cr_assert_str_eq(hk_strerror(-EBADF), "bad file descriptor");
    cr_assert_str_eq(hk_err_name(-99999), "UNKNOWN");
    cr_assert_str_eq(hk_strerror(-99999), "unknown error");
    cr_assert_str_eq(hk_strerror(99999), "unknown error");
}
