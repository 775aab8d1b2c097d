/*
 * hk_co_blocking: blocking functions on the thread pool.
 *
 * Why a bridge thread: pool completions are delivered to an hk_loop_t (its
 * async wake-up), and a loop belongs to one thread, while coroutines run on
 * any worker. So the runtime keeps one small loop on its own thread:
 * coroutines queue requests and poke it with hk_async_send (thread-safe); it
 * submits them to the pool, and each completion wakes its coroutine, which
 * waits without cancellation because the request lives on its stack.
 * The same loop drives the runtime's resolver for hk_co_resolve (net.c):
 * each wake-up starts queued lookups and cancels abandoned ones.
 */
#include "co/internal.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>

static void hk__blocking_wake(hk__blocking_t *b)
{
    hk__co_wake(b->co, b->seq, 0);
}

static void hk__blocking_fn(hk_work_t *work)
{
    hk__blocking_t *b = work->data;
    b->result = b->fn(b->arg);
}

static void hk__blocking_done(hk_work_t *work, int status)
{
    hk__blocking_t *b = work->data;
    b->status = status;
    hk__blocking_wake(b);
}

static void hk__blocking_async(hk_async_t *async)
{
    hk_co_runtime_t *rt = async->base.data;
    pthread_mutex_lock(&rt->block);
    hk__blocking_t *list = rt->bhead;
    rt->bhead = NULL;
    struct hk__dnsop *dstart = rt->dhead, *dcancel = rt->dcancel;
    rt->dhead = rt->dtail = rt->dcancel = NULL;
    int stop = rt->bstop;
    pthread_mutex_unlock(&rt->block);
    hk__dns_bridge_run(rt, dstart, dcancel, stop);
    while (list) {
        hk__blocking_t *b = list;
        list = b->next;
        b->work.data = b;
        int r = hk_work_submit(rt->bloop, NULL, &b->work, HK_WORK_SLOW, hk__blocking_fn,
                               hk__blocking_done);
        if (r < 0) {
            b->status = r;
            hk__blocking_wake(b);
        }
    }
    if (stop) {
        hk__dns_bridge_stop(rt);
        hk_close(&rt->basync.base, NULL);
    }
}

static void *hk__blocking_main(void *arg)
{
    hk_co_runtime_t *rt = arg;
    sigset_t set;
    sigfillset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    hk_loop_run(rt->bloop, HK_RUN_DEFAULT);
    return NULL;
}

int hk__blocking_init(hk_co_runtime_t *rt)
{
    int r = hk_loop_new(&rt->bloop, 0);
    if (r < 0)
        return r;
    pthread_mutex_init(&rt->block, NULL);
    r = hk_async_init(rt->bloop, &rt->basync, hk__blocking_async);
    if (r == 0) {
        rt->basync.base.data = rt;
        if (pthread_create(&rt->bthread, NULL, hk__blocking_main, rt) == 0)
            return 0;
        r = -EAGAIN;
        hk_close(&rt->basync.base, NULL);
        hk_loop_run(rt->bloop, HK_RUN_NOWAIT);
    }
    pthread_mutex_destroy(&rt->block);
    hk_loop_free(rt->bloop);
    rt->bloop = NULL;
    return r;
}

void hk__blocking_fini(hk_co_runtime_t *rt)
{
    if (!rt->bloop)
        return;
    pthread_mutex_lock(&rt->block);
    rt->bstop = 1;
    pthread_mutex_unlock(&rt->block);
    hk_async_send(&rt->basync);
    pthread_join(rt->bthread, NULL);
    hk_loop_free(rt->bloop);
    rt->bloop = NULL;
    pthread_mutex_destroy(&rt->block);
    hk__dns_bridge_fini(rt);
}

int hk_co_blocking(hk_co_fn fn, void *arg, void **result)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    hk_co_runtime_t *rt = self->rt;
    hk__blocking_t b = {.fn = fn, .arg = arg, .co = self};
    hk__co_begin(self, 1);
    b.seq = self->seq;
    pthread_mutex_lock(&rt->block);
    int stop = rt->bstop;
    if (!stop) {
        b.next = rt->bhead;
        rt->bhead = &b;
    }
    pthread_mutex_unlock(&rt->block);
    if (stop)
        return -ESHUTDOWN;
    hk_async_send(&rt->basync);
    hk__co_park(self, HK_FOREVER);
    if (b.status == 0 && result)
        *result = b.result;
    return b.status;
}
