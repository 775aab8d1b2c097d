/*
 * The thread pool: a fixed set of workers, one FIFO queue per work class and a
 * cap per class.
 *
 * Why classes: libuv runs file operations, getaddrinfo and user work in one
 * queue on four threads. Four slow DNS look-ups occupy every thread and every
 * file read of the process waits behind them. Here a class may occupy at most
 * cap[class] workers; a worker takes the oldest job of the first class (in
 * priority order) that is below its cap. With the default caps, slow work can
 * hold at most threads - 1 workers, so fast work always finds one.
 *
 * Workers wait on one condition variable. It is signalled when a job is
 * queued and when a job finishes (a capped class may now run); a woken worker
 * that finds nothing it may take waits again, and then no other worker could
 * have taken anything either, so one signal per event suffices.
 */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop/ext.h"
#include "pool/internal.h"

static void hk__queue_push(struct hk__work_queue *q, hk_work_t *w)
{
    w->_next = NULL;
    w->_prev = q->tail;
    if (q->tail)
        q->tail->_next = w;
    else
        q->head = w;
    q->tail = w;
    q->len++;
}

static void hk__queue_remove(struct hk__work_queue *q, hk_work_t *w)
{
    if (w->_prev)
        w->_prev->_next = w->_next;
    else
        q->head = w->_next;
    if (w->_next)
        w->_next->_prev = w->_prev;
    else
        q->tail = w->_prev;
    w->_next = w->_prev = NULL;
    q->len--;
}

/* The next job a worker may run, or NULL. Called with the lock held. */
static hk_work_t *hk__pool_take(hk_pool_t *pool)
{
    for (int c = 0; c < HK_WORK_CLASSES; c++) {
        struct hk__work_queue *q = &pool->queue[c];
        if (q->head && pool->running[c] < pool->cap[c]) {
            hk_work_t *w = q->head;
            hk__queue_remove(q, w);
            pool->running[c]++;
            __atomic_store_n(&w->_state, HK__WORK_RUNNING, __ATOMIC_RELEASE);
            return w;
        }
    }
    return NULL;
}

