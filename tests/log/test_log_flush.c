/*
 * hk_log_flush on a busy logger: it waits for the lines logged before the
 * call, not for a moment when every ring is empty. Producers that log
 * nonstop into a slow sink keep the rings full for as long as they run, so a
 * flush that waited for empty rings would never end; one that waits for its
 * own lines ends once those are through the sink. Runs under TSan too
 * (label "threads").
 */
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>

LOG_TMPDIR_SUITE(log_flush, 90);

enum { PRODUCERS = 2 };

static _Atomic int producers_stop;

static void *producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    /* Nonstop: most of these lines are dropped, which is the point (a busy server). */
    for (int i = 0; !atomic_load_explicit(&producers_stop, memory_order_relaxed); i++)
        (void)hk_log(HK_LOG_INFO, "busy", "thread=%d i=%d pad=%s", id, i,
                     "0123456789abcdefghijklmnopqrstuvwxyz");
    return NULL;
}

/*
 * A slow reader that never stops: small reads with short sleeps, so the sink
 * always takes bytes, only fewer than the producers make. Once fast is set it
 * reads as fast as it can. It reads to EOF.
 */
typedef struct slow_reader {
    int fd;
    _Atomic int fast;
    pthread_mutex_t mu;
    char *buf;
    size_t len, cap;
    pthread_t th;
} slow_reader_t;

static void *slow_reader_main(void *arg)
{
    slow_reader_t *rd = arg;
    char chunk[65536];
    for (;;) {
        int fast = atomic_load_explicit(&rd->fast, memory_order_relaxed);
        ssize_t n = read(rd->fd, chunk, fast ? sizeof chunk : 512);
        if (n <= 0)
            break;
        pthread_mutex_lock(&rd->mu);
        if (rd->cap - rd->len < (size_t)n + 1) {
            while (rd->cap - rd->len < (size_t)n + 1)
                rd->cap = rd->cap ? rd->cap * 2 : 1 << 20;
            rd->buf = realloc(rd->buf, rd->cap);
        }
        memcpy(rd->buf + rd->len, chunk, (size_t)n);
        rd->len += (size_t)n;
        rd->buf[rd->len] = '\0';
        pthread_mutex_unlock(&rd->mu);
        if (!fast)
            usleep(100);
    }
    return NULL;
}

static size_t reader_len(slow_reader_t *rd)
{
    pthread_mutex_lock(&rd->mu);
    size_t n = rd->len;
    pthread_mutex_unlock(&rd->mu);
    return n;
}

Test(log_flush, returns_while_other_threads_keep_logging)
{
    int rfd = log_open_pipe(64 * 1024);

    slow_reader_t rd = {.fd = rfd, .mu = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(pthread_create(&rd.th, NULL, slow_reader_main, &rd), 0);

    /*
     * This thread's ring is made first, so it is the oldest: the last one the
     * writer reaches in its ring list, behind the busy ones.
     */
    cr_assert_eq(HK_LOGI("start"), 0);
    atomic_store(&producers_stop, 0);
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, producer, (void *)(intptr_t)i), 0);

    /* Wait until the producers outrun the sink: their rings are full, lines drop. */
    hk_log_stats_t st;
    uint64_t until = mono_ns() + 30 * SEC;
    do {
        hk_log_stats(&st);
        if (st.dropped > 0)
            break;
        usleep(1000);
    } while (mono_ns() < until);
    cr_assert_gt(st.dropped, 0, "the producers never filled their rings");

    cr_assert_eq(HK_LOGI("before flush", "marker=%d", 424242), 0);
    int r = hk_log_flush(10 * SEC);
    cr_assert_eq(r, 0, "hk_log_flush: %s while other threads log", hk_err_name(r));

    /*
     * The marker was written before the flush returned: it is within the
     * first `bytes` bytes the sink got, whatever the writer wrote since.
     */
    hk_log_stats(&st);
    uint64_t sent = st.bytes;
    atomic_store_explicit(&rd.fast, 1, memory_order_relaxed);
    until = mono_ns() + 30 * SEC;
    while (reader_len(&rd) < sent && mono_ns() < until)
        usleep(1000);
    pthread_mutex_lock(&rd.mu);
    cr_assert_geq(rd.len, sent, "the reader got %zu of %llu bytes", rd.len,
                  (unsigned long long)sent);
    int found = memmem(rd.buf, sent, "msg=\"before flush\" marker=424242\n", 33) != NULL;
    pthread_mutex_unlock(&rd.mu);
    cr_assert(found, "the line logged before hk_log_flush is not among the bytes written");

    atomic_store(&producers_stop, 1);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(hk_log_close(30 * SEC), 0); /* closes the last write end: EOF */
    pthread_join(rd.th, NULL);
    close(rfd);

    hk_log_stats(&st);
    cr_assert_eq(st.lost, 0);
    /* The count of lines read must match the writer's, drop notices included. */
    cr_assert_eq(count_lines_in(rd.buf), st.written);
    free(rd.buf);
    tmpdir_clean(&td);
}
