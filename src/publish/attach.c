/*
 * The reader side: loop threads registered with liburcu's QSBR flavour.
 *
 * QSBR readers pay nothing per read; instead each registered thread must say,
 * now and then, that it holds no reference ("quiescent state"), and a grace
 * period ends when every online reader has said so. A thread that blocks
 * while online stalls every grace period, and so all reclamation. The loop
 * has a natural point: the sleep in epoll. An attached loop goes offline just
 * before it sleeps and online when it wakes (loop/ext.h's sleep function), so
 * each iteration is a quiescent state, and a sleeping loop never delays a
 * grace period. Outside hk_loop_run the thread is offline too.
 *
 * liburcu's registration is per thread and must be undone before the thread
 * exits, but one thread may create and free several loops in turn; the
 * thread-local count below keeps the thread registered while any of its loops
 * is attached. It is the thread's state, not a loop's.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "loop/ext.h"
#include "publish/internal.h"

struct hk__publish_loop {
    pthread_t thread; /* the thread that attached the loop */
};

static _Thread_local unsigned hk__attached_loops;

/* Only its address matters: the TSan token for grace periods (internal.h). */
static char hk__gp_token;

void *hk__publish_gp_token(void)
{
    return &hk__gp_token;
}

bool hk__publish_online(void)
{
    return hk__attached_loops > 0 && rcu_read_ongoing();
}

static void hk__publish_sleep(hk_loop_t *loop, int asleep)
{
    (void)loop;
    if (asleep) {
        hk__tsan_release(&hk__gp_token);
        rcu_thread_offline();
    } else {
        rcu_thread_online();
    }
}

static void hk__publish_loop_free(hk_loop_t *loop, void *state)
{
    (void)loop;
    struct hk__publish_loop *pl = state;
    bool mine = pthread_equal(pl->thread, pthread_self());
    assert(((void)"hk: an attached loop must be freed on its own thread", mine));
    /* On another thread we cannot undo that thread's registration: leave it. */
    if (mine && --hk__attached_loops == 0) {
        hk__tsan_release(&hk__gp_token);
        rcu_unregister_thread();
    }
    free(pl);
}

int hk_publish_attach(hk_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    struct hk__publish_loop *pl = hk__loop_ext_get(loop, HK__EXT_PUBLISH);
    if (pl)
        return pthread_equal(pl->thread, pthread_self()) ? 0 : -EXDEV;
    pl = malloc(sizeof *pl);
    if (!pl)
        return -ENOMEM;
    pl->thread = pthread_self();
    bool running = hk__loop_running(loop);
    if (hk__attached_loops++ == 0) {
        rcu_register_thread(); /* registers online */
        if (!running)
            rcu_thread_offline();
    } else if (running && !rcu_read_ongoing()) {
        /* Another attached loop of this thread is stopped; this one is running. */
        rcu_thread_online();
    }
    hk__loop_ext_set(loop, HK__EXT_PUBLISH, pl, hk__publish_loop_free);
    hk__loop_set_sleep_fn(loop, hk__publish_sleep);
    return 0;
}

/*
 * liburcu asks call_rcu's caller to be a registered, online reader (it reads
 * its per-CPU helper table under RCU). A setter on an attached loop's thread
 * is one, or can briefly be; any other thread registers for the call.
 */
void hk__publish_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *head))
{
    if (hk__attached_loops == 0) {
        rcu_register_thread();
        call_rcu(head, fn);
        rcu_unregister_thread();
    } else if (!rcu_read_ongoing()) {
        rcu_thread_online();
        call_rcu(head, fn);
        rcu_thread_offline();
    } else {
        call_rcu(head, fn);
    }
}
