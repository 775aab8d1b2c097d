/*
 * EMFILE: with RLIMIT_NOFILE lowered (in a forked child, so the limit never
 * leaks into the test runner), the listener backs off on a timer instead of
 * spinning, and accepts the waiting connections once fds are freed.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/wait.h>

struct emf {
    int accepted;
    int fillers[64];
    int nfill;
    hk_listener_t *l;
    int freed;
};

static void on_conn(hk_listener_t *l, int fd)
{
    struct emf *e = l->data;
    e->accepted++;
    close(fd);
}

static void on_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    struct emf *e = t->base.data;
    /* After two back-offs, give the fds back: the listener must recover by itself. */
    if (!e->freed && e->l->stats.backoffs >= 2) {
        for (int i = 0; i < e->nfill; i++)
            close(e->fillers[i]);
        e->freed = 1;
    }
}

/* Runs in the forked child; returns the exit code (0 = pass) and explains failures. */
static int emfile_child(void)
{
    hk_loop_t *loop;
    if (hk_loop_new(&loop, 0) < 0)
        return 10;
    struct emf e = {0};
    hk_listener_t l;
    l.data = &e;
    e.l = &l;
    if (hk_tcp_listen(loop, &l, "127.0.0.1:0", 64, 0, on_conn) < 0)
        return 11;
    if (hk_listener_set_backoff(&l, 20 * 1000 * 1000) < 0)
        return 12;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)hk_listener_port(&l))};
    int clients[5];
    for (int i = 0; i < 5; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(clients[i], (struct sockaddr *)&sin, sizeof sin) < 0)
            return 13;
    }
    hk_timer_t tick;
    hk_timer_init(loop, &tick);
    tick.base.data = &e;
    hk_timer_start_in(&tick, on_tick, MS(5), MS(5));
    /* Lower the limit to what is open now plus a few, then use those up. */
    int probe = dup(0);
    struct rlimit rl = {(rlim_t)probe + 4, (rlim_t)probe + 4};
    close(probe);
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 14;
    for (;;) {
        int fd = dup(0);
        if (fd < 0)
            break;
        if (e.nfill < 64)
            e.fillers[e.nfill++] = fd;
    }
    if (errno != EMFILE)
        return 15;
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    while (e.accepted < 5 && hk_time_now() < end)
        hk_loop_run(loop, HK_RUN_ONCE);
    fprintf(stderr, "emfile: accepted=%d backoffs=%llu wakeups=%llu\n", e.accepted,
            (unsigned long long)l.stats.backoffs, (unsigned long long)l.stats.wakeups);
    if (e.accepted != 5)
        return 16;
    if (l.stats.backoffs < 2)
        return 17;
    /* No busy loop: each back-off costs one wake-up, plus the ones that accepted. */
    if (l.stats.wakeups > l.stats.backoffs + 6)
        return 18;
    /* A wake-up that met EMFILE found a connection: it is a back-off, not the herd's "empty". */
    fprintf(stderr, "emfile: empty=%llu\n", (unsigned long long)l.stats.empty);
    if (l.stats.empty != 0)
        return 20;
    for (int i = 0; i < 5; i++)
        close(clients[i]);
    hk_close(&tick.base, NULL);
    hk_listener_close(&l, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    return hk_loop_free(loop) == 0 ? 0 : 19;
}

Test(emfile, backoff_and_recover)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(emfile_child());
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "child died");
    cr_assert_eq(WEXITSTATUS(st), 0, "emfile child failed with code %d", WEXITSTATUS(st));
}
