/*
 * bench/herd: the thundering herd of multi-loop accept, measured.
 *
 * T loops (one thread each) serve one loopback address in each of hark's
 * accept modes (plain, exclusive, reuseport, handoff); herd-client, a
 * separate process, opens connections one at a time and waits for each to
 * be served. The server process's context switches (getrusage RUSAGE_SELF,
 * voluntary + involuntary, all threads) and hark's per-loop wake-up and
 * accept counters, divided by the connections, give the cost of one accept;
 * the share of connections each loop took gives the balance
 * (max_share_ratio = busiest / idlest; "inf" when a loop took none).
 *
 * Output, one line per (mode, T), then the default mode's lines once more:
 *   herd system=hark mode=<name> loops=T conns=N ctxsw_per_conn= wakeups_per_conn=
 *        max_share_ratio= min_share= max_share=
 *
 * The same client also measures a minimal raw-epoll server (epoll.c) in the
 * kernel's three modes, printed as system=epoll, so hark's own cost shows.
 *
 * Usage: herd-bench [-m plain,exclusive,reuseport,handoff] [-t 2,8,32] [-n conns per loop]
 *                   [-N min conns] [-c path/to/herd-client] [-E: hark only, no epoll peer]
 */
#include <hark.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "epoll.h"

struct server {
    hk_accept_group_t group;
    hk_accept_member_t *members;
    pthread_t *threads;
    hk_async_t *stops;
    hk_accept_stats_t *stats;
    unsigned n;
    int started; /* atomic */
    /*
     * atomic: set once every stop was sent. A loop may free itself only then:
     * hk_async_send still reads the target loop after the callback may have
     * run (see the report on src/loop/async.c), so the loop must outlive it.
     */
    int sends_done;
    int failed; /* atomic */
};

struct targ {
    struct server *srv;
    unsigned index;
};

struct result {
    double ctxsw_per_conn, invol_per_conn, wakeups_per_conn, ratio;
    uint64_t min_share, max_share;
};

static void on_conn(hk_accept_member_t *m, int fd)
{
    (void)m;
    close(fd);
}

static void on_stop(hk_async_t *a)
{
    hk_accept_member_close(a->base.data, NULL);
    hk_close(&a->base, NULL);
}

