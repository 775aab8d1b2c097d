/*
 * The daemon: scans on the pool, verdicts on the loop.
 *
 * Why the pool: a full scan is thousands of /proc system calls (for 1,000
 * processes with 20 fds each, 20-40 ms when their fd tables come from the
 * memo, 55-90 ms when all are read, more on a loaded machine); on the loop
 * thread that would delay /metrics requests and netlink reads by as much.
 * So the scan runs as HK_WORK_SLOW jobs, one per shard of the pids, each
 * with its own scratch memory and fd-table memo (scan.c, memo.c), and only
 * their merged result (a flat snapshot) is touched on the loop, where the
 * baselines live, so baselines need no lock. One scan is in flight at a time;
 * a timer tick or exec event that arrives meanwhile sets a flag and the next
 * scan starts from the done callback. The state file is written by a pool
 * job too (fsync), from a buffer serialised on the loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hark/error.h"
#include "hark/log.h"
#include "metrics.h"
#include "netlink.h"
#include "report.h"
#include "watch_internal.h"

static int pid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static int was_flagged(const watch_t *w, pid_t pid)
{
    return w->nflagged && bsearch(&pid, w->flagged, w->nflagged, sizeof pid, pid_cmp) != NULL;
}

static int is_service(const watch_t *w, const char *exe)
{
    for (size_t i = 0; i < w->cfg.nservices; i++)
        if (!strcmp(w->cfg.services[i], exe))
            return 1;
    return 0;
}

static void save_state(watch_t *w);

/* Judges every process of the snapshot, then folds the benign samples in. */
static void evaluate(watch_t *w, int partial)
{
    scan_t *sc = &w->scan;
    pid_t *now = malloc((sc->nprocs + w->nflagged + 1) * sizeof *now);
    size_t nnow = 0;
    if (partial && now) { /* a partial scan keeps the others' flags */
        memcpy(now, w->flagged, w->nflagged * sizeof *now);
        nnow = w->nflagged;
    }
    uint64_t epolls = 0, entries = 0, kinds[WK_KINDS] = {0};
    for (size_t i = 0; i < sc->nprocs; i++) {
        const proc_rec_t *p = &sc->procs[i];
        const char *exe = scan_exe(sc, p);
        int cls = p->listening || is_service(w, exe) ? CLASS_NET : CLASS_OTHER;
        epolls += p->epolls;
        entries += p->entries;
        for (int k = 0; k < WK_KINDS; k++)
            kinds[k] += p->kinds[k];
        bl_entry_t *e = baseline_get(&w->bl, exe, cls, 1);
        if (!e)
            continue; /* out of memory: this process goes unjudged this time */
        double x = (double)p->kinds[WK_SOCKET];
        verdict_t v;
        baseline_judge(&w->bl, e, x, &v);
        if (w->cfg.verbose)
            report_proc(sc, p, cls, &v);
        baseline_observe(e, x);
        if (!v.alert)
            continue;
        if (now && !(partial && was_flagged(w, p->pid)))
            now[nnow++] = p->pid;
        if (w->cfg.once || !was_flagged(w, p->pid)) {
            pending_alert_t *pa = realloc(w->pend, (w->npend + 1) * sizeof *pa);
            if (!pa)
                continue;
            w->pend = pa;
            pa[w->npend++] = (pending_alert_t){i, cls, v};
        }
    }
    baseline_commit(&w->bl);
    if (now) {
        qsort(now, nnow, sizeof *now, pid_cmp);
        free(w->flagged);
        w->flagged = now;
        w->nflagged = nnow;
    }
    w->flagged_now = w->nflagged;
    w->gone += sc->gone;
    w->denied += sc->denied;
    w->truncated += sc->truncated;
    w->bad_lines += sc->bad_lines;
    if (partial) {
        w->partial_scans++;
    } else {
        w->scans++;
        w->last_procs = sc->nprocs;
        w->last_epolls = epolls;
        w->last_entries = entries;
        memcpy(w->last_kinds, kinds, sizeof kinds);
        w->last_scan_ns = sc->duration_ns;
    }
    hk_log(HK_LOG_INFO, "scan",
           "event=scan partial=%d procs=%zu epolls=%llu entries=%llu sockets=%llu gone=%llu "
           "denied=%llu truncated=%llu bad_lines=%llu flagged=%zu scan_ms=%.3f",
           partial, sc->nprocs, (unsigned long long)epolls, (unsigned long long)entries,
           (unsigned long long)kinds[WK_SOCKET], (unsigned long long)sc->gone,
           (unsigned long long)sc->denied, (unsigned long long)sc->truncated,
           (unsigned long long)sc->bad_lines, w->nflagged, sc->duration_ns / 1e6);
}

