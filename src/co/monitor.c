/*
 * The stall monitor: which coroutine holds a worker, and for how long.
 *
 * A coroutine that computes for 100 ms, or calls a blocking function that
 * was not offloaded with hk_co_blocking, keeps its worker thread: nothing
 * preempts it. The other workers steal its queue, so the rest of the program
 * goes on with one worker less, but someone has to say which coroutine did
 * it, while it still runs (a stuck one may never return).
 *
 * As Go's sysmon does, a thread of the runtime samples the workers every
 * stall_ns / 4. Each worker bumps a counter whenever it switches into a
 * coroutine and publishes the coroutine it runs; both are plain stores to
 * its own memory, so the hot path pays nothing more. A worker whose counter
 * has not moved since the monitor first saw that coroutine running has run
 * it the whole time in between; after stall_ns the monitor counts a stall
 * and reports the coroutine's name (at most once a second).
 *
 * Reading the name is the delicate part: the coroutine may exit and be freed
 * at that very moment. The monitor raises mon_reading, then checks that the
 * worker still runs the same slice; the worker of an exiting coroutine has
 * cleared `current` and waits while mon_reading is up before freeing
 * anything. Between the store and the load each side does an acquire-release
 * read-modify-write of one shared word (mon_fence, as hk__sched_fence does;
 * TSan understands it, unlike a fence): whichever comes second sees the
 * other's store. That costs one atomic operation per coroutine exit, none
 * per switch.
 *
 * Even that one was a tenth of a spawn-and-exit (bench/co_micro, 10 of 100
 * ns: a locked add on a line every worker writes), for the benefit of a
 * read that happens at most once a second. So where the kernel has it, the
 * monitor pays for both sides: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
 * runs a full barrier on every thread of the process that is running at
 * that moment (and a thread that is not running passes one when it is
 * switched back in), so the exit side needs only a compiler barrier between
 * its store and its load. This is the asymmetric fence of liburcu's
 * membarrier flavour. TSan does not know the system call, so TSan builds
 * keep the symmetric read-modify-write.
 *
 * When no worker runs anything for a whole tick, the monitor sleeps until a
 * worker that was idle (or is new) switches into a coroutine (the same
 * pairing, on mon_sleeping and the counters), so an idle runtime causes no
 * wake-ups. A worker also wakes it when it switches in and a relaxed load
 * sees mon_sleeping set: that covers a worker the OS held between two
 * coroutines, without going idle, while the monitor fell asleep.
 *
 * The backtrace. A name says which coroutine, not where it is stuck, and
 * only its own thread can walk its stack while it runs. So, as the loop's
 * stall detector does (src/loop/stall.c), a report interrupts the worker:
 * the monitor writes a request (the slice it saw, the coroutine's stack) into
 * the worker, bumps bt_req and sends SIGRTMAX - 2 with pthread_kill (the loop
 * detector uses SIGRTMAX - 1; workers leave this one unblocked when a monitor
 * runs). The handler, installed once with SA_RESTART | SA_SIGINFO |
 * SA_ONSTACK (the worker's 64 KiB alternate stack carries it and the
 * unwinder, not the coroutine's small stack), calls backtrace() into the
 * worker's buffer and publishes bt_done with a release store; the monitor
 * waits for it at most 5 ms. backtrace() is called once when the handler is
 * installed, since its first call loads libgcc_s (malloc, dlopen). The
 * unwinder stops at the coroutine's boot frame (hk__ctx_boot's return
 * address is undefined in its CFI).
 *
 * The handler answers without frames unless the frames would be the stalled
 * coroutine's: the worker still runs the requested slice, the interrupted sp
 * is on that coroutine's stack and its pc is not inside the switch
 * (hk__ctx_interrupted), and the handler itself runs on the alternate stack
 * or, with 8 KiB to spare, on the coroutine's. A coroutine that switched
 * away meanwhile is reported without frames, and so is one that does not
 * answer in time (signals blocked, or ThreadSanitizer, which holds an
 * asynchronous signal until the thread calls an intercepted function); the
 * monitor asks that worker again only once it has answered, so a late
 * answer never overwrites frames being read. The report names the
 * interrupted function first: frames before it (the handler, the signal
 * trampoline) are dropped.
 *
 * What the signal costs the coroutine: nothing while it does not stall, at
 * most one interruption a second while it does. SA_RESTART restarts most
 * system calls; those that never restart (nanosleep, poll, epoll_wait, ...)
 * return EINTR to a coroutine blocked in them, as they would for any signal.
 */
