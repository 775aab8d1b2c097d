/*
 * A worker stuck in one coroutine does not stop the others: its queue is
 * stolen, the stall monitor names the coroutine, and an echo served by the
 * netpoller keeps answering on the other worker. Progress is counted, never
 * timed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MS UINT64_C(1000000)
#define LONG_WAIT (UINT64_C(20000) * MS) /* only a hang would reach it */

/* ---- reports ---- */

static char reported_name[64]; /* the first report naming "cruncher" */
static uint64_t reported_duration;
static int reports;       /* atomic */
static uint64_t progress; /* atomic: rounds of the coroutines that must keep running */
static int stop;          /* atomic */
static int cruncher_seen; /* atomic: a report named it */
static int bad_report;    /* atomic: a report without a loop of NULL, a name, or our arg */

/* Runs on the monitor's thread: records, asserts nothing. */
static void on_stall(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    if (loop || !info->symbol || arg != (void *)&reports || !info->callback) {
        __atomic_store_n(&bad_report, 1, __ATOMIC_RELEASE);
        return;
    }
    if (strcmp(info->symbol, "cruncher") == 0 && reported_name[0] == '\0') {
        snprintf(reported_name, sizeof reported_name, "%s", info->symbol);
        reported_duration = info->duration_ns;
        __atomic_store_n(&cruncher_seen, 1, __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(&reports, 1, __ATOMIC_RELEASE);
}

static void reset(void)
{
    reported_name[0] = '\0';
    reported_duration = 0;
    __atomic_store_n(&reports, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&progress, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&bad_report, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&cruncher_seen, 0, __ATOMIC_RELEASE);
}

static void *ticker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_add(&progress, 1, __ATOMIC_RELAXED);
        if (hk_co_sleep_until(hk_time_now() + MS) < 0)
            break;
    }
    return NULL;
}

static void *yielder(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_add(&progress, 1, __ATOMIC_RELAXED);
        hk_co_yield();
        /*
         * Not a busy loop: a worker that the OS deschedules in the middle of
         * a long slice would be reported too, and take the one report a second.
         */
        if (hk_co_sleep_until(hk_time_now() + MS / 2) < 0)
            break;
    }
    return NULL;
}

/*
 * Spins at least 100 ms without switching, and then until the report has
 * come and the others have made progress meanwhile (or a long time passed).
 */
static void *cruncher(void *arg)
{
    uint64_t *seen = arg;
    uint64_t before = __atomic_load_n(&progress, __ATOMIC_RELAXED);
    uint64_t start = hk_time_now();
    volatile uint64_t x = 0;
    for (;;) {
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ull + 1;
        uint64_t now = hk_time_now();
        if (now - start >= 100 * MS && __atomic_load_n(&cruncher_seen, __ATOMIC_ACQUIRE) &&
            __atomic_load_n(&progress, __ATOMIC_RELAXED) - before >= 20)
            break;
        if (now - start >= LONG_WAIT)
            break;
    }
    *seen = __atomic_load_n(&progress, __ATOMIC_RELAXED) - before;
    return NULL;
}

static void *stall_main(void *arg)
{
    uint64_t *seen = arg;
    hk_co_t *t1, *t2, *c;
    cr_assert_eq(hk_co_spawn(NULL, ticker, NULL, &(hk_co_attr_t){.name = "ticker"}, &t1), 0);
    cr_assert_eq(hk_co_spawn(NULL, yielder, NULL, &(hk_co_attr_t){.name = "yielder"}, &t2), 0);
    /* Let both run first, so that they are queued somewhere when the crunch starts. */
    while (__atomic_load_n(&progress, __ATOMIC_RELAXED) < 10)
        hk_co_yield();
    cr_assert_eq(hk_co_spawn(NULL, cruncher, seen, &(hk_co_attr_t){.name = "cruncher"}, &c), 0);
    cr_assert_eq(hk_co_join(c, NULL, HK_FOREVER), 0);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    cr_assert_eq(hk_co_join(t1, NULL, HK_FOREVER), 0);
    cr_assert_eq(hk_co_join(t2, NULL, HK_FOREVER), 0);
    return NULL;
}

Test(stall, reports_the_stuck_coroutine_while_others_run, .timeout = 60)
{
    reset();
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2, .stall_cb = on_stall, .stall_arg = &reports};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    uint64_t seen = 0;
    cr_assert_eq(hk_co_run(rt, stall_main, &seen, NULL), 0);
    hk_co_runtime_stats_t st;
    cr_assert_eq(hk_co_runtime_stats(rt, &st), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    cr_assert_eq(__atomic_load_n(&bad_report, __ATOMIC_ACQUIRE), 0);
    cr_assert_geq(__atomic_load_n(&reports, __ATOMIC_ACQUIRE), 1);
    cr_assert_str_eq(reported_name, "cruncher");
    cr_assert_geq(reported_duration, HK_STALL_DEFAULT_NS);
    cr_assert_geq(st.stalls, 1);
    cr_assert_geq(seen, 20, "other coroutines made %llu rounds during the crunch",
                  (unsigned long long)seen);
}

