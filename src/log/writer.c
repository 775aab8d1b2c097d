/*
 * The writer thread: drains every ring into one output buffer and writes it
 * to the sink without ever blocking.
 *
 * Why the sink must be non-blocking: a pipe nobody reads (a stopped pager, a
 * dead log shipper) fills after 64 KiB and a blocking write then waits
 * forever; the writer would stop draining, which is fine for the callers
 * (they drop), but exit would hang joining it. O_NONBLOCK set on a dup of
 * stderr would change stderr for the whole process (it is one open file
 * description), so pipes, fifos and ttys are reopened through
 * /proc/self/fd/N, which gives a private description we can make
 * non-blocking; sockets use send(MSG_DONTWAIT); regular files cannot be made
 * non-blocking and do not need it (they do not fill up).
 *
 * The loop: take a flush request number, apply a pending reopen, move
 * records from the rings into the buffer (round robin, a budget per ring, only
 * while the buffer has room for the longest line), write what the sink
 * accepts, then sleep: on the sink and the eventfd when the sink is full, on a
 * short timer while lines keep coming, and on the eventfd alone (100 ms at
 * most) once idle. When told to stop it keeps going until everything is out
 * or the deadline passes, then counts what is left as lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log/internal.h"

#define OUT_CAP (256u * 1024)
#define RING_BUDGET (64u * 1024)
#define IDLE_PASSES 64
#define DEEP_SLEEP_NS (UINT64_C(100) * 1000 * 1000)
#define STALL_RETRY_NS (UINT64_C(500) * 1000 * 1000)

uint64_t hk__log_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int hk__log_sink_open_path(const char *path, int *kind)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *kind = S_ISREG(st.st_mode) ? HK__SINK_FILE : HK__SINK_PIPE;
    return fd;
}

int hk__log_sink_from_fd(int fd, int *kind)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return -EBADF;
    int nfd;
    if (S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode)) {
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        *kind = S_ISREG(st.st_mode) ? HK__SINK_FILE : HK__SINK_SOCK;
        return nfd < 0 ? -errno : nfd;
    }
    *kind = HK__SINK_PIPE;
    char p[40];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    nfd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (nfd >= 0)
        return nfd;
    /* No /proc, or a fifo without reader: share the description (documented in docs/log.md). */
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -errno;
    int fl = fcntl(nfd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(nfd, F_SETFL, fl | O_NONBLOCK);
    return nfd;
}

typedef struct writer {
    char *out;
    size_t off, len; /* pending bytes: out[off, len) */
    int fd;
    int kind;
    uint64_t reopen_seen;
    uint64_t flush_done;
} writer_t;