static void *hk__pool_worker(void *arg)
{
    hk_pool_t *pool = arg;
    /* Linux applies setpriority to one thread when given its tid. */
    if (pool->nice > 0 &&
        setpriority(PRIO_PROCESS, (id_t)gettid(), getpriority(PRIO_PROCESS, 0) + pool->nice) < 0) {
        /* EACCES cannot happen when lowering priority; ignore the rest. */
    }
    pthread_mutex_lock(&pool->lock);
    pool->started++;
    pthread_cond_broadcast(&pool->ready);
    for (;;) {
        hk_work_t *w = hk__pool_take(pool);
        if (!w) {
            if (pool->shutdown)
                break;
            pthread_cond_wait(&pool->wake, &pool->lock);
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        w->_fn(w);
        pthread_mutex_lock(&pool->lock);
        int c = w->_class;
        pool->running[c]--;
        pool->stats.completed[c]++;
        if (pool->queue[c].head)
            pthread_cond_signal(&pool->wake);
        /* Post under the pool lock: hk_work_cancel reads the state under it. */
        hk__port_post(w, 0);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static unsigned hk__default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 4 ? 4 : (unsigned)n;
}

int hk_pool_new(hk_pool_t **poolp, const hk_pool_options_t *opts)
{
    if (!poolp)
        return -EINVAL;
    hk_pool_options_t o = {0};
    if (opts)
        o = *opts;
    if (o.threads == 0)
        o.threads = hk__default_threads();
    if (o.threads > 1024)
        return -EINVAL;
    if (o.cap[HK_WORK_FAST] == 0)
        o.cap[HK_WORK_FAST] = o.threads;
    if (o.cap[HK_WORK_SLOW] == 0) {
        unsigned half = o.threads / 2;
        o.cap[HK_WORK_SLOW] = half < 1 ? 1 : half;
        if (o.threads > 1 && o.cap[HK_WORK_SLOW] > o.threads - 1)
            o.cap[HK_WORK_SLOW] = o.threads - 1;
    }
    for (int c = 0; c < HK_WORK_CLASSES; c++) {
        if (o.cap[c] > o.threads)
            return -EINVAL;
    }
    if (o.nice < -1 || o.nice > 19)
        return -EINVAL;
    if (o.nice == 0)
        o.nice = 5;

    hk_pool_t *pool = calloc(1, sizeof *pool);
    if (!pool)
        return -ENOMEM;
    pool->threads = calloc(o.threads, sizeof *pool->threads);
    if (!pool->threads) {
        free(pool);
        return -ENOMEM;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->ready, NULL);
    memcpy(pool->cap, o.cap, sizeof pool->cap);
    pool->nice = o.nice;

    /* Workers block every signal: signals belong to the loops' signalfds. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = 0;
    for (unsigned i = 0; i < o.threads; i++) {
        err = -pthread_create(&pool->threads[i], NULL, hk__pool_worker, pool);
        if (err < 0)
            break;
        char name[16];
        snprintf(name, sizeof name, "hk-pool-%u", i % 10000u);
        pthread_setname_np(pool->threads[i], name);
        pool->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err < 0) {
        hk_pool_free(pool);
        return err;
    }
    /*
     * Return only once every worker runs: a fork() while a thread is still
     * starting can leave a lock of the thread machinery held in the child
     * (ASan's thread registry did: the child's own new workers then never
     * started, and its work never ran).
     */
    pthread_mutex_lock(&pool->lock);
    while (pool->started < pool->nthreads)
        pthread_cond_wait(&pool->ready, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    *poolp = pool;
    return 0;
}

static bool hk__pool_is_worker(const hk_pool_t *pool)
{
    for (unsigned i = 0; i < pool->nthreads; i++) {
        if (pthread_equal(pool->threads[i], pthread_self()))
            return true;
    }
    return false;
}

int hk_pool_free(hk_pool_t *pool)
{
    if (!pool)
        return -EINVAL;
    if (pool->is_default || hk__pool_is_worker(pool))
        return -EBUSY;
    pthread_mutex_lock(&pool->lock);
    pool->shutdown = 1;
    for (int c = 0; c < HK_WORK_CLASSES; c++) {
        while (pool->queue[c].head) {
            hk_work_t *w = pool->queue[c].head;
            hk__queue_remove(&pool->queue[c], w);
            pool->stats.cancelled[c]++;
            hk__port_post(w, -ECANCELED);
        }
    }
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->ready);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
    return 0;
}

/*
 * The default pool is created on first use. After fork() only the forking
 * thread exists in the child: the parent's workers are gone and its lock may
 * have been held by one of them, so the child forgets that pool (leaked: it
 * cannot be freed safely) and creates its own on first use.
 */
static pthread_mutex_t hk__default_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t hk__atfork_once = PTHREAD_ONCE_INIT;
static hk_pool_t *hk__default_pool;

static void hk__default_prepare(void)
{
    pthread_mutex_lock(&hk__default_lock);
}

static void hk__default_parent(void)
{
    pthread_mutex_unlock(&hk__default_lock);
}

static void hk__default_child(void)
{
    pthread_mutex_init(&hk__default_lock, NULL);
    __atomic_store_n(&hk__default_pool, NULL, __ATOMIC_RELEASE);
}

static void hk__atfork_register(void)
{
    pthread_atfork(hk__default_prepare, hk__default_parent, hk__default_child);
}

static hk_pool_t *hk__default_create(void)
{
    hk_pool_options_t o = {0};
    const char *env = getenv("HARK_POOL_THREADS");
    if (env) {
        long n = strtol(env, NULL, 10);
        if (n > 0 && n <= 1024)
            o.threads = (unsigned)n;
    }
    hk_pool_t *pool;
    if (hk_pool_new(&pool, &o) < 0)
        return NULL;
    pool->is_default = 1;
    return pool;
}

hk_pool_t *hk_pool_default(void)
{
    hk_pool_t *pool = __atomic_load_n(&hk__default_pool, __ATOMIC_ACQUIRE);
    if (pool)
        return pool;
    pthread_once(&hk__atfork_once, hk__atfork_register);
    pthread_mutex_lock(&hk__default_lock);
    pool = hk__default_pool;
    if (!pool) {
        pool = hk__default_create();
        __atomic_store_n(&hk__default_pool, pool, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&hk__default_lock);
    return pool;
}

unsigned hk_pool_threads(const hk_pool_t *pool)
{
    return pool->nthreads;
}

unsigned hk_pool_cap(const hk_pool_t *pool, hk_work_class_t cls)
{
    return (unsigned)cls < HK_WORK_CLASSES ? pool->cap[cls] : 0;
}

int hk_work_submit(hk_loop_t *loop, hk_pool_t *pool, hk_work_t *work, hk_work_class_t cls,
                   hk_work_fn fn, hk_work_done_cb done)
{
    if (!loop || !work || !fn || !done || (unsigned)cls >= HK_WORK_CLASSES)
        return -EINVAL;
    if (__atomic_load_n(&work->_state, __ATOMIC_ACQUIRE) != HK__WORK_IDLE)
        return -EBUSY;
    if (!pool)
        pool = hk_pool_default();
    if (!pool)
        return -ENOMEM;
    int r = hk__port_get(loop);
    if (r < 0)
        return r;
    work->loop = loop;
    work->_pool = pool;
    work->_fn = fn;
    work->_done = done;
    work->_class = (int)cls;
    work->_status = 0;

    pthread_mutex_lock(&pool->lock);
    if (pool->shutdown) {
        pthread_mutex_unlock(&pool->lock);
        return -ESHUTDOWN;
    }
    __atomic_store_n(&work->_state, HK__WORK_QUEUED, __ATOMIC_RELEASE);
    hk__queue_push(&pool->queue[cls], work);
    pool->stats.submitted[cls]++;
    pthread_cond_signal(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    hk__loop_req_start(loop);
    return 0;
}

int hk_work_cancel(hk_work_t *work)
{
    if (!work || !work->_pool)
        return -EINVAL;
    /*
     * Decide from the state alone before touching the pool: work that is
     * posted (finished, cancelled, or cancelled by hk_pool_free) may belong to
     * a pool that no longer exists.
     */
    int state = __atomic_load_n(&work->_state, __ATOMIC_ACQUIRE);
    if (state == HK__WORK_IDLE)
        return -EINVAL;
    if (state == HK__WORK_POSTED)
        return -EBUSY;
    hk_pool_t *pool = work->_pool;
    pthread_mutex_lock(&pool->lock);
    if (__atomic_load_n(&work->_state, __ATOMIC_ACQUIRE) != HK__WORK_QUEUED) {
        pthread_mutex_unlock(&pool->lock);
        return -EBUSY;
    }
    hk__queue_remove(&pool->queue[work->_class], work);
    pool->stats.cancelled[work->_class]++;
    hk__port_post(work, -ECANCELED);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int hk_pool_stats(hk_pool_t *pool, hk_pool_stats_t *out)
{
    if (!pool || !out)
        return -EINVAL;
    pthread_mutex_lock(&pool->lock);
    *out = pool->stats;
    for (int c = 0; c < HK_WORK_CLASSES; c++) {
        out->running[c] = pool->running[c];
        out->queued[c] = pool->queue[c].len;
    }
    pthread_mutex_unlock(&pool->lock);
    return 0;
}
