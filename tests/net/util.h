/*
 * Shared helpers for the net tests: loops, a guard timer that turns a hang
 * into a failure, and a TCP pair made with hark's own listen and connect.
 * Everything is static inline so unused helpers do not warn.
 */
#ifndef HK_TEST_NET_UTIL_H
#define HK_TEST_NET_UTIL_H

#include <criterion/criterion.h>
#include <hark.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS(x) ((int64_t)(x)*INT64_C(1000000))

static inline hk_loop_t *new_loop(void)
{
    hk_loop_t *loop = NULL;
    int r = hk_loop_new(&loop, 0);
    cr_assert_eq(r, 0, "hk_loop_new: %s", hk_err_name(r));
    return loop;
}

static inline void finish_loop(hk_loop_t *loop)
{
    for (int i = 0; i < 3; i++)
        cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    int r = hk_loop_free(loop);
    cr_assert_eq(r, 0, "hk_loop_free: %s", hk_err_name(r));
}

static inline void guard_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    (void)expirations;
}

/* Runs the loop until *flag is set, failing after timeout_ms. */
static inline void run_until(hk_loop_t *loop, volatile int *flag, int timeout_ms)
{
    uint64_t end = hk_time_now() + (uint64_t)MS(timeout_ms);
    hk_timer_t guard;
    hk_timer_init(loop, &guard);
    hk_timer_start_in(&guard, guard_tick, MS(10), MS(10));
    while (!*flag) {
        cr_assert_lt(hk_time_now(), end, "timed out waiting");
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    }
    hk_close(&guard.base, NULL);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
}

/* A connected TCP pair on loopback (port from bind(0)), server side accepted by hk_listener. */
struct tcp_pair_ctx {
    int server_fd, client_fd, got_server, got_client;
};

static inline void pair_on_conn(hk_listener_t *l, int fd)
{
    struct tcp_pair_ctx *c = l->data;
    c->server_fd = fd;
    c->got_server = 1;
}

static inline void pair_on_connect(hk_connect_t *req, int fd)
{
    struct tcp_pair_ctx *c = req->data;
    cr_assert_geq(fd, 0, "connect: %s", hk_err_name(fd));
    c->client_fd = fd;
    c->got_client = 1;
}

static inline void closed_flag_listener(hk_listener_t *l)
{
    (void)l;
}

static inline void tcp_pair(hk_loop_t *loop, const char *addr, int fds[2])
{
    struct tcp_pair_ctx c = {-1, -1, 0, 0};
    hk_listener_t l;
    l.data = &c;
    int r = hk_tcp_listen(loop, &l, addr, 16, 0, pair_on_conn);
    cr_assert_eq(r, 0, "listen %s: %s", addr, hk_err_name(r));
    int port = hk_listener_port(&l);
    cr_assert_gt(port, 0);
    char where[64];
    if (addr[0] == '[')
        snprintf(where, sizeof where, "[::1]:%d", port);
    else
        snprintf(where, sizeof where, "127.0.0.1:%d", port);
    hk_connect_t req;
    req.data = &c;
    r = hk_tcp_connect(loop, &req, where, hk_time_now() + (uint64_t)MS(5000), HK_CONNECT_NODELAY,
                       pair_on_connect);
    cr_assert_eq(r, 0, "connect: %s", hk_err_name(r));
    uint64_t end = hk_time_now() + (uint64_t)MS(5000);
    while (!(c.got_server && c.got_client)) {
        cr_assert_lt(hk_time_now(), end, "tcp_pair timed out");
        cr_assert_geq(hk_loop_run(loop, HK_RUN_ONCE), 0);
    }
    hk_listener_close(&l, NULL);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    fds[0] = c.server_fd;
    fds[1] = c.client_fd;
}

#endif
