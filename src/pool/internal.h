/* Private parts of the thread pool. */
#ifndef HK_POOL_INTERNAL_H
#define HK_POOL_INTERNAL_H

#include <pthread.h>

#include "hark/pool.h"

enum hk__work_state {
    HK__WORK_IDLE = 0, /* never submitted, or its done callback has started */
    HK__WORK_QUEUED,   /* in a class queue */
    HK__WORK_RUNNING,  /* on a worker */
    HK__WORK_POSTED,   /* finished or cancelled; done callback pending on the loop */
};

struct hk__work_queue {
    hk_work_t *head, *tail;
    unsigned len;
};

struct hk_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* work arrived or a class cap freed up */
    pthread_cond_t ready; /* a worker started (hk_pool_new waits for all of them) */
    pthread_t *threads;
    unsigned nthreads;
    unsigned started; /* workers that have entered hk__pool_worker */
    unsigned cap[HK_WORK_CLASSES];
    unsigned running[HK_WORK_CLASSES];
    struct hk__work_queue queue[HK_WORK_CLASSES];
    int nice; /* added to the workers' nice value; <= 0: unchanged */
    int shutdown;
    int is_default;
    hk_pool_stats_t stats;
};

/* port.c: the per-loop completion queue. */
int hk__port_post(hk_work_t *work, int status);
int hk__port_get(hk_loop_t *loop);

#endif
