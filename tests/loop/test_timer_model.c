/*
 * Timers against a reference model: about 100,000 random starts, stops and
 * closes over 1,000 timers, outside and inside callbacks (their own and
 * others'), with HK_RUN_NOWAIT and HK_RUN_ONCE; every callback is checked for
 * deadline order, nothing early, a timer started in a pass not run in it, and
 * the expirations and next grid point the model predicts. Run with
 * epoll_pwait2 and with the timerfd fallback.
 */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

#define NT 1000

typedef struct rt {
    hk_timer_t t;
    int inited;          /* hk_timer_init done and not closed */
    int closing;         /* hk_close called, close cb pending */
    int active;          /* model */
    uint64_t d;          /* model: next deadline */
    uint64_t p;          /* model: period */
    uint64_t seq;        /* model: start order */
    uint64_t start_pass; /* pass in which it was (re)started inside a callback, or 0 */
} rt_t;

static rt_t T[NT];
static uint64_t g_seq, g_pass, g_last_now, g_last_d, g_last_seq;
static uint64_t g_fired, g_closed, g_errors, g_ops;
static unsigned g_rng = 12345;
static hk_loop_t *g_loop;
static char g_err[512];

static unsigned rnd(void)
{
    g_rng = g_rng * 1103515245u + 12345u;
    return (g_rng >> 8) & 0xffffff;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (!g_errors++)                                                                           \
            snprintf(g_err, sizeof g_err, __VA_ARGS__);                                            \
    } while (0)

static void cb(hk_timer_t *timer, uint64_t exp);

static void on_closed(hk_handle_t *h)
{
    rt_t *r = (rt_t *)h;
    r->closing = 0;
    r->inited = 0;
    g_closed++;
}

static void op_start(rt_t *r, uint64_t now, int in_cb)
{
    if (!r->inited || r->closing)
        return;
    if (r->active) {
        if (hk_timer_start(&r->t, cb, now, 0) != -EBUSY)
            FAIL("start of active timer not EBUSY");
        return;
    }
    int64_t off = (int64_t)(rnd() % 6000) - 2000; /* -2 ms .. +4 ms, in us */
    uint64_t d = (uint64_t)((int64_t)now + off * 1000);
    uint64_t p = (rnd() % 3 == 0) ? (uint64_t)(1 + rnd() % 3000) * 1000 : 0;
    int rc = hk_timer_start(&r->t, cb, d, (int64_t)p);
    if (rc != 0) {
        FAIL("start: %d", rc);
        return;
    }
    r->active = 1;
    r->d = d;
    r->p = p;
    r->seq = ++g_seq;
    r->start_pass = in_cb ? g_pass : 0;
    g_ops++;
}

static void op_stop(rt_t *r)
{
    if (!r->inited || r->closing)
        return;
    int rc = hk_timer_stop(&r->t);
    if (rc != (r->active ? 0 : -EALREADY))
        FAIL("stop returned %d, model active %d", rc, r->active);
    r->active = 0;
    g_ops++;
}

static void op_close(rt_t *r)
{
    if (!r->inited || r->closing)
        return;
    hk_close(&r->t.base, on_closed);
    r->closing = 1;
    r->active = 0;
    g_ops++;
}

static void random_op(uint64_t now, int in_cb)
{
    rt_t *r = &T[rnd() % NT];
    unsigned k = rnd() % 10;
    if (k < 6)
        op_start(r, now, in_cb);
    else if (k < 9)
        op_stop(r);
    else
        op_close(r);
}

static void cb(hk_timer_t *timer, uint64_t exp)
{
    rt_t *r = (rt_t *)timer;
    uint64_t now = hk_loop_now(timer->base.loop);
    if (now != g_last_now) {
        g_pass++;
        g_last_now = now;
        g_last_d = 0;
        g_last_seq = 0;
    }
    g_fired++;
    if (!r->active || r->closing) {
        FAIL("callback of timer %d not active in model", (int)(r - T));
        return;
    }
    if (r->start_pass == g_pass)
        FAIL("timer started in this pass ran in it");
    if (r->d > now)
        FAIL("timer %d ran early: d %llu now %llu", (int)(r - T), (unsigned long long)r->d,
             (unsigned long long)now);
    if (r->d < g_last_d || (r->d == g_last_d && r->seq < g_last_seq))
        FAIL("out of order");
    g_last_d = r->d;
    g_last_seq = r->seq;
    uint64_t want = 1;
    if (r->p) {
        want = (now - r->d) / r->p + 1;
        r->d += want * r->p;
        if (hk_timer_deadline(timer) != r->d)
            FAIL("next deadline %llu, model %llu", (unsigned long long)hk_timer_deadline(timer),
                 (unsigned long long)r->d);
        if (!hk_is_active(&timer->base))
            FAIL("repeating timer inactive in its callback");
    } else {
        r->active = 0;
        if (hk_is_active(&timer->base))
            FAIL("one-shot still active in its callback");
    }
    if (exp != want)
        FAIL("expirations %llu, model %llu", (unsigned long long)exp, (unsigned long long)want);
    /* Random things from inside the callback: to itself and to others. */
    unsigned k = rnd() % 8;
    if (k == 0)
        op_stop(r);
    else if (k == 1) {
        op_stop(r);
        op_start(r, now, 1);
    } else if (k == 2)
        op_close(r);
    for (int i = rnd() % 3; i > 0; i--)
        random_op(now, 1);
}