/*
 * Two stalls in a row: the first is reported, the second begins within the
 * rate limit's second. It must still be named once that second has passed
 * (it spins until a report names it, or LONG_WAIT).
 */
static char names_seen[2][32];
static int nnames; /* atomic */

static void on_stall_names(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    (void)arg;
    int i = __atomic_load_n(&nnames, __ATOMIC_ACQUIRE);
    if (i < 2 && info->symbol) {
        snprintf(names_seen[i], sizeof names_seen[i], "%s", info->symbol);
        __atomic_store_n(&nnames, i + 1, __ATOMIC_RELEASE);
    }
}

static void *spin_until_named(void *arg)
{
    int want = (int)(intptr_t)arg;
    uint64_t start = hk_time_now();
    volatile uint64_t x = 0;
    while (__atomic_load_n(&nnames, __ATOMIC_ACQUIRE) < want && hk_time_now() - start < LONG_WAIT)
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ull + 1;
    return NULL;
}

static void *two_stalls(void *arg)
{
    (void)arg;
    hk_co_t *a, *b;
    cr_assert_eq(hk_co_spawn(NULL, spin_until_named, (void *)(intptr_t)1,
                             &(hk_co_attr_t){.name = "first"}, &a),
                 0);
    cr_assert_eq(hk_co_join(a, NULL, HK_FOREVER), 0);
    cr_assert_eq(hk_co_spawn(NULL, spin_until_named, (void *)(intptr_t)2,
                             &(hk_co_attr_t){.name = "second"}, &b),
                 0);
    cr_assert_eq(hk_co_join(b, NULL, HK_FOREVER), 0);
    return NULL;
}

/* Runs fn on a 2-worker runtime whose stall reports (10 ms) go to on_stall_names. */
static void run_naming(hk_co_fn fn, hk_co_runtime_stats_t *st)
{
    __atomic_store_n(&nnames, 0, __ATOMIC_RELEASE);
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2, .stall_ns = 10 * MS, .stall_cb = on_stall_names};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    cr_assert_eq(hk_co_run(rt, fn, NULL, NULL), 0);
    cr_assert_eq(hk_co_runtime_stats(rt, st), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
}

Test(stall, a_stall_held_back_by_the_rate_limit_is_named_later, .timeout = 60)
{
    hk_co_runtime_stats_t st;
    run_naming(two_stalls, &st);
    cr_assert_eq(__atomic_load_n(&nnames, __ATOMIC_ACQUIRE), 2);
    cr_assert_str_eq(names_seen[0], "first");
    cr_assert_str_eq(names_seen[1], "second");
    cr_assert_geq(st.stalls, 2);
}

/*
 * An unnamed coroutine gets its default name "co-<id>" only when asked for
 * it (spawn does not format it): the monitor's report must still name it,
 * with the name hk_co_name gives afterwards.
 */
static char unnamed_name[32];

static void *name_of_next(void *arg)
{
    (void)arg;
    hk_co_t *c;
    cr_assert_eq(hk_co_spawn(NULL, spin_until_named, (void *)(intptr_t)1, NULL, &c), 0);
    /* The handle holds the coroutine until the join: ask for its name after the report. */
    uint64_t start = hk_time_now();
    while (__atomic_load_n(&nnames, __ATOMIC_ACQUIRE) < 1 && hk_time_now() - start < LONG_WAIT)
        hk_co_sleep_until(hk_time_now() + MS);
    snprintf(unnamed_name, sizeof unnamed_name, "%s", hk_co_name(c));
    cr_assert_eq(hk_co_join(c, NULL, HK_FOREVER), 0);
    return NULL;
}

Test(stall, an_unnamed_coroutine_is_reported_by_its_default_name, .timeout = 60)
{
    hk_co_runtime_stats_t st;
    run_naming(name_of_next, &st);
    cr_assert_eq(__atomic_load_n(&nnames, __ATOMIC_ACQUIRE), 1);
    cr_assert_eq(strncmp(names_seen[0], "co-", 3), 0, "reported as '%s'", names_seen[0]);
    cr_assert_str_eq(names_seen[0], unnamed_name);
}

static void *short_sleeps(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        hk_co_sleep_until(hk_time_now() + MS);
    return NULL;
}

