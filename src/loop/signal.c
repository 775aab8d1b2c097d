/*
 * Signals through signalfd, for any number of loops in one process.
 *
 * What the kernel does: a process-directed signal is queued once for the
 * whole process; any signalfd whose mask holds it may read it, and the first
 * read takes it. With several loops watching SIGHUP, one would get it and the
 * rest nothing, depending on scheduling. A signal must also be blocked in
 * every thread, or the kernel runs its default action in a thread that did
 * not block it.
 *
 * What we do: each loop has one signalfd for the signals it watches. A
 * process-wide registry (the only global state hark keeps, guarded by a
 * mutex; signals are process state) lists the loops that watch signals. The
 * loop that reads a signal runs its own watchers and forwards the signal to
 * every other loop that watches it, through a bit set and their async
 * wake-up. So every watching loop sees every delivery, and a loop that does
 * not watch a signal never sees it.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "loop/stall.h"

#define HK__NSIG 65

static pthread_mutex_t hk__sig_lock = PTHREAD_MUTEX_INITIALIZER;
static hk_loop_t *hk__sig_loops;

static void hk__sig_registry_add(hk_loop_t *loop)
{
    if (loop->sig_registered)
        return;
    loop->sig_next = hk__sig_loops;
    hk__sig_loops = loop;
    loop->sig_registered = 1;
}

static void hk__sig_registry_remove(hk_loop_t *loop)
{
    if (!loop->sig_registered)
        return;
    for (hk_loop_t **p = &hk__sig_loops; *p; p = &(*p)->sig_next) {
        if (*p == loop) {
            *p = loop->sig_next;
            break;
        }
    }
    loop->sig_registered = 0;
}

static bool hk__sig_watched_elsewhere(const hk_loop_t *loop, int signum)
{
    for (hk_loop_t *l = hk__sig_loops; l; l = l->sig_next) {
        if (l != loop && l->sigcount[signum] > 0)
            return true;
    }
    return false;
}

/* Points the loop's signalfd at its current mask, creating it on first use. */
static int hk__sigfd_update(hk_loop_t *loop)
{
    int fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (loop->sigfd < 0) {
        int r = hk__epoll_add_internal(loop, fd);
        if (r < 0) {
            close(fd);
            return r;
        }
        loop->sigfd = fd;
    }
    return 0;
}

int hk_signal_init(hk_loop_t *loop, hk_signal_t *sig)
{
    if (!loop || !sig)
        return -EINVAL;
    hk__handle_init(loop, &sig->base, HK_HANDLE_SIGNAL);
    sig->signum = 0;
    sig->_cb = NULL;
    hk__list_init(&sig->_link);
    return 0;
}

int hk_signal_start(hk_signal_t *sig, hk_signal_cb cb, int signum)
{
    if (!cb || signum <= 0 || signum >= HK__NSIG || signum == SIGKILL || signum == SIGSTOP)
        return -EINVAL;
    if (sig->base._flags & HK__ACTIVE)
        return -EBUSY;
    if (sig->base._flags & (HK__CLOSING | HK__CLOSED))
        return -EINVAL;
    hk_loop_t *loop = sig->base.loop;
    int r = 0;
    pthread_mutex_lock(&hk__sig_lock);
    if (loop->sigcount[signum] == 0) {
        sigset_t one, old;
        sigemptyset(&one);
        sigaddset(&one, signum);
        r = -pthread_sigmask(SIG_BLOCK, &one, &old);
        if (r == 0) {
            sigaddset(&loop->sigmask, signum);
            r = hk__sigfd_update(loop);
            if (r < 0) {
                /* A failed start changes nothing: not even the thread's mask (EMFILE, ENOMEM). */
                sigdelset(&loop->sigmask, signum);
                if (!sigismember(&old, signum))
                    (void)pthread_sigmask(SIG_UNBLOCK, &one, NULL);
            }
        }
    }
    if (r == 0) {
        loop->sigcount[signum]++;
        hk__sig_registry_add(loop);
    }
    pthread_mutex_unlock(&hk__sig_lock);
    if (r < 0)
        return r;
    sig->signum = signum;
    sig->_cb = cb;
    hk__list_insert_tail(&loop->signals, &sig->_link);
    hk__handle_start(&sig->base);
    return 0;
}

