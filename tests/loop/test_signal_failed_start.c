/*
 * A failed hk_signal_start changes nothing (loop.h), the thread's signal mask
 * included: with no fd left for the signalfd (EMFILE), the signal must not
 * stay blocked in the calling thread.
 */
#include "util.h"

#include <signal.h>
#include <sys/resource.h>

static void on_sig(hk_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
}

Test(signal_failed_start, failed_start_leaves_the_signal_unblocked)
{
    hk_loop_t *loop = new_loop(0);
    hk_signal_t sig;
    cr_assert_eq(hk_signal_init(loop, &sig), 0);
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    cr_assert_not(sigismember(&cur, SIGUSR2), "SIGUSR2 starts unblocked");
    /* No fd left for the loop's signalfd. */
    int fds[4096];
    int n = 0;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    while (n < 4096) {
        int fd = dup(0);
        if (fd < 0)
            break;
        fds[n++] = fd;
    }
    int r = hk_signal_start(&sig, on_sig, SIGUSR2);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    cr_assert_eq(r, -EMFILE, "hk_signal_start without a free fd: %d", r);
    cr_assert_not(hk_is_active(&sig.base));
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    cr_expect_not(sigismember(&cur, SIGUSR2),
                  "hk_signal_start failed with -EMFILE but left SIGUSR2 blocked in the thread");
    hk_close(&sig.base, NULL);
    finish_loop(loop);
}
