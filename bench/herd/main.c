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
 * The model (docs/science-herd.md): a connection on a listen socket wakes
 * every loop whose epoll set holds it and that sleeps in epoll_wait, unless
 * EPOLLEXCLUSIVE limits the wake-up to one of them. So the kernel wake-ups
 * per connection are T for plain, 1 for exclusive and reuseport (one socket
 * per loop), and 1 + (T - 1) / T for handoff (the acceptor, then the
 * receiving loop's eventfd unless the acceptor keeps the connection itself).
 * A wake-up is counted where the kernel counts it: a loop thread that was
 * woken goes back to sleep with one voluntary context switch, so the loop
 * threads' voluntary switches (/proc/self/task/<tid>/status) are the wake-ups,
 * whatever the number of cores (involuntary switches, preemption, are not).
 * The share model: reuseport hashes each connection's 4-tuple, a uniform
 * random choice, so Jain's index of the shares is about 1 / (1 + (T - 1) / C)
 * for C connections; handoff's round robin gives 1; exclusive at light load
 * wakes the first registered loop every time, 1 / T; plain has no model (the
 * scheduler picks who runs first).
 *
 * Output, one line per (mode, T), then the default mode's lines once more:
 *   herd system=hark mode=<name> loops=T conns=N ctxsw_per_conn= wakeups_per_conn=
 *        max_share_ratio= min_share= max_share= involuntary_per_conn=
 *        loop_wakeups_per_conn= predicted_wakeups_per_conn= loop_involuntary_per_conn=
 *        empty_per_conn= max_over_mean= jain= predicted_jain=
 * wakeups_per_conn counts hark's listener callbacks (and hand-off wake-ups),
 * empty_per_conn those that accepted nothing; loop_wakeups_per_conn is the
 * kernel's count above.
 *
 * The same client also measures a minimal raw-epoll server (epoll.c) in the
 * kernel's three modes, printed as system=epoll, so hark's own cost shows.
 *
 * Usage: herd-bench [-m plain,exclusive,reuseport,handoff] [-t 1,2,4,8,16,32] [-n conns per loop]
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "epoll.h"

struct server {
    hk_accept_group_t group;
    hk_accept_member_t *members;
    pthread_t *threads;
    hk_async_t *stops;
    hk_accept_stats_t *stats;
    pid_t *tids; /* the loop threads' kernel ids */
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
    double ctxsw_per_conn, invol_per_conn, wakeups_per_conn, empty_per_conn, ratio;
    double loop_wakeups_per_conn, loop_invol_per_conn, max_over_mean, jain;
    uint64_t min_share, max_share;
};

/* The loop threads' context switches so far: the voluntary ones (returned) and *invol. */
static long task_switches(const pid_t *tids, unsigned n, long *invol)
{
    long vol = 0;
    *invol = 0;
    for (unsigned i = 0; i < n; i++) {
        char path[64], line[128];
        snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            long v;
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
                vol += v;
            else if (sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
                *invol += v;
        }
        fclose(f);
    }
    return vol;
}

/* The model's kernel wake-ups per connection for T loops (see the top of this file). */
static double predicted_wakeups(int mode, unsigned t)
{
    switch (mode) {
    case HK_ACCEPT_PLAIN:
        return t;
    case HK_ACCEPT_HANDOFF:
        return 2.0 - 1.0 / t;
    default:
        return 1.0;
    }
}

/* The model's Jain index of the shares for T loops and C connections; -1: no model. */
static double predicted_jain(int mode, unsigned t, unsigned c)
{
    switch (mode) {
    case HK_ACCEPT_EXCLUSIVE:
        return 1.0 / t;
    case HK_ACCEPT_REUSEPORT:
        return 1.0 / (1.0 + (t - 1.0) / c);
    case HK_ACCEPT_HANDOFF:
        return 1.0;
    default:
        return -1;
    }
}

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
    srv->tids[ta->index] = (pid_t)syscall(SYS_gettid);
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

/*
 * Fills res from per-loop counts (empty may be NULL) and the switches of the
 * process (ctxsw, invol) and of the loop threads (lvol, linvol); returns the
 * accepted total.
 */
static uint64_t summarize(unsigned n, const uint64_t *wakeups, const uint64_t *accepts,
                          const uint64_t *empty, unsigned conns, long ctxsw, long invol, long lvol,
                          long linvol, struct result *res)
{
    uint64_t w = 0, a = 0, e = 0;
    double sq = 0;
    res->min_share = UINT64_MAX;
    res->max_share = 0;
    for (unsigned i = 0; i < n; i++) {
        w += wakeups[i];
        a += accepts[i];
        e += empty ? empty[i] : 0;
        sq += (double)accepts[i] * (double)accepts[i];
        if (accepts[i] < res->min_share)
            res->min_share = accepts[i];
        if (accepts[i] > res->max_share)
            res->max_share = accepts[i];
    }
    /* Includes the main thread's own switches while it waited for the client: one or two. */
    res->ctxsw_per_conn = (double)ctxsw / conns;
    res->invol_per_conn = (double)invol / conns;
    res->wakeups_per_conn = (double)w / conns;
    res->empty_per_conn = empty ? (double)e / conns : -1;
    res->loop_wakeups_per_conn = (double)lvol / conns;
    res->loop_invol_per_conn = (double)linvol / conns;
    res->ratio = res->min_share ? (double)res->max_share / (double)res->min_share : -1;
    /* Jain's index: (sum x)^2 / (n sum x^2), 1 when even, 1/n when one loop takes all. */
    res->jain = sq > 0 ? (double)a * (double)a / (n * sq) : 0;
    res->max_over_mean = a ? (double)res->max_share * n / (double)a : 0;
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
    long i0, i1, li0, li1;
    long c0 = ctxsw_now(&i0), l0 = task_switches(h.tids, n, &li0);
    int cr = run_client(client, h.port, conns);
    usleep(20000); /* losers of the last race back asleep */
    long c1 = ctxsw_now(&i1), l1 = task_switches(h.tids, n, &li1);
    herd_epoll_stop(&h, w, a);
    uint64_t accepted = summarize(n, w, a, NULL, conns, c1 - c0, i1 - i0, l1 - l0, li1 - li0, res);
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
    srv.tids = calloc(n, sizeof *srv.tids);
    struct targ *targs = calloc(n, sizeof *targs);
    if (!srv.members || !srv.threads || !srv.stops || !srv.stats || !srv.tids || !targs)
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
    long i0, i1, li0, li1;
    long c0 = ctxsw_now(&i0), l0 = task_switches(srv.tids, n, &li0);
    int cr = __atomic_load_n(&srv.failed, __ATOMIC_ACQUIRE)
                 ? -EIO
                 : run_client(client, srv.group.port, conns);
    usleep(20000); /* losers of the last race back asleep */
    long c1 = ctxsw_now(&i1), l1 = task_switches(srv.tids, n, &li1);
    for (unsigned i = 0; i < n; i++)
        if (srv.stops[i].base.loop)
            hk_async_send(&srv.stops[i]);
    __atomic_store_n(&srv.sends_done, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < n; i++)
        pthread_join(srv.threads[i], NULL);
    hk_accept_group_close(&srv.group);

    uint64_t *w = calloc(n, sizeof *w), *a = calloc(n, sizeof *a), *e = calloc(n, sizeof *e);
    if (!w || !a || !e)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        w[i] = srv.stats[i].wakeups;
        a[i] = srv.stats[i].accepts;
        e[i] = srv.stats[i].empty;
    }
    uint64_t accepts = summarize(n, w, a, e, conns, c1 - c0, i1 - i0, l1 - l0, li1 - li0, res);
    free(w);
    free(a);
    free(e);
    free(srv.tids);
    free(srv.members);
    free(srv.threads);
    free(srv.stops);
    free(srv.stats);
    free(targs);
    if (cr < 0)
        return cr;
    return accepts == conns ? 0 : -EIO;
}