static void scan_fn(hk_work_t *work)
{
    struct scan_shard *sh = work->data;
    watch_t *w = sh->w;
    if (w->nscan_pids)
        scanner_run(&sh->scanner, w->scan_pids, w->nscan_pids, &sh->scan);
    else
        scanner_run(&sh->scanner, NULL, 0, &sh->scan);
}

static void start_scan(watch_t *w);
static void finish_scan(watch_t *w);

/* On a worker: the full socket tables, for the endpoints of the alerts. */
static void ep_fn(hk_work_t *work)
{
    watch_t *w = work->data;
    netinfo_load(&w->scan.net, w->shards[0].scanner.proc_root);
}

static void ep_done(hk_work_t *work, int status)
{
    (void)status; /* cancelled or not, report: endpoints are then "?" */
    watch_t *w = work->data;
    for (size_t i = 0; i < w->npend; i++) {
        pending_alert_t *a = &w->pend[i];
        char line[1024];
        report_alert(&w->scan, &w->scan.procs[a->proc], a->cls, &a->v, &w->bl, line, sizeof line);
        w->alerts++;
        if (w->cfg.syslog)
            watch_syslog(&w->syslog_fd, line);
    }
    w->npend = 0;
    finish_scan(w);
}

static void scan_done(hk_work_t *work, int status)
{
    struct scan_shard *sh = work->data;
    watch_t *w = sh->w;
    if (status && !w->shard_status)
        w->shard_status = status;
    if (--w->outstanding)
        return;
    scan_t *parts[SCAN_SHARDS_MAX];
    unsigned nparts = w->nscan_pids ? 1 : w->nshards;
    for (unsigned i = 0; i < nparts; i++)
        parts[i] = &w->shards[i].scan;
    if (!w->shard_status)
        w->shard_status = scan_merge(&w->scan, parts, nparts);
    status = w->shard_status;
    if (status == 0 && w->scan.error == 0) {
        evaluate(w, w->nscan_pids != 0);
        if (w->npend) {
            /* Alerts are rare; only they pay for reading every socket table. */
            if (hk_work_submit(w->loop, NULL, &w->ep_work, HK_WORK_SLOW, ep_fn, ep_done) < 0)
                ep_done(&w->ep_work, -ECANCELED);
            return;
        }
    } else {
        int err = status ? status : w->scan.error;
        hk_log(HK_LOG_ERROR, "scan failed", "event=error error=%s", hk_strerror(err));
        if (w->cfg.once)
            w->exit_code = 3;
    }
    finish_scan(w);
}

static void finish_scan(watch_t *w)
{
    w->scanning = 0;
    if (w->cfg.once) {
        if (w->exit_code == 0 && w->nflagged)
            w->exit_code = 1;
        watch_stop(w);
        return;
    }
    if (w->cfg.state_path)
        save_state(w);
    if (!w->stopping && (w->rescan || w->nexec))
        start_scan(w);
}

static void start_scan(watch_t *w)
{
    if (w->stopping)
        return;
    if (w->scanning) {
        w->rescan = 1;
        return;
    }
    /* A full scan when one is due; otherwise just the processes that exec'd. */
    if (w->rescan || !w->nexec) {
        w->nscan_pids = 0;
        w->nexec = 0;
    } else {
        memcpy(w->scan_pids, w->exec_pids, w->nexec * sizeof(pid_t));
        w->nscan_pids = w->nexec;
        w->nexec = 0;
    }
    w->rescan = 0;
    w->shard_status = 0;
    w->outstanding = 0;
    /* A full scan is split over the workers by pid; a handful of exec'd pids is one job. */
    unsigned n = w->nscan_pids ? 1 : w->nshards;
    for (unsigned i = 0; i < n; i++) {
        int r = hk_work_submit(w->loop, NULL, &w->shards[i].work, HK_WORK_SLOW, scan_fn, scan_done);
        if (r < 0) {
            hk_log(HK_LOG_ERROR, "cannot submit scan", "event=error error=%s", hk_strerror(r));
            if (w->outstanding)
                w->shard_status = r; /* the submitted ones finish and report the failure */
            break;
        }
        w->outstanding++;
    }
    w->scanning = w->outstanding > 0;
}