static void *loop_thread(void *p)
{
    struct targ *ta = p;
    struct server *srv = ta->srv;
    hk_loop_t *loop;
    int r = hk_loop_new(&loop, 0);
    if (r == 0)
        r = hk_accept_member_start(&srv->group, ta->index, loop, on_conn);
    if (r == 0)
        r = hk_async_init(loop, &srv->stops[ta->index], on_stop);
    if (r < 0) {
        fprintf(stderr, "herd: loop %u: %s\n", ta->index, hk_strerror(r));
        __atomic_store_n(&srv->failed, 1, __ATOMIC_RELEASE);
        __atomic_fetch_add(&srv->started, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    srv->stops[ta->index].base.data = &srv->members[ta->index];
    __atomic_fetch_add(&srv->started, 1, __ATOMIC_RELEASE);
    (void)hk_loop_run(loop, HK_RUN_DEFAULT);
    hk_accept_member_stats(&srv->members[ta->index], &srv->stats[ta->index]);
    while (!__atomic_load_n(&srv->sends_done, __ATOMIC_ACQUIRE))
        usleep(1000);
    (void)hk_loop_free(loop);
    return NULL;
}

static long ctxsw_now(long *involuntary)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *involuntary = ru.ru_nivcsw;
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

static int run_client(const char *client, int port, unsigned conns)
{
    char portstr[16], countstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(countstr, sizeof countstr, "%u", conns);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /*
         * The load generator runs at idle priority: on a machine with fewer
         * cores than loops its wake-ups would otherwise preempt server threads,
         * and those involuntary switches would be counted as the server's.
         * Both hark and the raw epoll peer are measured under the same client.
         */
        struct sched_param sp = {0};
        if (sched_setscheduler(0, SCHED_IDLE, &sp) < 0 && setpriority(PRIO_PROCESS, 0, 19) < 0) {
            /* Neither is fatal: the figures then include the client's preemptions. */
        }
        execl(client, client, "127.0.0.1", portstr, countstr, (char *)NULL);
        fprintf(stderr, "herd: exec %s: %s\n", client, strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* Fills res from per-loop counts; returns the accepted total. */
static uint64_t summarize(unsigned n, const uint64_t *wakeups, const uint64_t *accepts,
                          unsigned conns, long ctxsw, long invol, struct result *res)
{
    uint64_t w = 0, a = 0;
    res->min_share = UINT64_MAX;
    res->max_share = 0;
    for (unsigned i = 0; i < n; i++) {
        w += wakeups[i];
        a += accepts[i];
        if (accepts[i] < res->min_share)
            res->min_share = accepts[i];
        if (accepts[i] > res->max_share)
            res->max_share = accepts[i];
    }
    /* Includes the main thread's own switches while it waited for the client: one or two. */
    res->ctxsw_per_conn = (double)ctxsw / conns;
    res->invol_per_conn = (double)invol / conns;
    res->wakeups_per_conn = (double)w / conns;
    res->ratio = res->min_share ? (double)res->max_share / (double)res->min_share : -1;
    return a;
}

/* The same measurement on the raw-epoll peer (modes plain, exclusive, reuseport). */
static int run_epoll(int mode, unsigned n, unsigned conns, const char *client, struct result *res)
{
    struct herd_epoll h;
    uint64_t *w = calloc(n, sizeof *w), *a = calloc(n, sizeof *a);
    if (!w || !a)
        return -ENOMEM;
    int r = herd_epoll_start(&h, mode, n);
    if (r < 0)
        return r;
    usleep(50000);
    long i0, i1;
    long c0 = ctxsw_now(&i0);
    int cr = run_client(client, h.port, conns);
    long c1 = ctxsw_now(&i1);
    herd_epoll_stop(&h, w, a);
    uint64_t accepted = summarize(n, w, a, conns, c1 - c0, i1 - i0, res);
    free(w);
    free(a);
    if (cr < 0)
        return cr;
    return accepted == conns ? 0 : -EIO;
}

static int run(hk_accept_mode_t mode, unsigned n, unsigned conns, const char *client,
               struct result *res)
{
    struct server srv;
    memset(&srv, 0, sizeof srv);
    srv.n = n;
    srv.members = calloc(n, sizeof *srv.members);
    srv.threads = calloc(n, sizeof *srv.threads);
    srv.stops = calloc(n, sizeof *srv.stops);
    srv.stats = calloc(n, sizeof *srv.stats);
    struct targ *targs = calloc(n, sizeof *targs);
    if (!srv.members || !srv.threads || !srv.stops || !srv.stats || !targs)
        return -ENOMEM;
    int r = hk_accept_group_open(&srv.group, mode, "127.0.0.1:0", 4096, 0, srv.members, n);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < n; i++) {
        targs[i] = (struct targ){&srv, i};
        pthread_create(&srv.threads[i], NULL, loop_thread, &targs[i]);
    }
    while (__atomic_load_n(&srv.started, __ATOMIC_ACQUIRE) < (int)n)
        usleep(1000);
    usleep(50000); /* every loop asleep in epoll_wait */
    long i0, i1;
    long c0 = ctxsw_now(&i0);
    int cr = __atomic_load_n(&srv.failed, __ATOMIC_ACQUIRE)
                 ? -EIO
                 : run_client(client, srv.group.port, conns);
    long c1 = ctxsw_now(&i1);
    for (unsigned i = 0; i < n; i++)
        if (srv.stops[i].base.loop)
            hk_async_send(&srv.stops[i]);
    __atomic_store_n(&srv.sends_done, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < n; i++)
        pthread_join(srv.threads[i], NULL);
    hk_accept_group_close(&srv.group);

    uint64_t *w = calloc(n, sizeof *w), *a = calloc(n, sizeof *a);
    if (!w || !a)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        w[i] = srv.stats[i].wakeups;
        a[i] = srv.stats[i].accepts;
    }
    uint64_t accepts = summarize(n, w, a, conns, c1 - c0, i1 - i0, res);
    free(w);
    free(a);
    free(srv.members);
    free(srv.threads);
    free(srv.stops);
    free(srv.stats);
    free(targs);
    if (cr < 0)
        return cr;
    return accepts == conns ? 0 : -EIO;
}

static void print(const char *sys, const char *mode, unsigned n, unsigned conns,
                  const struct result *r)
{
    char ratio[32];
    if (r->ratio < 0)
        snprintf(ratio, sizeof ratio, "inf");
    else
        snprintf(ratio, sizeof ratio, "%.2f", r->ratio);
    printf("herd system=%s mode=%s loops=%u conns=%u ctxsw_per_conn=%.2f wakeups_per_conn=%.2f "
           "max_share_ratio=%s min_share=%llu max_share=%llu involuntary_per_conn=%.2f\n",
           sys, mode, n, conns, r->ctxsw_per_conn, r->wakeups_per_conn, ratio,
           (unsigned long long)r->min_share, (unsigned long long)r->max_share, r->invol_per_conn);
    fflush(stdout);
}

/* The directory of this executable, where herd-client is built. */
static void default_client(char *buf, size_t size)
{
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k < 0)
        k = 0;
    self[k] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(buf, size, "%s/herd-client", slash ? self : ".");
}

int main(int argc, char **argv)
{
    const char *modes = "plain,exclusive,reuseport,handoff", *sizes = "2,8,32";
    int with_epoll = 1;
    unsigned per_loop = 300, min_conns = 3000;
    char client[PATH_MAX + 16];
    default_client(client, sizeof client);
    int opt;
    while ((opt = getopt(argc, argv, "m:t:n:N:c:E")) != -1) {
        switch (opt) {
        case 'm':
            modes = optarg;
            break;
        case 't':
            sizes = optarg;
            break;
        case 'n':
            per_loop = (unsigned)atoi(optarg);
            break;
        case 'N':
            min_conns = (unsigned)atoi(optarg);
            break;
        case 'c':
            snprintf(client, sizeof client, "%s", optarg);
            break;
        case 'E':
            with_epoll = 0;
            break;
        default:
            fprintf(stderr, "usage: herd-bench [-m modes] [-t loops,...] [-n per loop] [-N min] "
                            "[-c client]\n");
            return 2;
        }
    }
    struct result def[16];
    unsigned def_n[16], def_conns[16], ndef = 0;
    for (int m = 0; m < 4; m++) {
        const char *name = hk_accept_mode_name((hk_accept_mode_t)m);
        size_t len = strlen(name);
        const char *p = strstr(modes, name);
        if (!p || (p[len] != ',' && p[len] != '\0'))
            continue;
        for (const char *s = sizes; *s;) {
            unsigned n = (unsigned)strtoul(s, NULL, 10);
            unsigned conns = n * per_loop > min_conns ? n * per_loop : min_conns;
            struct result r;
            int rc = run((hk_accept_mode_t)m, n, conns, client, &r);
            if (rc < 0) {
                fprintf(stderr, "herd: mode=%s loops=%u: %s\n", name, n, hk_strerror(rc));
                return 1;
            }
            print("hark", name, n, conns, &r);
            if (m == HK_ACCEPT_DEFAULT && ndef < 16) {
                def[ndef] = r;
                def_n[ndef] = n;
                def_conns[ndef++] = conns;
            }
            if (with_epoll && m != HK_ACCEPT_HANDOFF) {
                rc = run_epoll(m, n, conns, client, &r);
                if (rc < 0) {
                    fprintf(stderr, "herd: epoll mode=%s loops=%u: %s\n", name, n, hk_strerror(rc));
                    return 1;
                }
                print("epoll", name, n, conns, &r);
            }
            s = strchr(s, ',');
            if (!s)
                break;
            s++;
        }
    }
    for (unsigned i = 0; i < ndef; i++)
        print("hark", "default", def_n[i], def_conns[i], &def[i]);
    return 0;
}
