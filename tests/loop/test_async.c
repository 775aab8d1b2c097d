/*
 * Async wake-ups from other threads. Each sender increments an atomic counter
 * and then sends; the loop callback reads the counters. Since a send after the
 * callback has started gives another call, the last increment of every thread
 * is always observed: the loop stops when it has seen them all, and a guard
 * timer turns a lost wake-up into a failure. Runs under TSan too (label
 * "threads").
 */
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

enum { THREADS = 8, SENDS = 100000 };

typedef struct shared {
    hk_async_t async[THREADS]; /* one per thread, or only [0] when shared */
    atomic_long counter[THREADS];
    long seen[THREADS];
    long calls[THREADS];
    int shared_mode;
    atomic_int go;
    int send_errors[THREADS];
} shared_t;

static shared_t *g_sh;

typedef struct sender {
    shared_t *sh;
    int idx;
    pthread_t th;
} sender_t;

static void *sender_main(void *arg)
{
    sender_t *s = arg;
    shared_t *sh = s->sh;
    hk_async_t *a = sh->shared_mode ? &sh->async[0] : &sh->async[s->idx];
    while (!atomic_load(&sh->go)) {
    }
    for (int i = 0; i < SENDS; i++) {
        atomic_fetch_add_explicit(&sh->counter[s->idx], 1, memory_order_release);
        if (hk_async_send(a) < 0)
            sh->send_errors[s->idx]++;
    }
    return NULL;
}

static int all_seen(shared_t *sh)
{
    for (int i = 0; i < THREADS; i++)
        if (sh->seen[i] != SENDS)
            return 0;
    return 1;
}

static void async_cb(hk_async_t *a)
{
    shared_t *sh = g_sh;
    int idx = (int)(a - sh->async);
    sh->calls[idx]++;
    if (sh->shared_mode) {
        for (int i = 0; i < THREADS; i++)
            sh->seen[i] = atomic_load_explicit(&sh->counter[i], memory_order_acquire);
    } else {
        sh->seen[idx] = atomic_load_explicit(&sh->counter[idx], memory_order_acquire);
    }
    if (all_seen(sh))
        hk_loop_stop(a->base.loop);
}

static void run_senders(int shared_mode)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 40000);
    shared_t *sh = calloc(1, sizeof *sh);
    cr_assert_not_null(sh);
    g_sh = sh;
    sh->shared_mode = shared_mode;
    int n_async = shared_mode ? 1 : THREADS;
    for (int i = 0; i < n_async; i++)
        cr_assert_eq(hk_async_init(loop, &sh->async[i], async_cb), 0);
    sender_t s[THREADS];
    for (int i = 0; i < THREADS; i++) {
        s[i].sh = sh;
        s[i].idx = i;
        cr_assert_eq(pthread_create(&s[i].th, NULL, sender_main, &s[i]), 0);
    }
    atomic_store(&sh->go, 1);
    int r = hk_loop_run(loop, HK_RUN_DEFAULT);
    for (int i = 0; i < THREADS; i++)
        pthread_join(s[i].th, NULL);
    cr_assert_geq(r, 0);
    cr_assert_not(g.fired, "lost wake-up: not every send was observed");
    cr_assert(all_seen(sh));
    long total_calls = 0;
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(sh->send_errors[i], 0);
        total_calls += sh->calls[i];
    }
    for (int i = 0; i < n_async; i++)
        cr_assert_geq(sh->calls[i], 1);
    cr_assert_leq(total_calls, (long)THREADS * SENDS, "sends coalesce, never multiply");
    for (int i = 0; i < n_async; i++)
        hk_close(&sh->async[i].base, NULL);
    guard_close(&g);
    finish_loop(loop);
    free(sh);
}

Test(async, eight_threads_separate_asyncs, .timeout = 55)
{
    run_senders(0);
}

Test(async, eight_threads_one_shared_async, .timeout = 55)
{
    run_senders(1);
}

/* Loop-thread sends: before the callback they coalesce; from inside it they re-fire. */
static int g_calls, g_resend;

static void self_cb(hk_async_t *a)
{
    g_calls++;
    if (g_resend > 0) {
        g_resend--;
        cr_assert_eq(hk_async_send(a), 0);
    }
}

Test(async, coalescing_and_send_from_callback)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_async_t a;
    cr_assert_eq(hk_async_init(loop, &a, self_cb), 0);
    cr_assert(hk_is_active(&a.base));
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(g_calls, 0, "no send, no call");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(hk_async_send(&a), 0);
    RUN_UNTIL(loop, &g, g_calls > 0);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(g_calls, 1, "five sends before the callback ran coalesce into one call");

    g_resend = 1;
    cr_assert_eq(hk_async_send(&a), 0);
    RUN_UNTIL(loop, &g, g_calls >= 3);
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(g_calls, 3, "a send from inside the callback gives exactly one more call");

    cr_assert_eq(hk_loop_run(loop, HK_RUN_NOWAIT), 1, "an async handle is active until closed");
    hk_close(&a.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}

/* hk_async_send is async-signal-safe: send from a signal handler. */
static hk_async_t *g_sig_async;
static volatile sig_atomic_t g_handler_ran;

static void on_sigusr2(int signum)
{
    (void)signum;
    hk_async_send(g_sig_async);
    g_handler_ran = 1;
}

static int g_sig_calls;

static void sig_async_cb(hk_async_t *a)
{
    (void)a;
    g_sig_calls++;
}

Test(async, send_from_signal_handler)
{
    hk_loop_t *loop = new_loop(0);
    guard_t g;
    guard_start(loop, &g, 10000);
    hk_async_t a;
    cr_assert_eq(hk_async_init(loop, &a, sig_async_cb), 0);
    g_sig_async = &a;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr2;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR2, &sa, NULL), 0);
    cr_assert_eq(raise(SIGUSR2), 0);
    cr_assert(g_handler_ran);
    RUN_UNTIL(loop, &g, g_sig_calls > 0);
    cr_assert_eq(g_sig_calls, 1);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGUSR2, &sa, NULL);
    hk_close(&a.base, NULL);
    guard_close(&g);
    finish_loop(loop);
}