int hk_signal_stop(hk_signal_t *sig)
{
    if (!(sig->base._flags & HK__ACTIVE))
        return -EALREADY;
    hk_loop_t *loop = sig->base.loop;
    int signum = sig->signum;
    hk__list_remove(&sig->_link);
    hk__handle_stop(&sig->base);
    pthread_mutex_lock(&hk__sig_lock);
    if (--loop->sigcount[signum] == 0) {
        sigdelset(&loop->sigmask, signum);
        (void)hk__sigfd_update(loop); /* only fails for lack of memory; harmless */
        if (!hk__sig_watched_elsewhere(loop, signum)) {
            /* Nobody watches it any more: give the default action back. */
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, signum);
            /*
             * But first take a delivery still pending (it came while watched
             * and no signalfd read it yet): unblocked, it would run the
             * default action at once, and SIGTERM would end the process. It
             * is dropped, as it would be had the watcher stopped a moment
             * after reading it.
             */
            const struct timespec zero = {0, 0};
            while (sigtimedwait(&one, NULL, &zero) == signum)
                ;
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        }
    }
    pthread_mutex_unlock(&hk__sig_lock);
    return 0;
}

static void hk__signal_dispatch(hk_loop_t *loop, int signum)
{
    struct hk__link tmp;
    hk__list_move(&loop->signals, &tmp);
    for (struct hk__link *l; (l = hk__list_rotate(&tmp, &loop->signals));) {
        hk_signal_t *s = HK_CONTAINER_OF(l, hk_signal_t, _link);
        if (s->signum != signum)
            continue;
        loop->stats.callbacks++;
        hk__stall_enter(loop, (const void *)s->_cb);
        s->_cb(s, signum);
        hk__stall_leave(loop);
    }
}

static void hk__signal_forward(hk_loop_t *loop, int signum)
{
    pthread_mutex_lock(&hk__sig_lock);
    for (hk_loop_t *l = hk__sig_loops; l; l = l->sig_next) {
        if (l == loop || l->sigcount[signum] == 0)
            continue;
        __atomic_fetch_or(&l->sig_forwarded, UINT64_C(1) << (signum - 1), __ATOMIC_SEQ_CST);
        hk__async_wakeup(l);
    }
    pthread_mutex_unlock(&hk__sig_lock);
}

void hk__signal_on_fd(hk_loop_t *loop)
{
    struct signalfd_siginfo info[16];
    for (;;) {
        ssize_t n = read(loop->sigfd, info, sizeof info);
        if (n <= 0)
            return; /* EAGAIN: drained */
        for (size_t i = 0; i < (size_t)n / sizeof info[0]; i++) {
            int signum = (int)info[i].ssi_signo;
            if (signum <= 0 || signum >= HK__NSIG)
                continue;
            hk__signal_forward(loop, signum);
            hk__signal_dispatch(loop, signum);
        }
    }
}

void hk__signal_process_forwarded(hk_loop_t *loop)
{
    uint64_t bits = __atomic_exchange_n(&loop->sig_forwarded, 0, __ATOMIC_SEQ_CST);
    while (bits) {
        int signum = __builtin_ctzll(bits) + 1;
        bits &= bits - 1;
        if (loop->sigcount[signum] > 0)
            hk__signal_dispatch(loop, signum);
    }
}

void hk__signal_loop_free(hk_loop_t *loop)
{
    pthread_mutex_lock(&hk__sig_lock);
    hk__sig_registry_remove(loop);
    pthread_mutex_unlock(&hk__sig_lock);
    if (loop->sigfd >= 0)
        close(loop->sigfd);
    loop->sigfd = -1;
}

/*
 * In a fork child only the calling thread exists, and the registry lock may
 * have been held by a thread that is gone: start both afresh with this loop.
 * The signalfd reads the child's own signals, so it is kept and re-added.
 */
int hk__signal_fork(hk_loop_t *loop)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    memcpy(&hk__sig_lock, &fresh, sizeof fresh);
    hk__sig_loops = NULL;
    loop->sig_registered = 0;
    if (loop->sigfd < 0)
        return 0;
    hk__sig_registry_add(loop);
    return hk__epoll_add_internal(loop, loop->sigfd);
}