static void on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    watch_t *w = t->base.data;
    w->rescan = 1;
    start_scan(w);
}

static void on_exec_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    start_scan(t->base.data);
}

void watch_on_exec(watch_t *w, pid_t pid)
{
    if (w->stopping)
        return;
    size_t i = 0;
    while (pid > 0 && i < w->nexec && w->exec_pids[i] != pid)
        i++;
    if (pid <= 0)
        w->rescan = 1; /* the connector lost events: look at everything */
    else if (i < w->nexec)
        ; /* exec'd again (a wrapper that execs its program): one sample, one verdict */
    else if (w->nexec < EXEC_PIDS_MAX)
        w->exec_pids[w->nexec++] = pid;
    else
        w->rescan = 1; /* a storm of execs: a full scan covers them all */
    /* A short delay lets the new program set up its fds before we look. */
    if (!hk_is_active(&w->exec_timer.base))
        hk_timer_start_in(&w->exec_timer, on_exec_timer, 100 * 1000 * 1000, 0);
}

void watch_on_exit(watch_t *w, pid_t pid)
{
    (void)pid;
    w->exits++;
}

static void save_fn(hk_work_t *work)
{
    watch_t *w = work->data;
    w->save_err = baseline_write_file(w->cfg.state_path, w->save_buf, w->save_len);
}

static void save_done(hk_work_t *work, int status)
{
    watch_t *w = work->data;
    int err = status ? status : w->save_err;
    free(w->save_buf);
    w->save_buf = NULL;
    w->saving = 0;
    if (err < 0) {
        w->save_errors++;
        hk_log(HK_LOG_ERROR, "cannot write state file", "event=error path=%s error=%s",
               w->cfg.state_path, hk_strerror(err));
    }
    if (w->save_again) {
        w->save_again = 0;
        save_state(w);
    }
}

static void save_state(watch_t *w)
{
    if (w->saving) {
        w->save_again = 1;
        return;
    }
    if (baseline_serialize(&w->bl, &w->save_buf, &w->save_len) < 0)
        return;
    if (hk_work_submit(w->loop, NULL, &w->save_work, HK_WORK_SLOW, save_fn, save_done) < 0) {
        free(w->save_buf);
        w->save_buf = NULL;
        return;
    }
    w->saving = 1;
}

static void on_signal(hk_signal_t *sig, int signum)
{
    watch_t *w = sig->base.data;
    hk_log(HK_LOG_INFO, "shutting down", "event=stop signal=%s", strsignal(signum));
    watch_stop(w);
}

static void on_netlink(void *arg, pid_t pid, int is_exec)
{
    if (is_exec)
        watch_on_exec(arg, pid);
    else
        watch_on_exit(arg, pid);
}

static int render(void *arg, char **body, size_t *len)
{
    return watch_render_metrics(arg, body, len);
}