static void print(const char *sys, const char *mode, int m, unsigned n, unsigned conns,
                  const struct result *r)
{
    char ratio[32], empty[32], pj[32];
    double j = predicted_jain(m, n, conns);
    if (r->ratio < 0)
        snprintf(ratio, sizeof ratio, "inf");
    else
        snprintf(ratio, sizeof ratio, "%.2f", r->ratio);
    if (r->empty_per_conn < 0)
        snprintf(empty, sizeof empty, "-");
    else
        snprintf(empty, sizeof empty, "%.3f", r->empty_per_conn);
    if (j < 0)
        snprintf(pj, sizeof pj, "-");
    else
        snprintf(pj, sizeof pj, "%.4f", j);
    printf("herd system=%s mode=%s loops=%u conns=%u ctxsw_per_conn=%.2f wakeups_per_conn=%.2f "
           "max_share_ratio=%s min_share=%llu max_share=%llu involuntary_per_conn=%.2f "
           "loop_wakeups_per_conn=%.3f predicted_wakeups_per_conn=%.3f "
           "loop_involuntary_per_conn=%.3f empty_per_conn=%s max_over_mean=%.3f jain=%.4f "
           "predicted_jain=%s\n",
           sys, mode, n, conns, r->ctxsw_per_conn, r->wakeups_per_conn, ratio,
           (unsigned long long)r->min_share, (unsigned long long)r->max_share, r->invol_per_conn,
           r->loop_wakeups_per_conn, predicted_wakeups(m, n), r->loop_invol_per_conn, empty,
           r->max_over_mean, r->jain, pj);
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
    const char *modes = "plain,exclusive,reuseport,handoff", *sizes = "1,2,4,8,16,32";
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
            print("hark", name, m, n, conns, &r);
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
                print("epoll", name, m, n, conns, &r);
            }
            s = strchr(s, ',');
            if (!s)
                break;
            s++;
        }
    }
    for (unsigned i = 0; i < ndef; i++)
        print("hark", "default", HK_ACCEPT_DEFAULT, def_n[i], def_conns[i], &def[i]);
    return 0;
}