static uint64_t count_lines(const char *s, size_t n)
{
    uint64_t c = 0;
    const char *end = s + n;
    while ((s = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        c++;
        s++;
    }
    return c;
}

static void discard_out(writer_t *w)
{
    uint64_t n = count_lines(w->out + w->off, w->len - w->off);
    atomic_fetch_add_explicit(&hk__log.lost, n, memory_order_relaxed);
    w->off = w->len = 0;
}

/* Writes what the sink takes now; returns the bytes written. */
static size_t flush_out(writer_t *w)
{
    size_t total = 0;
    while (w->off < w->len) {
        const char *p = w->out + w->off;
        size_t n = w->len - w->off;
        ssize_t r = w->kind == HK__SINK_SOCK ? send(w->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                                             : write(w->fd, p, n);
        if (r > 0) {
            atomic_fetch_add_explicit(&hk__log.written, count_lines(p, (size_t)r),
                                      memory_order_relaxed);
            atomic_fetch_add_explicit(&hk__log.bytes, (uint64_t)r, memory_order_relaxed);
            w->off += (size_t)r;
            total += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EPIPE, EIO, ENOSPC...: these lines are lost; later ones try again. */
        atomic_fetch_add_explicit(&hk__log.write_errors, 1, memory_order_relaxed);
        discard_out(w);
    }
    if (w->off == w->len)
        w->off = w->len = 0;
    return total;
}

static int has_room(const writer_t *w)
{
    return OUT_CAP - w->len >= HK__LINE_MAX;
}

static hk__log_ring_t *ring_list(void)
{
    pthread_mutex_lock(&hk__log.lock);
    hk__log_ring_t *r = hk__log.rings;
    pthread_mutex_unlock(&hk__log.lock);
    return r;
}

/* Moves records into the buffer; returns how many. Frees dead rings once drained. */
static size_t drain(writer_t *w)
{
    if (w->off > 0) {
        memmove(w->out, w->out + w->off, w->len - w->off);
        w->len -= w->off;
        w->off = 0;
    }
    size_t moved = 0, before;
    int reap = 0;
    do {
        before = moved;
        for (hk__log_ring_t *r = ring_list(); r && has_room(w); r = r->next) {
            uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
            uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            uint64_t start = head;
            while (head != tail && has_room(w) && head - start < RING_BUDGET) {
                const hk__log_rec_t *rec =
                    (const hk__log_rec_t *)(r->buf + ((uint32_t)head & r->mask));
                if (rec->kind != HK__REC_LINE) {
                    head += rec->size;
                    continue;
                }
                w->len += hk__log_render(w->out + w->len, rec, hk__log.format);
                head += hk__align8(rec->size);
                moved++;
            }
            atomic_store_explicit(&r->head, head, memory_order_release);
            uint64_t d = atomic_load_explicit(&r->dropped, memory_order_relaxed);
            if (d > r->drops_reported && has_room(w)) {
                char msg[48], tid[16];
                snprintf(msg, sizeof msg, "%llu messages dropped",
                         (unsigned long long)(d - r->drops_reported));
                snprintf(tid, sizeof tid, "%d", (int)r->tid);
                w->len +=
                    hk__log_render_note(w->out + w->len, hk__log.format, HK_LOG_WARN, real_ns(),
                                        msg, "dropped", d - r->drops_reported, "tid", tid);
                r->drops_reported = d;
                atomic_fetch_add_explicit(&hk__log.drop_reports, 1, memory_order_relaxed);
                moved++;
            }
            if (atomic_load_explicit(&r->dead, memory_order_acquire) &&
                atomic_load_explicit(&r->tail, memory_order_acquire) == head &&
                d == r->drops_reported)
                reap = 1;
        }
    } while (moved != before && has_room(w));
    if (reap) {
        pthread_mutex_lock(&hk__log.lock);
        hk__log_ring_reap_dead(1);
        pthread_mutex_unlock(&hk__log.lock);
    }
    return moved;
}

static int rings_empty(void)
{
    for (hk__log_ring_t *r = ring_list(); r; r = r->next) {
        if (atomic_load_explicit(&r->tail, memory_order_acquire) !=
            atomic_load_explicit(&r->head, memory_order_relaxed))
            return 0;
        if (atomic_load_explicit(&r->dropped, memory_order_relaxed) != r->drops_reported)
            return 0;
    }
    return 1;
}

static void do_reopen(writer_t *w)
{
    pthread_mutex_lock(&hk__log.ctl_lock);
    char *path = hk__log.reopen_path;
    hk__log.reopen_path = NULL;
    w->reopen_seen = atomic_load_explicit(&hk__log.reopen_seq, memory_order_relaxed);
    pthread_mutex_unlock(&hk__log.ctl_lock);
    if (!path)
        return;
    flush_out(w); /* what the old sink takes now; the rest goes to the new one */
    int kind = HK__SINK_FILE;
    int fd = hk__log_sink_open_path(path, &kind);
    if (fd < 0) {
        atomic_fetch_add_explicit(&hk__log.reopen_errors, 1, memory_order_relaxed);
        if (has_room(w))
            w->len +=
                hk__log_render_note(w->out + w->len, hk__log.format, HK_LOG_ERROR, real_ns(),
                                    "log reopen failed", "errno", (uint64_t)-fd, "path", path);
        free(path);
        return;
    }
    close(w->fd);
    w->fd = fd;
    w->kind = kind;
    pthread_mutex_lock(&hk__log.ctl_lock);
    free(hk__log.path);
    hk__log.path = path;
    hk__log.sink_fd = fd;
    pthread_mutex_unlock(&hk__log.ctl_lock);
    atomic_fetch_add_explicit(&hk__log.reopens, 1, memory_order_relaxed);
}

static void note_flushed(writer_t *w, uint64_t req)
{
    if (req <= w->flush_done)
        return;
    w->flush_done = req;
    pthread_mutex_lock(&hk__log.ctl_lock);
    hk__log.flush_done = req;
    pthread_cond_broadcast(&hk__log.flushed);
    pthread_mutex_unlock(&hk__log.ctl_lock);
}

static void discard_all(writer_t *w)
{
    discard_out(w);
    for (hk__log_ring_t *r = ring_list(); r; r = r->next)
        atomic_fetch_add_explicit(&hk__log.lost, hk__log_ring_discard(r), memory_order_relaxed);
}

static void sleep_ns(writer_t *w, uint64_t ns, int want_out)
{
    struct pollfd pfd[2] = {{.fd = hk__log.eventfd, .events = POLLIN},
                            {.fd = w->fd, .events = POLLOUT}};
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    int r = ppoll(pfd, want_out ? 2 : 1, &ts, NULL);
    if (r > 0 && (pfd[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t n = read(hk__log.eventfd, &v, sizeof v);
        (void)n;
    }
}

void *hk__log_writer_main(void *arg)
{
    writer_t w = {.out = arg, .fd = hk__log.sink_fd, .kind = hk__log.sink_kind};
    int idle = 0;
    for (;;) {
        uint64_t req = atomic_load_explicit(&hk__log.flush_req, memory_order_acquire);
        if (atomic_load_explicit(&hk__log.reopen_seq, memory_order_acquire) != w.reopen_seen)
            do_reopen(&w);
        int stop = atomic_load_explicit(&hk__log.stop, memory_order_acquire);
        size_t moved = drain(&w);
        size_t wrote = flush_out(&w);
        int empty = w.len == 0 && rings_empty();
        if (empty)
            note_flushed(&w, req);
        uint64_t now = stop ? hk__log_mono_ns() : 0;
        uint64_t deadline = atomic_load_explicit(&hk__log.stop_deadline, memory_order_relaxed);
        if (stop && empty) {
            hk__log.stop_result = 0;
            break;
        }
        if (stop && now >= deadline) {
            discard_all(&w);
            hk__log.stop_result = -ETIMEDOUT;
            break;
        }
        if (moved || wrote) {
            idle = 0;
            continue;
        }
        uint64_t ns;
        int want_out = w.len > 0;
        if (want_out) {
            /* The sink is full: callers need not wake us, we wait for it. */
            atomic_store_explicit(&hk__log.wake_pending, 1, memory_order_relaxed);
            ns = STALL_RETRY_NS;
        } else if (++idle < IDLE_PASSES) {
            atomic_store_explicit(&hk__log.wake_pending, 0, memory_order_relaxed);
            ns = hk__log.flush_interval_ns;
        } else {
            atomic_store_explicit(&hk__log.wake_pending, 0, memory_order_relaxed);
            atomic_store_explicit(&hk__log.writer_sleeping, 1, memory_order_seq_cst);
            if (!rings_empty()) {
                atomic_store_explicit(&hk__log.writer_sleeping, 0, memory_order_relaxed);
                continue;
            }
            ns = DEEP_SLEEP_NS;
        }
        if (stop && deadline - now < ns)
            ns = deadline - now;
        sleep_ns(&w, ns, want_out);
        atomic_store_explicit(&hk__log.writer_sleeping, 0, memory_order_relaxed);
    }
    hk__log.sink_fd = w.fd;
    return NULL;
}
