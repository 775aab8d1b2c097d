/*
 * Busy polling (hk_loop_busy_poll): poll without sleeping for a while before
 * each sleep.
 *
 * A loop that sleeps in epoll_wait and is woken by a packet pays for the
 * sleep (schedule out) and the wake-up (try_to_wake_up, an IPI when the
 * sender runs on another core), and on loopback the wake-up is charged to the
 * sender: a client and a server on one machine slow each other down by
 * sleeping. Polling for a short while after a burst of work keeps the thread
 * running while the next request is likely to come. It cannot replace the
 * sleep: the spin ends at the budget, at the next timer deadline, or as soon
 * as another thread has work for the loop (an async sent while we spin sets
 * work_pending without writing the eventfd, because the loop does not sleep),
 * and then the ordinary sleep runs, which sees the pending work and returns.
 */
#include "loop/internal.h"

int hk_loop_busy_poll(hk_loop_t *loop, uint64_t spin_ns)
{
    if (!loop || spin_ns > HK_LOOP_SPIN_MAX_NS)
        return -EINVAL;
    loop->spin_ns = spin_ns;
    return 0;
}

static inline void hk__spin_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/*
 * Polls until events come (returns their count), or until the budget or the
 * deadline runs out or work is pending (returns 0: the caller sleeps, which
 * returns at once when there is work). now: the current time, or 0.
 */
int hk__spin(hk_loop_t *loop, uint64_t deadline, uint64_t now)
{
    if (!now)
        now = hk__clock_now();
    uint64_t until = now + loop->spin_ns;
    if (deadline < until)
        until = deadline;
    for (;;) {
        int n = epoll_wait(loop->epfd, loop->events, loop->events_cap, 0);
        loop->stats.spin_polls++;
        if (n > 0) {
            loop->stats.spin_hits++;
            return n;
        }
        if (n < 0 && errno != EINTR)
            return 0; /* let the sleep report it */
        if (__atomic_load_n(&loop->work_pending, __ATOMIC_RELAXED) || hk__clock_now() >= until)
            return 0;
        hk__spin_relax();
    }
}
