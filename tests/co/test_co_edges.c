/*
 * The coroutine runtime at edges a review probed: hk_co_close from a thread
 * that is not a worker (a pool thread of hk_co_blocking) wakes a parked
 * reader with -EBADF, and a new fd that gets the closed number is registered
 * afresh; a read after hk_co_wait_fd (after a short read) reads instead of
 * waiting for an edge the wait consumed; hk_co_run waits for the coroutines of
 * a scope main never closed; hk_co_close while hk_co_wait_fd polls the fd
 * gives the waiter -EBADF instead of leaving it parked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>

#include "co_check.h"
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

/* ---- 1. hk_co_close from a thread that is not a worker ("callable from any thread") ---- */

static void *close_fd_fn(void *arg)
{
    usleep(50 * 1000);
    return (void *)(intptr_t)hk_co_close((int)(intptr_t)arg);
}

static void *closer(void *arg)
{
    void *res;
    /* hk_co_blocking runs close_fd_fn on a pool thread: not a worker. */
    if (hk_co_blocking(close_fd_fn, arg, &res) != 0 || res != NULL)
        return NULL;
    return (void *)1;
}

static void *foreign_close_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    hk_co_t *c;
    CHECK(hk_co_spawn(NULL, closer, (void *)(intptr_t)fds[0], NULL, &c) == 0);
    char b;
    uint64_t t0 = hk_time_now();
    ssize_t n = hk_co_read(fds[0], &b, 1, t0 + 2000 * MS);
    void *res;
    CHECK(hk_co_join(c, &res, HK_FOREVER) == 0 && res == (void *)1);
    CHECK(n == -EBADF);
    close(fds[1]);
    return (void *)1;
}

Test(co_edges, close_from_non_worker_wakes_waiter, .timeout = 30)
{
    co_run(foreign_close_main, 2, NULL);
}

/* ---- 2. the fd number is reused after that close: the new fd is never registered ---- */

static void *late_writer(void *arg)
{
    hk_co_sleep_until(hk_time_now() + 20 * MS);
    return (void *)(intptr_t)write((int)(intptr_t)arg, "x", 1);
}

static void *reuse_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    char b;
    CHECK(hk_co_read(fds[0], &b, 1, hk_time_now() + MS) == -ETIMEDOUT); /* registered */
    void *res;
    CHECK(hk_co_blocking(close_fd_fn, (void *)(intptr_t)fds[0], &res) == 0 && res == NULL);
    close(fds[1]);
    int nfds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, nfds) == 0);
    CHECK(nfds[0] == fds[0]); /* the same number */
    hk_co_t *w;
    CHECK(hk_co_spawn(NULL, late_writer, (void *)(intptr_t)nfds[1], NULL, &w) == 0);
    uint64_t t0 = hk_time_now();
    ssize_t n = hk_co_read(nfds[0], &b, 1, t0 + 2000 * MS);
    CHECK(hk_co_join(w, &res, HK_FOREVER) == 0 && res == (void *)1);
    CHECK(n == 1);
    hk_co_close(nfds[0]);
    close(nfds[1]);
    return (void *)1;
}

Test(co_edges, fd_reused_after_close_from_non_worker, .timeout = 30)
{
    co_run(reuse_main, 2, NULL);
}

/* ---- 3. short read, hk_co_wait_fd says readable, the next hk_co_read parks forever ---- */

static void *waitfd_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    char buf[64];
    CHECK(hk_co_read(fds[0], buf, 1, hk_time_now() + MS) == -ETIMEDOUT); /* registered */
    CHECK(write(fds[1], "abc", 3) == 3);
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 1000 * MS) == 3); /* short */
    CHECK(write(fds[1], "defg", 4) == 4);
    hk_co_sleep_until(hk_time_now() + 5 * MS); /* the netpoller sees the edge */
    int r = hk_co_wait_fd(fds[0], HK_READABLE, hk_time_now() + 1000 * MS);
    CHECK(r > 0 && (r & HK_READABLE));
    uint64_t t0 = hk_time_now();
    ssize_t n = hk_co_read(fds[0], buf, sizeof buf, t0 + 2000 * MS);
    CHECK(n == 4);
    hk_co_close(fds[0]);
    close(fds[1]);
    return (void *)1;
}

