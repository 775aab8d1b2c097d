/*
 * An attached loop with busy polling whose spin keeps finding events never
 * sleeps, yet it passes between iterations: replaced versions must still be
 * freed (once, they were held for ever and hk_publish_set blocked after 128).
 */
#include "util.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    hk_publish_t *pub;
    counts_t *c;
    uint64_t start;
    int published;
    uint64_t iters;
    long freed_in_loop;
} spin_ctx_t;

static void on_ready(hk_io_t *io, unsigned rev)
{
    (void)rev;
    spin_ctx_t *x = io->base.data;
    x->iters++;
    if (!x->published) {
        /* Replace v1 by v2 from a callback: v1 is retired through call_rcu. */
        cr_assert_eq(hk_publish_set(x->pub, version_new(x->c, 2)), 0);
        x->published = 1;
    }
    /* v1 must be freed a grace period later, i.e. after this iteration ends. */
    if (atomic_load(&x->c->freed) >= 1 || hk_time_now() - x->start > UINT64_C(2000000000)) {
        x->freed_in_loop = atomic_load(&x->c->freed);
        hk_io_stop(io);
    }
}

static void run_case(uint64_t spin)
{
    counts_t c = {0};
    hk_publish_t *pub = publish_new(&c);
    cr_assert_eq(hk_publish_set(pub, version_new(&c, 1)), 0);
    hk_loop_t *loop = loop_new();
    cr_assert_eq(hk_publish_attach(loop), 0);
    cr_assert_eq(hk_loop_busy_poll(loop, spin), 0);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    char b = 'x';
    cr_assert_eq(write(p[1], &b, 1), 1); /* never read: the fd stays readable */
    spin_ctx_t x = {.pub = pub, .c = &c, .start = hk_time_now()};
    hk_io_t io;
    hk_io_init(loop, &io, p[0]);
    io.base.data = &x;
    cr_assert_eq(hk_io_start(&io, HK_READABLE, on_ready), 0);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    long freed = x.freed_in_loop;
    hk_close(&io.base, NULL);
    loop_finish(loop);
    close(p[0]);
    close(p[1]);
    cr_assert_eq(hk_publish_free(pub), 0);
#if defined(__SANITIZE_THREAD__)
    /*
     * Under TSan, rcu_barrier's own allocation and its free on liburcu's
     * call_rcu thread are ordered inside liburcu, which TSan cannot see (a
     * false race report): wait for both versions' frees instead.
     */
    for (int i = 0; i < 5000 && atomic_load(&c.freed) < 2; i++)
        usleep(1000);
    cr_assert_eq(atomic_load(&c.freed), 2);
#else
    cr_assert_eq(hk_publish_barrier(), 0);
#endif
    cr_assert_eq(freed, 1,
                 "v1 was not freed within 2 s although the loop ran %llu iterations "
                 "(no quiescent state while busy polling finds events)",
                 (unsigned long long)x.iters);
}

Test(publish_busy_poll, control_without_busy_poll, .timeout = 20)
{
    run_case(0);
}

Test(publish_busy_poll, busy_poll_loop_reports_quiescent_states, .timeout = 20)
{
    run_case(HK_LOOP_SPIN_MAX_NS);
}
