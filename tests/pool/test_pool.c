/*
 * Thread pool: real threads, real loops. Class caps and cancellation are
 * checked by counting (which jobs ran, in which state the pool was), never by
 * timing: slow jobs block on a gate that the test opens only after the fast
 * job has completed, so a starved fast job would hang (and the guard timer
 * fails the test) instead of merely being slow.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>
#include <pthread.h>
#include <string.h>

typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open;
    int waiting;
} gate_t;

static void gate_init(gate_t *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = 0;
    g->waiting = 0;
}

static void gate_pass(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->waiting++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    g->waiting--;
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void gate_wait_for(gate_t *g, int n)
{
    pthread_mutex_lock(&g->lock);
    while (g->waiting < n)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_destroy(gate_t *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

typedef struct job {
    hk_work_t work;
    gate_t *gate;
    int ran;
    int done;
    int status;
    pthread_t ran_on, done_on;
    int *counter; /* incremented in done */
    int slow_done_when_fast_done;
} job_t;

static int g_slow_done;

static void job_fn(hk_work_t *w)
{
    job_t *j = (job_t *)w;
    j->ran_on = pthread_self();
    if (j->gate)
        gate_pass(j->gate);
    __atomic_store_n(&j->ran, 1, __ATOMIC_SEQ_CST);
}

static void job_done(hk_work_t *w, int status)
{
    job_t *j = (job_t *)w;
    j->done++;
    j->status = status;
    j->done_on = pthread_self();
    if (j->counter)
        (*j->counter)++;
}

static void slow_done(hk_work_t *w, int status)
{
    job_done(w, status);
    g_slow_done++;
}

static void fast_done(hk_work_t *w, int status)
{
    job_t *j = (job_t *)w;
    job_done(w, status);
    j->slow_done_when_fast_done = g_slow_done;
    hk_loop_stop(w->loop);
}

static void guard_cb(hk_timer_t *t, uint64_t e)
{
    (void)e;
    cr_assert_fail("guard timer fired: the loop waited too long");
    hk_loop_stop(t->base.loop);
}

static hk_loop_t *new_loop(hk_timer_t *guard)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    cr_assert_eq(hk_timer_init(loop, guard), 0);
    cr_assert_eq(hk_timer_start_in(guard, guard_cb, INT64_C(20000000000), 0), 0);
    hk_unref(&guard->base);
    return loop;
}

