/*
 * One iteration of the loop:
 *
 *   due timers -> idle hooks -> deferred -> prepare hooks -> apply interest
 *   changes -> sleep in epoll -> io callbacks (and async, signals) -> check
 *   hooks -> close callbacks -> deferred
 *
 * The sleep ends at the earliest timer deadline. Every step costs O(work
 * done): the timer heap gives the next deadline in O(1), interest changes are
 * a list of touched fds, and io dispatch walks only the ready events.
 */
#include <limits.h>

#include "loop/stall.h"

/*
 * Each phase is skipped with one test when it has nothing to do, so an
 * iteration with one ready event costs tens of instructions, not hundreds.
 */
static inline void hk__phase_hooks(hk_loop_t *loop, hk_hook_kind_t kind)
{
    if (!hk__list_empty(&loop->hooks[kind - 1]))
        hk__hooks_run(loop, kind);
}

static inline void hk__phase_defers(hk_loop_t *loop)
{
    if (!hk__list_empty(&loop->defers))
        hk__defers_run(loop);
}

static inline void hk__phase_closing(hk_loop_t *loop)
{
    if (loop->closing)
        hk__run_closing(loop);
}

static inline void hk__phase_timers(hk_loop_t *loop)
{
    if (loop->heap_len > 0 && loop->heap[0].when <= loop->now)
        hk__timers_run(loop);
}

/* Whether the loop must not sleep: something is ready to run without epoll. */
static bool hk__must_poll(const hk_loop_t *loop)
{
    return loop->idle_active > 0 || loop->closing || !hk__list_empty(&loop->defers) ||
           !hk__list_empty(&loop->files) || loop->stop_flag ||
           __atomic_load_n(&loop->work_pending, __ATOMIC_RELAXED);
}

/* A module (publish) brackets the sleep; without one, the loop pays one test per iteration. */
static int hk__sleep_bracketed(hk_loop_t *loop, uint64_t deadline, uint64_t before)
{
    loop->sleep_fn(loop, 1);
    int n = hk__sleep(loop, deadline, before);
    loop->sleep_fn(loop, 0);
    return n;
}

/*
 * worked: callbacks already ran in this HK_RUN_ONCE call, so it
 * has done its one round of work and only polls, without sleeping.
 */
static int hk__iterate(hk_loop_t *loop, hk_run_mode_t mode, bool worked)
{
    hk__phase_hooks(loop, HK_HOOK_PREPARE);
    hk__phase_defers(loop);
    if (loop->nchanges > 0)
        hk__io_apply_changes(loop);

    /* HK_RUN_ONCE with nothing alive behaves as HK_RUN_NOWAIT, as in libuv. */
    uint64_t deadline;
    if (mode == HK_RUN_NOWAIT || (mode == HK_RUN_ONCE && (worked || !hk_loop_alive(loop))) ||
        hk__must_poll(loop))
        deadline = 0;
    else if (loop->heap_len > 0)
        deadline = loop->heap[0].when;
    else
        deadline = HK_FOREVER;

    uint64_t before = 0;
    if (loop->metrics || HK_UNLIKELY(loop->queue_on)) {
        before = hk__clock_now();
        if (loop->metrics)
            loop->stats.ns_in_callbacks += before - loop->woke_at;
    }
    if (loop->stall && deadline != 0)
        hk__stall_sleeping(loop);
    int n = 0;
    if (HK_UNLIKELY(loop->spin_ns != 0) && deadline != 0) {
        n = hk__spin(loop, deadline, before);
        /*
         * Busy polling found events and the loop will not sleep: it still
         * passes between iterations, so say so (a quiescent state for
         * hark/publish), or a loop kept busy by its polls would hold every
         * replaced version for ever.
         */
        if (n > 0 && HK_UNLIKELY(loop->sleep_fn != NULL)) {
            loop->sleep_fn(loop, 1);
            loop->sleep_fn(loop, 0);
        }
    }
    if (n == 0)
        n = HK_UNLIKELY(loop->sleep_fn != NULL) ? hk__sleep_bracketed(loop, deadline, before)
                                                : hk__sleep(loop, deadline, before);
    if (n < 0)
        return n;
    loop->now = loop->woke_at = hk__clock_now();
    if (loop->stall)
        hk__stall_awake(loop);
    if (loop->metrics)
        loop->stats.ns_asleep += loop->now - before;
    loop->stats.iterations++;

    if (HK_UNLIKELY(loop->queue_on))
        hk__queue_woke(loop, deadline, before); /* how late it woke after a deadline */
    if (n > 0)
        hk__io_dispatch(loop, n);
    if (__atomic_load_n(&loop->work_pending, __ATOMIC_RELAXED))
        hk__async_process(loop);
    if (!hk__list_empty(&loop->files))
        hk__io_run_files(loop);
    hk__phase_hooks(loop, HK_HOOK_CHECK);
    hk__phase_closing(loop);
    hk__phase_defers(loop);
    return 0;
}

int hk_loop_run(hk_loop_t *loop, hk_run_mode_t mode)
{
    if (mode != HK_RUN_DEFAULT && mode != HK_RUN_ONCE && mode != HK_RUN_NOWAIT)
        return -EINVAL;
    if (loop->running)
        return -EBUSY;
    loop->running = 1;
    loop->now = loop->woke_at = hk__clock_now();
    if (loop->sleep_fn)
        loop->sleep_fn(loop, 0);

    int err = 0;
    uint64_t callbacks_before = loop->stats.callbacks;
    if (loop->stall)
        hk__stall_awake(loop);
    for (;;) {
        loop->defer_rounds = 0;
        hk__phase_timers(loop);
        hk__phase_hooks(loop, HK_HOOK_IDLE);
        hk__phase_defers(loop);
        hk__phase_closing(loop);
        if (loop->stop_flag || (mode == HK_RUN_DEFAULT && !hk_loop_alive(loop)))
            break;
        err = hk__iterate(loop, mode, loop->stats.callbacks != callbacks_before);
        if (err < 0)
            break;
        if (mode != HK_RUN_DEFAULT) {
            /* Timers that fell due while we slept belong to this iteration. */
            hk__phase_timers(loop);
            hk__phase_closing(loop);
            break;
        }
    }
    if (loop->stall)
        hk__stall_sleeping(loop);
    if (loop->sleep_fn)
        loop->sleep_fn(loop, 1);
    loop->stop_flag = 0;
    loop->running = 0;
    if (err < 0)
        return err;
    return loop->active_refs > INT_MAX ? INT_MAX : (int)loop->active_refs;
}
