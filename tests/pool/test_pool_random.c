/*
 * The pool under random submits, cancels and resubmits from done callbacks,
 * then freed from a done callback with work still queued: every done
 * callback runs exactly once, every job runs or is cancelled exactly once.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>
#include <pthread.h>
#include <string.h>

#define NJ 2000

typedef struct rj {
    hk_work_t work;
    int submitted; /* submissions */
    int done;      /* done calls */
    int ran;       /* atomic: fn runs */
    int cancelled; /* -ECANCELED seen */
    int outstanding;
    int again; /* resubmit from done this many more times */
} rj_t;

static rj_t J[NJ];
static hk_pool_t *g_pool;
static int g_freed, g_bad, g_done_total;
static unsigned g_rng = 99;
static unsigned rnd(void)
{
    g_rng = g_rng * 1103515245u + 12345u;
    return (g_rng >> 8) & 0xffffff;
}

static void fn(hk_work_t *w)
{
    rj_t *j = (rj_t *)w;
    __atomic_fetch_add(&j->ran, 1, __ATOMIC_SEQ_CST);
    for (volatile int i = 0; i < (int)(((uintptr_t)w >> 4) % 2000); i++)
        ;
}

static void done(hk_work_t *w, int status)
{
    rj_t *j = (rj_t *)w;
    j->done++;
    g_done_total++;
    if (!j->outstanding)
        g_bad++;
    j->outstanding = 0;
    if (status == -ECANCELED)
        j->cancelled++;
    else if (status != 0)
        g_bad++;
    if (j->again > 0 && !g_freed) {
        j->again--;
        int r = hk_work_submit(w->loop, g_pool, w, rnd() % 2, fn, done);
        if (r == 0) {
            j->submitted++;
            j->outstanding = 1;
        }
    }
    /* cancel some other job */
    rj_t *o = &J[rnd() % NJ];
    if (o->outstanding && !g_freed)
        (void)hk_work_cancel(&o->work);
    if (g_done_total == NJ / 2 && !g_freed) {
        cr_assert_eq(hk_pool_free(g_pool), 0);
        g_freed = 1;
    }
}

Test(pool_random, callbacks_exactly_once, .timeout = 60)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    hk_pool_options_t o = {.threads = 4};
    cr_assert_eq(hk_pool_new(&g_pool, &o), 0);
    memset(J, 0, sizeof J);
    for (int i = 0; i < NJ; i++) {
        J[i].again = rnd() % 3;
        cr_assert_eq(hk_work_submit(loop, g_pool, &J[i].work, rnd() % 2, fn, done), 0);
        J[i].submitted = 1;
        J[i].outstanding = 1;
        if (rnd() % 5 == 0)
            (void)hk_work_cancel(&J[i].work);
    }
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    for (int i = 0; i < NJ; i++) {
        cr_assert_eq(J[i].done, J[i].submitted, "job %d: %d done for %d submissions", i, J[i].done,
                     J[i].submitted);
        cr_assert_leq(J[i].ran + J[i].cancelled, J[i].submitted);
        cr_assert_eq(J[i].ran + J[i].cancelled, J[i].done, "job %d ran %d cancelled %d done %d", i,
                     J[i].ran, J[i].cancelled, J[i].done);
    }
    cr_assert_eq(g_bad, 0);
    cr_assert_eq(hk_loop_free(loop), 0);
}
