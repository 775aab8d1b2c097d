/*
 * The default pool in a fork child. hk_loop_fork makes a loop usable in the
 * child (loop.h), and hk_fs/hk_dns created there use the default pool; if the
 * parent had already created it, its workers do not exist in the child, and
 * work submitted there never runs (the loop waits for ever).
 */
#include <criterion/criterion.h>
#include <hark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_ran, g_done, g_status = 1;

static void job_fn(hk_work_t *w)
{
    (void)w;
    __atomic_store_n(&g_ran, 1, __ATOMIC_SEQ_CST);
}

static void job_done(hk_work_t *w, int status)
{
    (void)w;
    g_done++;
    g_status = status;
}

static void guard_cb(hk_timer_t *t, uint64_t e)
{
    (void)e;
    hk_loop_stop(t->base.loop); /* 10 s: the work never came back */
}

/* Submits one job to the default pool and runs the loop; returns how many done callbacks ran. */
static int run_one_job(void)
{
    hk_loop_t *loop;
    hk_timer_t guard;
    hk_work_t w = {0};
    g_ran = g_done = 0;
    if (hk_loop_new(&loop, 0) < 0)
        return -1;
    hk_timer_init(loop, &guard);
    hk_timer_start_in(&guard, guard_cb, INT64_C(10000000000), 0);
    hk_unref(&guard.base);
    if (hk_work_submit(loop, NULL, &w, HK_WORK_FAST, job_fn, job_done) < 0)
        return -1;
    hk_loop_run(loop, HK_RUN_DEFAULT);
    hk_close(&guard.base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    if (hk_loop_free(loop) < 0)
        return -1;
    return g_done == 1 && g_status == 0 ? 1 : 0;
}

Test(pool_fork, the_default_pool_works_in_a_fork_child, .timeout = 30)
{
    /* The parent uses the default pool first (as any program using hk_fs would). */
    cr_assert_eq(run_one_job(), 1);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* A worker may have held the pool's lock at fork: the child may block in submit. */
        alarm(20);
        _exit(run_one_job() == 1 ? 0 : 1);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(!WIFSIGNALED(st),
              "the child hung (killed by signal %d after 20 s, e.g. in "
              "hk_work_submit on a pool lock held by a worker at fork)",
              WTERMSIG(st));
    cr_assert_eq(WEXITSTATUS(st), 0, "in the child, work on the default pool never completed");
}