#include "co/internal.h"

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HK__MONITOR_REPORT_INTERVAL_NS UINT64_C(1000000000)
/* How long a report waits for the worker's backtrace. */
#define HK__MONITOR_FRAMES_WAIT_NS (UINT64_C(5) * 1000000)
/* Stack the handler wants below it when it runs on the coroutine's own stack. */
#define HK__MONITOR_HANDLER_ROOM 8192u

typedef struct hk__watch {
    uint64_t slices; /* the worker's counter when last sampled */
    uint64_t since;  /* when this slice was first seen running */
    uint64_t cpu_since;
    clockid_t cpu; /* the worker thread's CPU clock */
    int has_cpu;
    int running; /* the slice was seen running */
    int counted; /* this slice's stall is in the stalls counter */
    int done;    /* ... and was reported, or is past reporting */
} hk__watch_t;

typedef struct hk__monitor {
    hk_co_runtime_t *rt;
    hk__watch_t *watch;
    uint64_t last_report;
    uint64_t suppressed;
    int frames_ok; /* the handler is installed: workers may be signalled */
} hk__monitor_t;

static pthread_once_t hk__monitor_sig_once = PTHREAD_ONCE_INIT;
static int hk__monitor_sig_ok;

int hk__monitor_signal(void)
{
    return SIGRTMAX - 2;
}

/* On the worker, in the handler: whether a backtrace taken here shows the requested slice. */
static int hk__monitor_can_unwind(hk__worker_t *w, void *uctx)
{
    if (__atomic_load_n(&w->slices, __ATOMIC_RELAXED) != w->bt_slice ||
        !__atomic_load_n(&w->current, __ATOMIC_RELAXED))
        return 0;
    /*
     * Where this handler runs: on the alternate stack when the kernel ran it,
     * so uctx is the interrupted code; on the coroutine's stack when
     * ThreadSanitizer ran it later from an intercepted call of the coroutine
     * (uctx is then from the signal's arrival, still on that stack since the
     * slice is the same). Anywhere else, the walk would not be the
     * coroutine's.
     */
    volatile char here = 0;
    uintptr_t at = (uintptr_t)&here, lo = (uintptr_t)w->bt_lo;
    stack_t ss;
    int on_alt = sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK);
    int on_co = at >= lo + HK__MONITOR_HANDLER_ROOM && at - lo < w->bt_size;
    if (!on_alt && !on_co)
        return 0;
    return hk__ctx_interrupted(uctx, w->bt_lo, w->bt_size, &w->bt_pc);
}

static void hk__monitor_on_signal(int signo, siginfo_t *info, void *uctx)
{
    (void)signo;
    (void)info;
    hk__worker_t *w = hk__worker_current();
    if (!w)
        return; /* not a worker: a stray signal */
    int saved = errno;
    unsigned req = __atomic_load_n(&w->bt_req, __ATOMIC_ACQUIRE);
    if (req != __atomic_load_n(&w->bt_done, __ATOMIC_RELAXED)) {
        w->bt_nframes =
            hk__monitor_can_unwind(w, uctx) ? backtrace(w->bt_frames, HK__BT_FRAMES) : 0;
        __atomic_store_n(&w->bt_done, req, __ATOMIC_RELEASE);
    }
    errno = saved;
}

static void hk__monitor_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = hk__monitor_on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(hk__monitor_signal(), &sa, NULL) < 0)
        return; /* reports go without frames; a signal must not meet the default action */
    void *warm[2];
    backtrace(warm, 2);
    hk__monitor_sig_ok = 1;
}

