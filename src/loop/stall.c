/*
 * The stall detector: which callback held the loop, for how long, and where.
 *
 * A callback that blocks or computes for 100 ms delays every other fd of the
 * loop by 100 ms, and after it returns its stack is gone. As in Seastar, a
 * timer signal interrupts the loop thread while it is stuck, so the backtrace
 * shows the code that stalled. We use a POSIX timer delivered to the loop's
 * own thread (SIGEV_THREAD_ID), on CLOCK_MONOTONIC rather than Seastar's
 * CPU-time clock, so a callback that sleeps or blocks in a system call is
 * caught too; the report gives the CPU time used as well, which tells
 * blocking (little CPU) from computing (all CPU).
 *
 * Cost: the timer is armed once when the loop wakes with work and disarmed
 * before it sleeps (two timer_settime calls per iteration), ticking every
 * threshold/2. Each callback bumps a sequence number and reads the clock on
 * entry and exit. The signal handler compares the sequence with the one of
 * the previous tick: if the same callback is still running it has run for at
 * least threshold/2, and the handler captures a backtrace (once per callback)
 * into a buffer. When a callback returns after the threshold, the loop counts
 * the stall and reports it (at most once a second; the rest are counted as
 * suppressed). Nothing but the backtrace happens in the signal handler.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loop/stall.h"

#define HK__STALL_FRAMES 32
#define HK__STALL_REPORT_INTERVAL_NS UINT64_C(1000000000)

struct hk__stall {
    timer_t timer;
    int armed;
    uint64_t threshold;
    hk_stall_cb cb;
    void *arg;
    /* Shared with the signal handler, which runs on the same thread. */
    volatile uint64_t seq; /* odd while a callback runs */
    volatile uint64_t seen_seq;
    volatile uint64_t frames_seq;
    volatile int nframes;
    volatile int paused; /* the handler stopped the ticks until this callback ends */
    int in_callback;     /* begin ran for the current callback (end pairs with it) */
    int errfd;           /* stderr reopened non-blocking for the default report, or -1 */
    void *frames[HK__STALL_FRAMES];
    const void *callback;
    uint64_t started;
    uint64_t cpu_at_wake;
    uint64_t last_report;
    uint64_t suppressed;
};

static __thread struct hk__stall *hk__stall_tls;
static pthread_once_t hk__stall_once = PTHREAD_ONCE_INIT;
static int hk__stall_install_err;

static int hk__stall_signal(void)
{
    return SIGRTMAX - 1;
}

static void hk__stall_on_signal(int signo, siginfo_t *info, void *uctx)
{
    (void)signo;
    (void)info;
    (void)uctx;
    struct hk__stall *s = hk__stall_tls;
    if (!s)
        return;
    int saved = errno;
    uint64_t seq = s->seq;
    if ((seq & 1) && seq == s->seen_seq && s->frames_seq != seq) {
        s->nframes = backtrace(s->frames, HK__STALL_FRAMES);
        s->frames_seq = seq;
        /*
         * One backtrace per stall is enough. Stop ticking until the callback
         * returns, so that a callback blocked in a system call that SA_RESTART
         * does not restart (nanosleep, poll) is interrupted at most twice.
         */
        struct itimerspec off = {0};
        timer_settime(s->timer, 0, &off, NULL);
        s->paused = 1;
    }
    s->seen_seq = seq;
    errno = saved;
}

static void hk__stall_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = hk__stall_on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(hk__stall_signal(), &sa, NULL) < 0)
        hk__stall_install_err = -errno;
    /* backtrace() loads libgcc_s on first use (malloc): do it outside the handler. */
    void *warm[2];
    backtrace(warm, 2);
}

static uint64_t hk__cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void hk__stall_settime(struct hk__stall *s, uint64_t ns)
{
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(ns / 1000000000u);
    its.it_value.tv_nsec = (long)(ns % 1000000000u);
    its.it_interval = its.it_value;
    timer_settime(s->timer, 0, &its, NULL);
}

void hk__stall_free(hk_loop_t *loop)
{
    struct hk__stall *s = loop->stall;
    if (!s)
        return;
    timer_delete(s->timer);
    if (s->errfd >= 0)
        close(s->errfd);
    if (hk__stall_tls == s)
        hk__stall_tls = NULL;
    loop->stall = NULL;
    hk__loop_hooks_changed(loop);
    free(s);
}