int watch_start(hk_loop_t *loop, const watch_config_t *cfg, watch_t **out)
{
    watch_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->loop = loop;
    w->cfg = *cfg;
    w->syslog_fd = -1;
    w->save_work.data = w->ep_work.data = w;
    /* One shard per CPU, within what the pool lets slow work occupy at once. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    hk_pool_t *pool = hk_pool_default();
    unsigned cap = pool ? hk_pool_cap(pool, HK_WORK_SLOW) : 1;
    w->nshards = cpus < 1 ? 1 : (unsigned)cpus;
    if (w->nshards > cap)
        w->nshards = cap ? cap : 1;
    if (w->nshards > SCAN_SHARDS_MAX)
        w->nshards = SCAN_SHARDS_MAX;
    for (unsigned i = 0; i < SCAN_SHARDS_MAX; i++) {
        w->shards[i].w = w;
        w->shards[i].work.data = &w->shards[i];
        scanner_init(&w->shards[i].scanner, cfg->proc_root);
        scanner_shard(&w->shards[i].scanner, i, w->nshards);
    }
    int r = baseline_init(&w->bl, cfg->alpha, cfg->floor, cfg->warmup);
    if (r < 0) {
        fprintf(stderr, "hark-watch: bad alpha %g or floor %g\n", cfg->alpha, cfg->floor);
        goto fail;
    }
    if (cfg->state_path) {
        unsigned line;
        r = baseline_load(&w->bl, cfg->state_path, &line);
        if (r == -ENOENT) {
            r = 0;
        } else if (r < 0) {
            if (line)
                fprintf(stderr, "hark-watch: state file %s: line %u is malformed\n",
                        cfg->state_path, line);
            else
                fprintf(stderr, "hark-watch: cannot read state file %s: %s\n", cfg->state_path,
                        hk_strerror(r));
            goto fail;
        }
    }
    if (cfg->listen) {
        r = metrics_start(loop, cfg->listen, render, w, &w->metrics);
        if (r < 0) {
            fprintf(stderr, "hark-watch: cannot listen on %s: %s\n", cfg->listen, hk_strerror(r));
            goto fail;
        }
    }
    if (!cfg->once) {
        /*
         * After the last step that can fail, before the first line is logged:
         * whoever reads the log (an operator's script, test_hark_watch) may send
         * SIGTERM as soon as a line appears, and before the watchers exist it
         * killed the process instead of stopping it (seen once under ASan: exit
         * by signal 15).
         */
        hk_signal_init(loop, &w->sigint);
        hk_signal_init(loop, &w->sigterm);
        w->sigint.base.data = w->sigterm.base.data = w;
        hk_signal_start(&w->sigint, on_signal, SIGINT);
        hk_signal_start(&w->sigterm, on_signal, SIGTERM);
    }
    if (w->metrics) {
        /* The one line a test or an operator needs to find a kernel-chosen port. */
        hk_log(HK_LOG_INFO, "metrics listening", "event=listening port=%d",
               metrics_port(w->metrics));
    }
    if (geteuid() != 0)
        hk_log(HK_LOG_WARN, "not root: only this user's processes are visible",
               "event=unprivileged uid=%u", (unsigned)geteuid());
    hk_timer_init(loop, &w->exec_timer);
    w->exec_timer.base.data = w;
    if (!cfg->once) {
        if (cfg->no_netlink) {
            hk_log(HK_LOG_INFO, "netlink disabled, polling", "event=polling interval_ms=%llu",
                   (unsigned long long)(cfg->interval_ns / 1000000));
        } else if ((r = procconn_start(loop, on_netlink, w, &w->netlink)) < 0) {
            hk_log(HK_LOG_WARN, "netlink proc connector refused, polling only",
                   "event=polling error=%s interval_ms=%llu", hk_strerror(r),
                   (unsigned long long)(cfg->interval_ns / 1000000));
        } else {
            hk_log(HK_LOG_INFO, "netlink proc connector on", "event=netlink");
        }
        hk_timer_init(loop, &w->timer);
        w->timer.base.data = w;
        hk_timer_start_in(&w->timer, on_timer, (int64_t)cfg->interval_ns,
                          (int64_t)cfg->interval_ns);
    }
    w->rescan = 1;
    start_scan(w);
    *out = w;
    return 0;
fail:
    baseline_free(&w->bl);
    for (unsigned i = 0; i < SCAN_SHARDS_MAX; i++)
        scanner_free(&w->shards[i].scanner);
    free(w);
    return r;
}

void watch_stop(watch_t *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    hk_close(&w->exec_timer.base, NULL);
    if (!w->cfg.once) {
        hk_close(&w->timer.base, NULL);
        hk_close(&w->sigint.base, NULL);
        hk_close(&w->sigterm.base, NULL);
    }
    if (w->metrics)
        metrics_stop(w->metrics);
    w->metrics = NULL;
    if (w->netlink)
        procconn_stop(w->netlink);
    w->netlink = NULL;
    if (w->scanning)
        for (unsigned i = 0; i < w->nshards; i++)
            hk_work_cancel(&w->shards[i].work); /* -EINVAL/-EBUSY when not queued: fine */
    if (w->cfg.state_path)
        save_state(w); /* the loop stays alive until the write is done */
}

int watch_exit_code(const watch_t *w)
{
    if (w->exit_code == 0 && w->save_errors && w->cfg.once)
        return 3;
    return w->exit_code;
}

void watch_free(watch_t *w)
{
    if (w->syslog_fd >= 0)
        close(w->syslog_fd);
    baseline_free(&w->bl);
    for (unsigned i = 0; i < SCAN_SHARDS_MAX; i++) {
        scanner_free(&w->shards[i].scanner);
        scan_free(&w->shards[i].scan);
    }
    scan_free(&w->scan);
    free(w->flagged);
    free(w->pend);
    free(w->save_buf);
    free(w);
}