Test(co_edges, read_after_wait_fd_after_short_read, .timeout = 30)
{
    co_run(waitfd_main, 1, NULL);
}

/* ---- hk_co_run returns while a coroutine of a nested scope still runs ---- */

static int nested_done;

static void *slow_fn(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    return NULL;
}

static void *nested_child(void *arg)
{
    (void)arg;
    hk_co_blocking(slow_fn, NULL, NULL); /* cancellation cannot interrupt it */
    __atomic_store_n(&nested_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *nested_main(void *arg)
{
    (void)arg;
    hk_co_scope_t *s;
    CHECK(hk_co_scope_new(&s) == 0);
    CHECK(hk_co_spawn(s, nested_child, NULL, NULL, NULL) == 0);
    hk_co_sleep_until(hk_time_now() + 10 * MS);
    return (void *)1; /* the nested scope is left to the root scope's close */
}

Test(co_edges, run_waits_for_nested_scopes, .timeout = 30)
{
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    void *res = NULL;
    cr_assert_eq(hk_co_run(rt, nested_main, NULL, &res), 0);
    int done = __atomic_load_n(&nested_done, __ATOMIC_SEQ_CST);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
    cr_assert_eq(done, 1, "hk_co_run returned while a coroutine of a nested scope still ran");
}

/*
 * ---- 5. hk_co_close while hk_co_wait_fd polls the fd (its fresh look, lock dropped) ----
 * The waiter must get -EBADF (or see the fd closed); a waiter that parks on the
 * forgotten registration after the close hears nothing ever again.
 */

typedef struct close_race {
    int fd;
    int go;        /* atomic: both sides spin until it is 2 */
    unsigned spin; /* the closer's head start, in loop iterations */
    int result;
} close_race_t;

static void race_go(close_race_t *cr)
{
    __atomic_fetch_add(&cr->go, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&cr->go, __ATOMIC_SEQ_CST) < 2)
        hk_co_yield();
}

static void *race_waiter(void *arg)
{
    close_race_t *cr = arg;
    race_go(cr);
    cr->result = hk_co_wait_fd(cr->fd, HK_READABLE, HK_FOREVER);
    return (void *)1;
}

static void *race_closer(void *arg)
{
    close_race_t *cr = arg;
    race_go(cr);
    for (volatile unsigned i = 0; i < cr->spin; i++)
        ;
    return (void *)(intptr_t)(hk_co_close(cr->fd) == 0);
}

static void *close_during_wait_main(void *arg)
{
    (void)arg;
    uint32_t rng = 2463534242u;
    int lost = 0, ebadf = 0;
    for (int round = 0; round < 3000 && !lost; round++) {
        int fds[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        char b;
        CHECK(hk_co_read(fds[0], &b, 1, hk_time_now() + MS / 10) == -ETIMEDOUT); /* registered */
        rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
        close_race_t cr = {.fd = fds[0], .spin = rng % 2000};
        hk_co_t *w, *c;
        void *res;
        CHECK(hk_co_spawn(NULL, race_waiter, &cr, NULL, &w) == 0);
        CHECK(hk_co_spawn(NULL, race_closer, &cr, NULL, &c) == 0);
        CHECK(hk_co_join(c, &res, HK_FOREVER) == 0 && res == (void *)1);
        if (hk_co_join(w, NULL, hk_time_now() + 1000 * MS) == -ETIMEDOUT) {
            lost++; /* parked on a closed fd: nothing will ever wake it */
            hk_co_cancel(w);
            CHECK(hk_co_join(w, NULL, HK_FOREVER) == 0);
            fprintf(stderr, "round %d: hk_co_wait_fd still parked 1 s after hk_co_close\n", round);
        } else {
            CHECK(cr.result == -EBADF);
            ebadf++;
        }
        CHECK(close(fds[1]) == 0);
    }
    CHECK(lost == 0);
    return (void *)1;
}

Test(co_edges, close_while_wait_fd_polls, .timeout = 30)
{
    co_run(close_during_wait_main, 2, NULL);
}
