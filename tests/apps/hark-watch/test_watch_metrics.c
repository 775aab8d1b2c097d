/*
 * The /metrics responder (metrics.c) in process, on a real loop: its start
 * and stop protocol. (Its HTTP rules are tested end to end against the
 * binary, test_hark_watch.) Kept out of test_watch_daemon, whose alert test
 * counts on every process of its executable holding no socket entries.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "metrics.h"

static void dummy_io(hk_io_t *io, unsigned revents)
{
    (void)io;
    (void)revents;
}

/*
 * metrics_start fails after it initialised its handles (here hk_io_start:
 * the number its socket gets is still claimed by another watcher of the
 * loop, -EEXIST). It must close them, so that once the loop has run its
 * close callbacks it can be freed: before, the two handles stayed counted
 * and hk_loop_free said -EBUSY forever.
 */
Test(watch_metrics, start_failure_leaves_the_loop_freeable)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int fd = p[0] < p[1] ? p[0] : p[1];
    hk_io_t squatter;
    cr_assert_eq(hk_io_init(loop, &squatter, fd), 0);
    cr_assert_eq(hk_io_start(&squatter, HK_READABLE, dummy_io), 0);
    close(p[0]); /* the lowest free number: metrics_start's socket gets it */
    close(p[1]);
    metrics_server_t *m = NULL;
    int r = metrics_start(loop, "127.0.0.1:0", NULL, NULL, &m);
    cr_assert_eq(r, -EEXIST, "metrics_start: %d", r);
    hk_close(&squatter.base, NULL);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(hk_loop_free(loop), 0, "a handle of the failed start is still open");
}

/* The success path for contrast: stop, one iteration, and the loop is free. */
Test(watch_metrics, stop_leaves_the_loop_freeable)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    metrics_server_t *m = NULL;
    cr_assert_eq(metrics_start(loop, "127.0.0.1:0", NULL, NULL, &m), 0);
    cr_assert_gt(metrics_port(m), 0);
    metrics_stop(m);
    cr_assert_geq(hk_loop_run(loop, HK_RUN_NOWAIT), 0);
    cr_assert_eq(hk_loop_free(loop), 0);
}