static void free_loop(hk_loop_t *loop, hk_timer_t *guard)
{
    hk_close(&guard->base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_eq(hk_loop_free(loop), 0);
}

Test(pool, every_job_runs_on_a_worker_and_completes_on_the_loop)
{
    hk_timer_t guard;
    hk_loop_t *loop = new_loop(&guard);
    hk_pool_t *pool;
    cr_assert_eq(hk_pool_new(&pool, &(hk_pool_options_t){.threads = 4}), 0);
    cr_assert_eq(hk_pool_threads(pool), 4);
    enum { N = 200 };
    static job_t jobs[N];
    memset(jobs, 0, sizeof jobs);
    int completed = 0;
    for (int i = 0; i < N; i++) {
        jobs[i].counter = &completed;
        cr_assert_eq(hk_work_submit(loop, pool, &jobs[i].work, i % 2 ? HK_WORK_SLOW : HK_WORK_FAST,
                                    job_fn, job_done),
                     0);
    }
    /* Outstanding work keeps the loop alive: DEFAULT returns when all is done. */
    cr_assert_eq(hk_loop_run(loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(completed, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(jobs[i].done, 1);
        cr_assert_eq(jobs[i].status, 0);
        cr_assert(jobs[i].ran);
        cr_assert(!pthread_equal(jobs[i].ran_on, pthread_self()), "ran on the loop thread");
        cr_assert(pthread_equal(jobs[i].done_on, pthread_self()), "done ran off the loop thread");
    }
    hk_pool_stats_t st;
    cr_assert_eq(hk_pool_stats(pool, &st), 0);
    cr_assert_eq(st.submitted[HK_WORK_FAST] + st.submitted[HK_WORK_SLOW], N);
    cr_assert_eq(st.completed[HK_WORK_FAST] + st.completed[HK_WORK_SLOW], N);
    cr_assert_eq(hk_pool_free(pool), 0);
    free_loop(loop, &guard);
}

Test(pool, eight_slow_jobs_cannot_starve_a_fast_one)
{
    hk_timer_t guard;
    hk_loop_t *loop = new_loop(&guard);
    hk_pool_t *pool;
    cr_assert_eq(hk_pool_new(&pool, &(hk_pool_options_t){.threads = 4}), 0);
    unsigned slow_cap = hk_pool_cap(pool, HK_WORK_SLOW);
    cr_assert_lt(slow_cap, 4, "slow work must leave a worker free");
    gate_t gate;
    gate_init(&gate);
    job_t slow[8], fast;
    memset(slow, 0, sizeof slow);
    memset(&fast, 0, sizeof fast);
    g_slow_done = 0;
    for (int i = 0; i < 8; i++) {
        slow[i].gate = &gate;
        cr_assert_eq(hk_work_submit(loop, pool, &slow[i].work, HK_WORK_SLOW, job_fn, slow_done), 0);
    }
    /* Wait until the slow class holds every worker it may hold. */
    gate_wait_for(&gate, (int)slow_cap);
    hk_pool_stats_t st;
    hk_pool_stats(pool, &st);
    cr_assert_eq(st.running[HK_WORK_SLOW], slow_cap);
    cr_assert_eq(st.queued[HK_WORK_SLOW], 8 - slow_cap);

    cr_assert_eq(hk_work_submit(loop, pool, &fast.work, HK_WORK_FAST, job_fn, fast_done), 0);
    hk_loop_run(loop, HK_RUN_DEFAULT); /* fast_done stops the loop */
    cr_assert_eq(fast.done, 1);
    cr_assert_eq(fast.status, 0);
    cr_assert_eq(fast.slow_done_when_fast_done, 0, "the fast job waited for slow ones");
    hk_pool_stats(pool, &st);
    cr_assert_leq(st.running[HK_WORK_SLOW], slow_cap, "slow class exceeded its cap");

    gate_open(&gate);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_eq(g_slow_done, 8);
    cr_assert_eq(hk_pool_free(pool), 0);
    gate_destroy(&gate);
    free_loop(loop, &guard);
}

Test(pool, queued_work_can_be_cancelled)
{
    hk_timer_t guard;
    hk_loop_t *loop = new_loop(&guard);
    hk_pool_t *pool;
    cr_assert_eq(hk_pool_new(&pool, &(hk_pool_options_t){.threads = 1}), 0);
    gate_t gate;
    gate_init(&gate);
    job_t blocker = {.gate = &gate}, victim = {0}, other = {0};
    cr_assert_eq(hk_work_submit(loop, pool, &blocker.work, HK_WORK_FAST, job_fn, job_done), 0);
    gate_wait_for(&gate, 1); /* the only worker is busy */
    cr_assert_eq(hk_work_submit(loop, pool, &victim.work, HK_WORK_FAST, job_fn, job_done), 0);
    cr_assert_eq(hk_work_submit(loop, pool, &other.work, HK_WORK_FAST, job_fn, job_done), 0);
    cr_assert_eq(hk_work_submit(loop, pool, &victim.work, HK_WORK_FAST, job_fn, job_done), -EBUSY);

    cr_assert_eq(hk_work_cancel(&victim.work), 0);
    cr_assert_eq(hk_work_cancel(&victim.work), -EBUSY, "cancelled twice");
    cr_assert_eq(hk_work_cancel(&blocker.work), -EBUSY, "running work cannot be cancelled");
    cr_assert_eq(victim.done, 0, "the done callback runs from the loop, not inside cancel");

    gate_open(&gate);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_eq(victim.done, 1);
    cr_assert_eq(victim.status, -ECANCELED);
    cr_assert_eq(victim.ran, 0, "cancelled work ran");
    cr_assert_eq(blocker.status, 0);
    cr_assert_eq(other.status, 0);
    cr_assert(other.ran);
    cr_assert_eq(hk_work_cancel(&other.work), -EINVAL, "finished work is not cancellable");

    hk_pool_stats_t st;
    hk_pool_stats(pool, &st);
    cr_assert_eq(st.cancelled[HK_WORK_FAST], 1);
    cr_assert_eq(hk_pool_free(pool), 0);
    gate_destroy(&gate);
    free_loop(loop, &guard);
}

static void *free_pool_thread(void *pool)
{
    cr_assert_eq(hk_pool_free(pool), 0);
    return NULL;
}

Test(pool, freeing_a_pool_cancels_its_queue)
{
    hk_timer_t guard;
    hk_loop_t *loop = new_loop(&guard);
    hk_pool_t *pool;
    cr_assert_eq(hk_pool_new(&pool, &(hk_pool_options_t){.threads = 1}), 0);
    gate_t gate;
    gate_init(&gate);
    job_t blocker = {.gate = &gate}, queued[5];
    memset(queued, 0, sizeof queued);
    cr_assert_eq(hk_work_submit(loop, pool, &blocker.work, HK_WORK_SLOW, job_fn, job_done), 0);
    gate_wait_for(&gate, 1);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(hk_work_submit(loop, pool, &queued[i].work, HK_WORK_FAST, job_fn, job_done),
                     0);
    /* Free from another thread (it joins the worker, which waits on the gate). */
    pthread_t t;
    pthread_create(&t, NULL, free_pool_thread, pool);
    hk_loop_run(loop, HK_RUN_ONCE); /* cancellations arrive */
    gate_open(&gate);
    pthread_join(t, NULL);
    /* The pool is gone: cancelling its posted work must not touch it. */
    for (int i = 0; i < 5; i++) {
        int r = hk_work_cancel(&queued[i].work);
        cr_assert(r == -EBUSY || r == -EINVAL, "cancel after free: %d", r);
    }
    hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_eq(blocker.status, 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(queued[i].done, 1);
        cr_assert_eq(queued[i].status, -ECANCELED);
        cr_assert_eq(queued[i].ran, 0);
    }
    gate_destroy(&gate);
    free_loop(loop, &guard);
}

Test(pool, bad_input_is_refused_and_the_loop_stays_usable)
{
    hk_timer_t guard;
    hk_loop_t *loop = new_loop(&guard);
    job_t j = {0};
    cr_assert_eq(hk_work_submit(loop, NULL, &j.work, HK_WORK_FAST, NULL, job_done), -EINVAL);
    cr_assert_eq(hk_work_submit(loop, NULL, &j.work, HK_WORK_FAST, job_fn, NULL), -EINVAL);
    cr_assert_eq(hk_work_submit(loop, NULL, &j.work, (hk_work_class_t)7, job_fn, job_done),
                 -EINVAL);
    cr_assert_eq(hk_work_cancel(&j.work), -EINVAL);
    cr_assert_eq(j.done, 0, "a failed call invoked its callback");
    hk_pool_t *pool;
    cr_assert_eq(hk_pool_new(&pool, &(hk_pool_options_t){.threads = 2, .cap = {3, 1}}), -EINVAL);
    cr_assert_eq(hk_pool_free(hk_pool_default()), -EBUSY, "the default pool is not freed");

    /* The default pool works, and hk_loop_free waits for outstanding work. */
    cr_assert_eq(hk_work_submit(loop, NULL, &j.work, HK_WORK_FAST, job_fn, job_done), 0);
    cr_assert_eq(hk_loop_free(loop), -EBUSY);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_eq(j.done, 1);
    /* done may resubmit: the struct is idle again. */
    cr_assert_eq(hk_work_submit(loop, NULL, &j.work, HK_WORK_SLOW, job_fn, job_done), 0);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    cr_assert_eq(j.done, 2);
    free_loop(loop, &guard);
}

/* Four loops on four threads share the default pool; each gets its own completions. */
typedef struct loop_thread {
    int completed;
    int wrong_thread;
} loop_thread_t;

typedef struct tagged_job {
    hk_work_t work;
    loop_thread_t *owner;
    pthread_t loop_thread;
} tagged_job_t;

static void tagged_fn(hk_work_t *w)
{
    (void)w;
}

static void tagged_done(hk_work_t *w, int status)
{
    tagged_job_t *j = (tagged_job_t *)w;
    cr_assert_eq(status, 0);
    if (!pthread_equal(j->loop_thread, pthread_self()))
        j->owner->wrong_thread++;
    j->owner->completed++;
}

static void *loop_thread_main(void *arg)
{
    loop_thread_t *lt = arg;
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    enum { N = 500 };
    tagged_job_t *jobs = calloc(N, sizeof *jobs);
    for (int i = 0; i < N; i++) {
        jobs[i].owner = lt;
        jobs[i].loop_thread = pthread_self();
        cr_assert_eq(hk_work_submit(loop, NULL, &jobs[i].work, i % 3 ? HK_WORK_FAST : HK_WORK_SLOW,
                                    tagged_fn, tagged_done),
                     0);
    }
    hk_loop_run(loop, HK_RUN_DEFAULT);
    free(jobs);
    cr_assert_eq(hk_loop_free(loop), 0);
    return NULL;
}

Test(pool, loops_on_several_threads_share_the_default_pool)
{
    loop_thread_t lts[4];
    pthread_t t[4];
    memset(lts, 0, sizeof lts);
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, loop_thread_main, &lts[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(lts[i].completed, 500);
        cr_assert_eq(lts[i].wrong_thread, 0);
    }
}