int hk_loop_stall_detect(hk_loop_t *loop, uint64_t threshold_ns, hk_stall_cb cb, void *arg)
{
    if (!loop)
        return -EINVAL;
    if (threshold_ns == 0) {
        hk__stall_free(loop);
        return 0;
    }
    if (threshold_ns < UINT64_C(1000000) || threshold_ns >= HK_DEADLINE_MAX)
        return -EINVAL;
    pthread_once(&hk__stall_once, hk__stall_install);
    if (hk__stall_install_err < 0)
        return hk__stall_install_err;
    struct hk__stall *s = loop->stall;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -ENOMEM;
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = hk__stall_signal();
        sev._sigev_un._tid = gettid();
        if (timer_create(CLOCK_MONOTONIC, &sev, &s->timer) < 0) {
            int err = -errno;
            free(s);
            return err;
        }
        /* The default report must not block the loop on a full stderr pipe. */
        s->errfd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        loop->stall = s;
        hk__loop_hooks_changed(loop);
    }
    s->threshold = threshold_ns;
    s->cb = cb;
    s->arg = arg;
    hk__stall_tls = s;
    return 0;
}

void hk__stall_awake(hk_loop_t *loop)
{
    struct hk__stall *s = loop->stall;
    if (!s || s->armed)
        return;
    s->cpu_at_wake = hk__cpu_now();
    hk__stall_settime(s, s->threshold / 2);
    s->armed = 1;
}

void hk__stall_sleeping(hk_loop_t *loop)
{
    struct hk__stall *s = loop->stall;
    if (!s || !s->armed)
        return;
    hk__stall_settime(s, 0);
    s->armed = 0;
}

void hk__stall_begin(hk_loop_t *loop, const void *callback)
{
    struct hk__stall *s = loop->stall;
    if (!s)
        return; /* turned off by an earlier callback of this batch */
    s->in_callback = 1;
    s->callback = callback;
    s->started = hk__clock_now();
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    s->seq++; /* odd: in a callback */
}

static void hk__stall_default_report(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)arg;
    const struct hk__stall *s = loop->stall;
    int fd = s && s->errfd >= 0 ? s->errfd : 2;
    char line[256];
    int len = snprintf(
        line, sizeof line,
        "hark: loop stalled for %llu ms in %s (cpu %llu ms, %llu more not "
        "reported)\n",
        (unsigned long long)(info->duration_ns / 1000000), info->symbol ? info->symbol : "?",
        (unsigned long long)(info->cpu_ns / 1000000), (unsigned long long)info->suppressed);
    if (len > 0 && write(fd, line, (size_t)len) < 0)
        return; /* EAGAIN: stderr is full; a stall report is not worth blocking for */
    if (info->nframes > 0)
        backtrace_symbols_fd((void *const *)info->frames, info->nframes, fd);
}

static void hk__stall_report(hk_loop_t *loop, struct hk__stall *s, uint64_t seq, uint64_t dt,
                             uint64_t now)
{
    loop->stats.stalls++;
    if (s->last_report && now - s->last_report < HK__STALL_REPORT_INTERVAL_NS) {
        s->suppressed++;
        return;
    }
    Dl_info dl;
    memset(&dl, 0, sizeof dl);
    hk_stall_info_t info = {
        .duration_ns = dt,
        .cpu_ns = hk__cpu_now() - s->cpu_at_wake,
        .threshold_ns = s->threshold,
        .callback = s->callback,
        .symbol = NULL,
        .frames = s->frames,
        .nframes = s->frames_seq == seq ? s->nframes : 0,
        .suppressed = s->suppressed,
    };
    /* A function pointer is converted through an integer only to look up its name. */
    if (dladdr((void *)(uintptr_t)s->callback, &dl) && dl.dli_sname)
        info.symbol = dl.dli_sname;
    s->last_report = now;
    s->suppressed = 0;
    hk_stall_cb cb = s->cb ? s->cb : hk__stall_default_report;
    cb(loop, &info, s->arg);
}

void hk__stall_end(hk_loop_t *loop)
{
    struct hk__stall *s = loop->stall;
    /* Turned on or off inside this callback: there is no matching begin. */
    if (!s || !s->in_callback)
        return;
    s->in_callback = 0;
    if (s->paused) {
        s->paused = 0;
        if (s->armed)
            hk__stall_settime(s, s->threshold / 2);
    }
    uint64_t seq = s->seq;
    s->seq = seq + 1; /* even: between callbacks */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint64_t now = hk__clock_now();
    uint64_t dt = now - s->started;
    if (dt >= s->threshold)
        hk__stall_report(loop, s, seq, dt, now);
}