Test(stall, options_and_quiet_runtimes)
{
    reset();
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t bad = {.workers = 1, .stall_ns = MS / 2};
    cr_assert_eq(hk_co_runtime_new(&rt, &bad), -EINVAL);
    /* Coroutines that switch often are never reported; nor is an idle runtime. */
    hk_co_runtime_options_t o = {
        .workers = 2, .stall_ns = 200 * MS, .stall_cb = on_stall, .stall_arg = &reports};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    cr_assert_eq(hk_co_run(rt, short_sleeps, NULL, NULL), 0);
    hk_co_runtime_stats_t st;
    cr_assert_eq(hk_co_runtime_stats(rt, &st), 0);
    cr_assert_eq(st.stalls, 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    hk_co_runtime_options_t off = {.workers = 1, .stall_ns = HK_CO_STALL_OFF};
    cr_assert_eq(hk_co_runtime_new(&rt, &off), 0);
    cr_assert_eq(hk_co_run(rt, short_sleeps, NULL, NULL), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    cr_assert_eq(__atomic_load_n(&reports, __ATOMIC_ACQUIRE), 0);
}

/* ---- a blocked worker does not block an echo on another worker ---- */

static int echo_listen;
static uint64_t echoes;             /* atomic: messages echoed by the server */
static int client_stop;             /* atomic */
static hk_co_runtime_t *blocked_rt; /* the runtime the blocker reads its stalls from */

static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    for (;;) {
        ssize_t n = hk_co_read(fd, buf, sizeof buf, HK_FOREVER);
        if (n <= 0 || hk_co_write_all(fd, buf, (size_t)n, HK_FOREVER) < 0)
            break;
        __atomic_fetch_add(&echoes, 1, __ATOMIC_RELAXED);
    }
    hk_co_close(fd);
    return NULL;
}

static void *echo_server(void *arg)
{
    (void)arg;
    int fd = hk_co_accept(echo_listen, NULL, NULL, hk_time_now() + LONG_WAIT);
    if (fd < 0)
        return NULL;
    hk_co_t *c;
    if (hk_co_spawn(NULL, echo_conn, (void *)(intptr_t)fd, &(hk_co_attr_t){.name = "echo"}, &c) < 0)
        return NULL;
    hk_co_join(c, NULL, HK_FOREVER);
    return NULL;
}

/*
 * Blocks its worker in nanosleep (not offloaded) until enough echoes went by
 * meanwhile and the monitor has counted the stall (or LONG_WAIT): counted,
 * not timed, so a monitor thread the OS runs late still gets its look.
 */
static void *blocker(void *arg)
{
    uint64_t *seen = arg;
    uint64_t before = __atomic_load_n(&echoes, __ATOMIC_RELAXED);
    uint64_t start = hk_time_now();
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uint64_t n = __atomic_load_n(&echoes, __ATOMIC_RELAXED) - before;
        hk_co_runtime_stats_t st;
        int noticed = hk_co_runtime_stats(blocked_rt, &st) == 0 && st.stalls >= 1;
        if ((hk_time_now() - start >= 100 * MS && n >= 50 && noticed) ||
            hk_time_now() - start >= LONG_WAIT)
            break;
    }
    *seen = __atomic_load_n(&echoes, __ATOMIC_RELAXED) - before;
    return NULL;
}

static void *blocked_main(void *arg)
{
    hk_co_t *srv, *b;
    cr_assert_eq(hk_co_spawn(NULL, echo_server, NULL, &(hk_co_attr_t){.name = "server"}, &srv), 0);
    while (__atomic_load_n(&echoes, __ATOMIC_RELAXED) < 10)
        hk_co_sleep_until(hk_time_now() + MS);
    cr_assert_eq(hk_co_spawn(NULL, blocker, arg, &(hk_co_attr_t){.name = "blocker"}, &b), 0);
    cr_assert_eq(hk_co_join(b, NULL, HK_FOREVER), 0);
    __atomic_store_n(&client_stop, 1, __ATOMIC_RELEASE);
    cr_assert_eq(hk_co_join(srv, NULL, HK_FOREVER), 0);
    return NULL;
}

/* A plain thread: sends a 64-byte message, waits for its echo, again. */
static void *echo_client(void *arg)
{
    int port = (int)(intptr_t)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        return (void *)1;
    char msg[64], got[64];
    for (unsigned i = 0; !__atomic_load_n(&client_stop, __ATOMIC_ACQUIRE); i++) {
        memset(msg, 'a' + (int)(i % 26), sizeof msg);
        if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg)
            return (void *)2;
        size_t have = 0;
        while (have < sizeof got) {
            ssize_t n = read(fd, got + have, sizeof got - have);
            if (n <= 0)
                return (void *)3;
            have += (size_t)n;
        }
        if (memcmp(msg, got, sizeof msg) != 0)
            return (void *)4;
    }
    close(fd);
    return NULL;
}

static void quiet(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    (void)info;
    (void)arg;
}

Test(stall, a_blocked_worker_does_not_block_an_echo_on_another, .timeout = 60)
{
    __atomic_store_n(&echoes, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&client_stop, 0, __ATOMIC_RELEASE);
    echo_listen = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(echo_listen, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(echo_listen, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(echo_listen, 16), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(echo_listen, (struct sockaddr *)&a, &len), 0);
    pthread_t client;
    cr_assert_eq(pthread_create(&client, NULL, echo_client, (void *)(intptr_t)ntohs(a.sin_port)),
                 0);
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2, .stall_cb = quiet};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    blocked_rt = rt;
    uint64_t seen = 0;
    cr_assert_eq(hk_co_run(rt, blocked_main, &seen, NULL), 0);
    void *cres = (void *)-1;
    pthread_join(client, &cres);
    hk_co_runtime_stats_t st;
    cr_assert_eq(hk_co_runtime_stats(rt, &st), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    close(echo_listen);
    cr_assert_null(cres);
    cr_assert_geq(seen, 50, "%llu echoes while a worker was blocked", (unsigned long long)seen);
    cr_assert_geq(st.stalls, 1); /* the blocker was noticed too */
}
