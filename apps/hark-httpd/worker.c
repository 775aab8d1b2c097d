/*
 * A worker: one thread, one loop, its listeners' accept members, its file
 * cache, its connections. It follows the published configuration through
 * its subscriber and stops accepting when asked to drain.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "accesslog.h"
#include "conn.h"
#include "upstream.h"

const char *httpd_worker_date(httpd_worker_t *w)
{
    time_t sec = time(NULL);
    if (sec != w->date_sec) {
        w->date_sec = sec;
        hk_http_date_format(sec, w->date);
    }
    return w->date;
}

void httpd_worker_accept(hk_accept_member_t *member, int fd)
{
    httpd_worker_t *w = member->data;
    unsigned li = (unsigned)(member->group - w->server->groups);
    httpd_conn_start(w, fd, li);
}

static void on_new_gen(hk_subscriber_t *sub, void *version)
{
    httpd_worker_t *w = sub->data;
    httpd_gen_t *gen = version;
    if (!gen || gen == w->gen)
        return;
    httpd_gen_t *old = w->gen;
    w->gen = httpd_gen_ref(gen);
    httpd_gen_unref(old);
    httpd_count(&w->counters.reloads_seen, 1);
    (void)hk_loop_busy_poll(w->loop, gen->cfg->busy_poll); /* checked by the config loader */
    httpd_fcache_set_ttl(w->fcache, gen->cfg->open_file_ttl);
    httpd_upstreams_start(w); /* health checks and name lookups of the new upstreams */
}

static void snapshot(httpd_worker_t *w)
{
    hk_loop_stats_t st;
    hk_accept_stats_t acc = {0};
    hk_loop_stats(w->loop, &st);
    for (unsigned l = 0; l < w->server->nlisteners; l++) {
        hk_accept_stats_t a;
        hk_accept_member_stats(&w->server->members[l][w->index], &a);
        acc.wakeups += a.wakeups;
        acc.accepts += a.accepts;
        acc.empty += a.empty;
        acc.backoffs += a.backoffs;
    }
    /* Only this thread writes the snapshot: reading the last one needs no lock. */
    uint64_t paused = acc.backoffs - w->accept_snap.backoffs;
    pthread_mutex_lock(&w->snap_lock);
    w->snap = st;
    w->accept_snap = acc;
    pthread_mutex_unlock(&w->snap_lock);
    if (paused) {
        /*
         * The listener stopped accepting for a while (EMFILE, ENFILE, ENOBUFS
         * or ENOMEM) and left the clients in the backlog: said once a tick,
         * with what an operator needs to act on it.
         */
        struct rlimit rl = {0};
        (void)getrlimit(RLIMIT_NOFILE, &rl);
        hk_log(HK_LOG_WARN, "accept paused: out of file descriptors or memory",
               "worker=%u pauses=%llu open_conns=%llu nofile=%llu max_conns=%u", w->index,
               (unsigned long long)paused, (unsigned long long)httpd_read(&w->counters.conns_open),
               (unsigned long long)rl.rlim_cur, w->gen->cfg->max_conns);
    }
}

static void on_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    httpd_worker_t *w = (httpd_worker_t *)((char *)t - offsetof(httpd_worker_t, tick));
    snapshot(w);
}

static void on_member_closed(hk_accept_member_t *m)
{
    httpd_worker_t *w = m->data;
    atomic_fetch_add(&w->server->members_closed, 1); /* the control thread then unlistens */
}

static void on_stop(hk_async_t *a)
{
    httpd_worker_t *w = a->base.data;
    if (w->draining) {
        /* Second call: the drain deadline passed; close what is left. */
        w->forced = true;
        while (w->conns)
            httpd_conn_close(w->conns);
        hk_close(&w->stop_async.base, NULL);
        return;
    }
    w->draining = true;
    httpd_upstreams_drain(w);
    /* Stop accepting; idle connections close now, busy ones after their response. */
    for (unsigned l = 0; l < w->server->nlisteners; l++)
        hk_accept_member_close(&w->server->members[l][w->index], on_member_closed);
    httpd_conn_t *c = w->conns;
    while (c) {
        httpd_conn_t *next = c->next;
        httpd_conn_drain(c);
        c = next;
    }
    hk_close(&w->tick.base, NULL);
    hk_publish_unsubscribe(&w->sub, NULL);
    /* The loop ends when the last connection does (or at the second call). */
    hk_unref(&w->stop_async.base);
}

void *httpd_worker_main(void *arg)
{
    httpd_worker_t *w = arg;
    httpd_t *srv = w->server;
    int r = hk_loop_new(&w->loop, 0);
    if (r == 0)
        r = hk_fs_new(w->loop, &(hk_fs_options_t){.pool = srv->pool}, &w->fs);
    if (r == 0)
        r = hk_publish_subscribe(srv->publish, w->loop, &w->sub, on_new_gen);
    if (r < 0) {
        pthread_mutex_lock(&w->stop_lock);
        w->exited = true; /* no stop_async to send to */
        pthread_mutex_unlock(&w->stop_lock);
        __atomic_store_n(&w->started, r, __ATOMIC_RELEASE);
        return NULL;
    }
    w->sub.data = w;
    /* The generation of the start; the subscription delivers the current one at its first wake-up.
     */
    w->gen = httpd_gen_ref(srv->initial);
    const httpd_config_t *cfg = w->gen->cfg;
    w->fcache = httpd_fcache_new((unsigned)cfg->open_file_cache, cfg->open_file_ttl);
    (void)hk_loop_busy_poll(w->loop, cfg->busy_poll); /* checked by the config loader */
    hk_async_init(w->loop, &w->stop_async, on_stop);
    w->stop_async.base.data = w;
    hk_timer_init(w->loop, &w->tick);
    hk_timer_start_in(&w->tick, on_tick, 0, 1000000000);
    for (unsigned l = 0; l < srv->nlisteners; l++) {
        srv->members[l][w->index].data = w;
        r = hk_accept_member_start(&srv->groups[l], w->index, w->loop, httpd_worker_accept);
        if (r < 0)
            break;
    }
    __atomic_store_n(&w->started, r < 0 ? r : 1, __ATOMIC_RELEASE);
    if (r >= 0) {
        httpd_upstreams_start(w);
        hk_loop_run(w->loop, HK_RUN_DEFAULT);
    }
    /* From here on the control thread must not send: the loop is about to be freed. */
    pthread_mutex_lock(&w->stop_lock);
    w->exited = true;
    pthread_mutex_unlock(&w->stop_lock);
    if (!hk_is_closing(&w->stop_async.base))
        hk_close(&w->stop_async.base, NULL);
    hk_loop_run(w->loop, HK_RUN_NOWAIT);
    snapshot(w);
    httpd_fcache_free(w->fcache);
    w->fcache = NULL;
    hk_fs_free(w->fs);
    httpd_batch_cache_free();
    httpd_gen_unref(w->gen);
    w->gen = NULL;
    hk_loop_free(w->loop);
    return NULL;
}