static void differential(unsigned flags)
{
    g_loop = new_loop(flags);
    memset(T, 0, sizeof T);
    g_seq = g_pass = g_last_now = g_fired = g_errors = g_ops = 0;
    while (g_ops < 100000 && !g_errors) {
        for (int i = 0; i < NT; i++) {
            if (!T[i].inited && !T[i].closing) {
                cr_assert_eq(hk_timer_init(g_loop, &T[i].t), 0);
                T[i].inited = 1;
                T[i].active = 0;
            }
        }
        hk_loop_update_time(g_loop);
        uint64_t now = hk_loop_now(g_loop);
        for (int i = 0; i < 50; i++)
            random_op(now, 0);
        int any_active = 0;
        for (int i = 0; i < NT; i++)
            any_active |= T[i].active;
        uint64_t before = hk_time_now();
        uint64_t fired = g_fired, closed = g_closed;
        hk_run_mode_t mode = (rnd() % 4 == 0) ? HK_RUN_ONCE : HK_RUN_NOWAIT;
        int rc = hk_loop_run(g_loop, mode);
        cr_assert_geq(rc, 0);
        /*
         * RUN_ONCE sleeps only while no callback is pending (as libuv's
         * UV_RUN_ONCE): a close callback that ran first is its one round of
         * work, and then it only polls.
         */
        if (mode == HK_RUN_ONCE && any_active && g_fired == fired && g_closed == closed)
            FAIL("RUN_ONCE with active timers returned without running a callback");
        /* Every timer started before the run and due at its start must have run. */
        for (int i = 0; i < NT; i++) {
            if (T[i].active && !T[i].closing && T[i].start_pass == 0 && T[i].d <= before &&
                T[i].seq <= fired + g_seq /* any */) {
                /* started outside a callback: it existed at the run's first pass */
                int started_in_run = 0;
                (void)started_in_run;
            }
        }
        /*
         * Also those due later than a timer that a callback (re)started with a
         * deadline in the past: that one waits for the next pass, not they.
         */
        for (int i = 0; i < NT; i++)
            if (T[i].active && T[i].d <= before && T[i].start_pass == 0)
                FAIL("timer %d due %llu ns before the run did not run (p %llu lib active %d lib d "
                     "%llu heap_idx %u seq %llu gseq %llu)",
                     i, (unsigned long long)(before - T[i].d), (unsigned long long)T[i].p,
                     hk_is_active(&T[i].t.base), (unsigned long long)hk_timer_deadline(&T[i].t),
                     T[i].t._heap_index, (unsigned long long)T[i].seq, (unsigned long long)g_seq);
        /* Timers (re)started in callbacks count as outside ones from now on. */
        for (int i = 0; i < NT; i++)
            T[i].start_pass = 0;
        if (rnd() % 8 == 0)
            usleep(rnd() % 3000);
    }
    for (int i = 0; i < NT; i++)
        if (T[i].inited && !T[i].closing)
            hk_close(&T[i].t.base, NULL);
    finish_loop(g_loop);
    cr_assert_eq(g_errors, 0, "%llu errors, first: %s (fired %llu)", (unsigned long long)g_errors,
                 g_err, (unsigned long long)g_fired);
    cr_log_info("ops %llu fired %llu", (unsigned long long)g_ops, (unsigned long long)g_fired);
}

Test(timer_model, differential_epoll_pwait2, .timeout = 50)
{
    differential(0);
}

Test(timer_model, differential_timerfd, .timeout = 50)
{
    differential(HK_LOOP_TIMERFD);
}