/*
 * Asks w for a backtrace of the slice just named (running on [lo, lo + size))
 * and waits for it; returns the number of frames copied to out, 0 when the
 * worker switched away, did not answer in time or cannot be asked.
 */
static int hk__monitor_frames(hk__monitor_t *m, hk__worker_t *w, uint64_t slice, const void *lo,
                              size_t size, void **out)
{
    unsigned req = __atomic_load_n(&w->bt_req, __ATOMIC_RELAXED); /* written here only */
    if (!m->frames_ok || __atomic_load_n(&w->bt_done, __ATOMIC_ACQUIRE) != req)
        return 0; /* the last request is unanswered: its handler may still read it */
    w->bt_slice = slice;
    w->bt_lo = lo;
    w->bt_size = size;
    __atomic_store_n(&w->bt_req, ++req, __ATOMIC_RELEASE);
    if (pthread_kill(w->thread, hk__monitor_signal()) != 0)
        return 0;
    uint64_t until = hk_time_now() + HK__MONITOR_FRAMES_WAIT_NS;
    while (__atomic_load_n(&w->bt_done, __ATOMIC_ACQUIRE) != req) {
        if (hk_time_now() >= until)
            return 0;
        struct timespec ts = {0, 50 * 1000};
        nanosleep(&ts, NULL);
    }
    int n = w->bt_nframes, first = 0;
    for (int i = 0; i < n; i++) {
        if ((uintptr_t)w->bt_frames[i] == w->bt_pc) {
            first = i;
            break;
        }
    }
    memcpy(out, w->bt_frames + first, (size_t)(n - first) * sizeof *out);
    return n - first;
}

static void hk__monitor_fence(hk_co_runtime_t *rt)
{
    __atomic_fetch_add(&rt->mon_fence, 1, __ATOMIC_SEQ_CST);
}

/*
 * The membarrier commands, from the kernel's ABI (linux/membarrier.h has them
 * as enum constants only since 4.14, which the preprocessor cannot test): a
 * build against older headers still compiles, and the kernel it runs on
 * answers the query.
 */
#define HK__MB_QUERY 0
#define HK__MB_PRIVATE_EXPEDITED (1 << 3)
#define HK__MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)

