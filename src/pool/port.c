/*
 * The way back from a worker to the loop that submitted the work: one
 * completion queue per loop (a mutex-guarded list) and one internal async
 * handle. Workers push and send the async; sends coalesce, so a burst of
 * completions costs the loop one wake-up, and the loop takes the whole list
 * at once and runs the callbacks in completion order.
 */
#include <errno.h>
#include <stdlib.h>

#include "loop/ext.h"
#include "pool/internal.h"

struct hk__port {
    hk_async_t async;
    pthread_mutex_t lock;
    hk_work_t *done; /* LIFO, linked through _next */
};

static void hk__port_on_async(hk_async_t *async)
{
    struct hk__port *port = (struct hk__port *)async;
    pthread_mutex_lock(&port->lock);
    hk_work_t *list = port->done;
    port->done = NULL;
    pthread_mutex_unlock(&port->lock);

    hk_work_t *fifo = NULL;
    while (list) {
        hk_work_t *next = list->_next;
        list->_next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        hk_work_t *w = fifo;
        fifo = w->_next;
        w->_next = w->_prev = NULL;
        __atomic_store_n(&w->_state, HK__WORK_IDLE, __ATOMIC_RELEASE); /* done may resubmit */
        hk_loop_t *loop = w->loop;
        w->_done(w, w->_status);
        hk__loop_req_done(loop);
    }
}

static void hk__port_free(hk_loop_t *loop, void *state)
{
    (void)loop;
    struct hk__port *port = state;
    hk__async_release(&port->async);
    pthread_mutex_destroy(&port->lock);
    free(port);
}

/* Creates the loop's port on first use. Loop thread only. */
int hk__port_get(hk_loop_t *loop)
{
    if (hk__loop_ext_get(loop, HK__EXT_POOL))
        return 0;
    struct hk__port *port = calloc(1, sizeof *port);
    if (!port)
        return -ENOMEM;
    pthread_mutex_init(&port->lock, NULL);
    int r = hk__async_init_internal(loop, &port->async, hk__port_on_async);
    if (r < 0) {
        pthread_mutex_destroy(&port->lock);
        free(port);
        return r;
    }
    hk__loop_ext_set(loop, HK__EXT_POOL, port, hk__port_free);
    return 0;
}

/* Any thread: hands finished (or cancelled) work back to its loop. */
int hk__port_post(hk_work_t *work, int status)
{
    struct hk__port *port = hk__loop_ext_get(work->loop, HK__EXT_POOL);
    work->_status = status;
    /*
     * Send while holding the lock: once the loop can take this work (it needs
     * the lock), it may run done and free the loop, so the worker must be
     * finished with the loop's async by then.
     */
    pthread_mutex_lock(&port->lock);
    __atomic_store_n(&work->_state, HK__WORK_POSTED, __ATOMIC_RELEASE);
    work->_next = port->done;
    port->done = work;
    int r = hk_async_send(&port->async);
    pthread_mutex_unlock(&port->lock);
    return r;
}
