/*
 * Shared helpers for the loop tests. Everything is static inline so that a
 * test file that does not use a helper does not warn about it.
 *
 * Every test runs on real kernel objects, so the helpers only wrap the
 * boilerplate: non-blocking pipes and socketpairs, a guard timer that turns a
 * hang into a failure, and the close/free sequence that loop.h documents.
 */
#ifndef HK_TEST_LOOP_UTIL_H
#define HK_TEST_LOOP_UTIL_H

#include <criterion/criterion.h>
#include <hark.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS(x) ((int64_t)(x)*INT64_C(1000000))

static inline hk_loop_t *new_loop(unsigned flags)
{
    hk_loop_t *loop = NULL;
    int r = hk_loop_new(&loop, flags);
    cr_assert_eq(r, 0, "hk_loop_new(%#x): %s", flags, hk_err_name(r));
    cr_assert_not_null(loop);
    return loop;
}

/* loop.h: run the loop once after the last hk_close, then free succeeds. */
static inline void finish_loop(hk_loop_t *loop)
{
    int r = hk_loop_run(loop, HK_RUN_NOWAIT);
    cr_assert_geq(r, 0, "hk_loop_run(NOWAIT) while finishing: %s", hk_err_name(r));
    r = hk_loop_free(loop);
    cr_assert_eq(r, 0, "hk_loop_free after closing everything: %s", hk_err_name(r));
}

static inline void make_pipe(int p[2])
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
}

static inline void make_socketpair(int s[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s), 0,
                 "socketpair: %s", strerror(errno));
}

static inline void close_pair(int p[2])
{
    cr_assert_eq(close(p[0]), 0);
    cr_assert_eq(close(p[1]), 0);
}

static inline void write_byte(int fd)
{
    char c = 'x';
    cr_assert_eq(write(fd, &c, 1), 1, "write(%d): %s", fd, strerror(errno));
}

/* Reads everything available on a non-blocking fd; returns the byte count. */
static inline long drain_fd(int fd)
{
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        total += n;
    }
    return total;
}

static inline hk_loop_stats_t get_stats(hk_loop_t *loop)
{
    hk_loop_stats_t st;
    memset(&st, 0, sizeof st);
    cr_assert_eq(hk_loop_stats(loop, &st), 0);
    return st;
}

/*
 * A guard timer: unreferenced (it never keeps HK_RUN_DEFAULT going), and when
 * it fires it stops the loop and records that it did, so a lost event fails a
 * test instead of hanging it.
 */
typedef struct guard {
    hk_timer_t timer;
    int fired;
} guard_t;

static inline void guard_cb(hk_timer_t *timer, uint64_t expirations)
{
    guard_t *g = (guard_t *)timer;
    (void)expirations;
    g->fired = 1;
    hk_loop_stop(timer->base.loop);
}

static inline void guard_start(hk_loop_t *loop, guard_t *g, int64_t ms)
{
    g->fired = 0;
    cr_assert_eq(hk_timer_init(loop, &g->timer), 0);
    cr_assert_eq(hk_timer_start_in(&g->timer, guard_cb, MS(ms), 0), 0);
    hk_unref(&g->timer.base);
}

static inline void guard_close(guard_t *g)
{
    hk_close(&g->timer.base, NULL);
}

/* Runs HK_RUN_ONCE iterations until cond holds; fails if the guard fires first. */
#define RUN_UNTIL(loop, g, cond)                                                                   \
    do {                                                                                           \
        while (!(cond) && !(g)->fired) {                                                           \
            int run_r_ = hk_loop_run((loop), HK_RUN_ONCE);                                         \
            cr_assert_geq(run_r_, 0, "hk_loop_run(ONCE): %s", hk_err_name(run_r_));                \
        }                                                                                          \
        cr_assert(!(g)->fired, "guard timer fired before: %s", #cond);                             \
    } while (0)

static inline void busy_wait_ns(uint64_t ns)
{
    uint64_t end = hk_time_now() + ns;
    while (hk_time_now() < end) {
    }
}

#endif