void hk__monitor_prepare(hk_co_runtime_t *rt)
{
    rt->mon_membarrier = 0;
#if !defined(HK_CO_TSAN) && defined(SYS_membarrier)
    if (!rt->stall_ns)
        return;
    long cmds = syscall(SYS_membarrier, HK__MB_QUERY, 0, 0);
    if (cmds > 0 && (cmds & HK__MB_PRIVATE_EXPEDITED) &&
        syscall(SYS_membarrier, HK__MB_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
        rt->mon_membarrier = 1;
#endif
}

/* The monitor's half of the pairing with hk__monitor_exit; 0, or -1 when it cannot order. */
static int hk__monitor_read_fence(hk_co_runtime_t *rt)
{
    hk__monitor_fence(rt);
#if defined(SYS_membarrier)
    if (rt->mon_membarrier)
        return syscall(SYS_membarrier, HK__MB_PRIVATE_EXPEDITED, 0, 0) == 0 ? 0 : -1;
#endif
    return 0;
}

static uint64_t hk__monitor_cpu(const hk__watch_t *wt)
{
    struct timespec ts;
    if (!wt->has_cpu || clock_gettime(wt->cpu, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void hk__monitor_default_report(hk_loop_t *loop, const hk_stall_info_t *info, void *arg)
{
    (void)loop;
    (void)arg;
    char line[256];
    int len = snprintf(
        line, sizeof line,
        "hark: coroutine '%s' has held its worker for %llu ms (cpu %llu ms, %llu "
        "more not reported)\n",
        info->symbol ? info->symbol : "?", (unsigned long long)(info->duration_ns / 1000000),
        (unsigned long long)(info->cpu_ns / 1000000), (unsigned long long)info->suppressed);
    if (len > 0 && write(2, line, (size_t)len) < 0)
        return; /* nowhere to report that stderr failed */
    if (info->nframes > 0)
        backtrace_symbols_fd((void *const *)info->frames, info->nframes, 2);
}

/*
 * Reports a stalled slice; 0 when the rate limit holds it back. Why it is
 * tried again then, on every tick until it ends or the second has passed: a
 * stall that begins just after another report (a worker the OS descheduled
 * for a moment, say) would otherwise never be named, however long it runs
 * (a likely cause of a test_co_stall failure seen once on a loaded machine).
 * A stall that ends while held back is counted in the next report's
 * suppressed.
 */
static int hk__monitor_report(hk__monitor_t *m, hk__worker_t *w, hk__watch_t *wt, uint64_t now)
{
    hk_co_runtime_t *rt = m->rt;
    if (!wt->counted) {
        wt->counted = 1;
        hk__stat_add(&rt->stats.stalls, 1);
    }
    if (m->last_report && now - m->last_report < HK__MONITOR_REPORT_INTERVAL_NS)
        return 0;
    char name[sizeof((hk_co_t *)0)->name];
    const void *fn = NULL, *lo = NULL;
    size_t size = 0;
    int found = 0;
    __atomic_store_n(&rt->mon_reading, 1, __ATOMIC_RELAXED);
    int ordered = hk__monitor_read_fence(rt) == 0;
    hk_co_t *co = __atomic_load_n(&w->current, __ATOMIC_ACQUIRE);
    if (ordered && co && __atomic_load_n(&w->slices, __ATOMIC_RELAXED) == wt->slices) {
        hk__co_name_into(co, name);
        fn = (const void *)(uintptr_t)co->fn;
        lo = co->stack.lo;
        size = co->stack.size;
        found = 1;
    }
    __atomic_store_n(&rt->mon_reading, 0, __ATOMIC_RELEASE);
    if (!found)
        return 1; /* it switched away meanwhile: counted, nothing left to name */
    void *frames[HK__BT_FRAMES];
    int nframes = hk__monitor_frames(m, w, wt->slices, lo, size, frames);
    hk_stall_info_t info = {
        .duration_ns = now - wt->since,
        .cpu_ns = hk__monitor_cpu(wt) - wt->cpu_since,
        .threshold_ns = rt->stall_ns,
        .callback = fn,
        .symbol = name,
        .frames = nframes > 0 ? frames : NULL,
        .nframes = nframes,
        .suppressed = m->suppressed,
    };
    m->last_report = now;
    m->suppressed = 0;
    hk_stall_cb cb = rt->stall_cb ? rt->stall_cb : hk__monitor_default_report;
    cb(NULL, &info, rt->stall_arg);
    return 1;
}

/* Samples every worker once; returns whether any of them ran a coroutine. */
static int hk__monitor_sample(hk__monitor_t *m, uint64_t now)
{
    hk_co_runtime_t *rt = m->rt;
    int busy = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        hk__worker_t *w = &rt->workers[i];
        hk__watch_t *wt = &m->watch[i];
        uint64_t s = __atomic_load_n(&w->slices, __ATOMIC_RELAXED);
        int running = __atomic_load_n(&w->current, __ATOMIC_RELAXED) != NULL;
        if (s != wt->slices || !running || !wt->running) {
            /* Seen running at the last sample: it ran something in this tick. */
            busy |= s != wt->slices || running || wt->running;
            if (wt->counted && !wt->done)
                m->suppressed++; /* a stall that ended while the rate limit held it */
            wt->slices = s;
            wt->running = running;
            wt->since = now;
            wt->cpu_since = running ? hk__monitor_cpu(wt) : 0;
            wt->counted = 0;
            wt->done = 0;
            continue;
        }
        busy = 1;
        if (!wt->done && now - wt->since >= rt->stall_ns)
            wt->done = hk__monitor_report(m, w, wt, now);
    }
    return busy;
}

/* No worker ran anything for a tick: sleep until one does (unless it just did). */
static void hk__monitor_sleep(hk__monitor_t *m)
{
    hk_co_runtime_t *rt = m->rt;
    __atomic_store_n(&rt->mon_sleeping, 1, __ATOMIC_SEQ_CST);
    hk__monitor_fence(rt);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        hk__worker_t *w = &rt->workers[i];
        if (__atomic_load_n(&w->slices, __ATOMIC_SEQ_CST) != m->watch[i].slices ||
            __atomic_load_n(&w->current, __ATOMIC_SEQ_CST) != NULL) {
            __atomic_store_n(&rt->mon_sleeping, 0, __ATOMIC_SEQ_CST);
            return;
        }
    }
    while (__atomic_load_n(&rt->mon_sleeping, __ATOMIC_SEQ_CST) && !rt->mon_stop)
        pthread_cond_wait(&rt->mon_cond, &rt->mon_lock);
}

static void *hk__monitor_main(void *arg)
{
    hk__monitor_t *m = arg;
    hk_co_runtime_t *rt = m->rt;
    sigset_t set;
    sigfillset(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    uint64_t tick = rt->stall_ns / 4;
    pthread_mutex_lock(&rt->mon_lock);
    while (!rt->mon_stop) {
        pthread_mutex_unlock(&rt->mon_lock);
        int busy = hk__monitor_sample(m, hk_time_now());
        pthread_mutex_lock(&rt->mon_lock);
        if (rt->mon_stop)
            break;
        if (!busy) {
            hk__monitor_sleep(m);
            continue;
        }
        uint64_t until = hk_time_now() + tick;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        while (!rt->mon_stop && hk_time_now() < until)
            pthread_cond_timedwait(&rt->mon_cond, &rt->mon_lock, &ts);
    }
    pthread_mutex_unlock(&rt->mon_lock);
    free(m->watch);
    free(m);
    return NULL;
}

int hk__monitor_start(hk_co_runtime_t *rt)
{
    if (!rt->stall_ns)
        return 0;
    hk__monitor_t *m = calloc(1, sizeof *m);
    hk__watch_t *watch = calloc(rt->nworkers, sizeof *watch);
    if (!m || !watch) {
        free(m);
        free(watch);
        return -ENOMEM;
    }
    m->rt = rt;
    m->watch = watch;
    pthread_once(&hk__monitor_sig_once, hk__monitor_install);
    m->frames_ok = hk__monitor_sig_ok;
    for (unsigned i = 0; i < rt->nworkers; i++)
        watch[i].has_cpu = pthread_getcpuclockid(rt->workers[i].thread, &watch[i].cpu) == 0;
    if (pthread_create(&rt->mon_thread, NULL, hk__monitor_main, m) != 0) {
        free(watch);
        free(m);
        return -EAGAIN;
    }
    rt->mon_started = 1;
    return 0;
}

void hk__monitor_stop(hk_co_runtime_t *rt)
{
    if (rt->mon_started) {
        pthread_mutex_lock(&rt->mon_lock);
        rt->mon_stop = 1;
        pthread_cond_signal(&rt->mon_cond);
        pthread_mutex_unlock(&rt->mon_lock);
        pthread_join(rt->mon_thread, NULL);
        rt->mon_started = 0;
    }
}

void hk__monitor_busy(hk_co_runtime_t *rt)
{
    if (!rt->stall_ns)
        return;
    hk__monitor_fence(rt);
    if (!__atomic_load_n(&rt->mon_sleeping, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&rt->mon_lock);
    __atomic_store_n(&rt->mon_sleeping, 0, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&rt->mon_cond);
    pthread_mutex_unlock(&rt->mon_lock);
}

void hk__monitor_exit_wait(hk_co_runtime_t *rt)
{
    if (rt->mon_membarrier)
        __asm__ volatile("" ::: "memory"); /* the monitor's membarrier orders the rest */
    else
        hk__monitor_fence(rt);
    while (__atomic_load_n(&rt->mon_reading, __ATOMIC_ACQUIRE))
        sched_yield();
}
