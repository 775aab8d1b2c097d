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
 * records from the rings into the buffers (round robin, each pass starting one
 * ring further, a budget per ring, only
 * while the buffer has room for the longest line), write what the sinks
 * accept, then sleep: on the sinks and the eventfd when a sink is full, on a
 * short timer while lines keep coming, and on the eventfd alone once idle
 * (10 s at most, 100 ms where membarrier is missing: fence_producers).
 * When told to stop it keeps going until everything is out or the deadline
 * passes, then counts what is left as lost.
 *
 * Flush: hk_log_flush waits for the lines logged before it, and on a busy
 * server the rings are never all empty at once (threads keep logging, full
 * rings keep dropping), so "everything is out" may never happen. Instead the
 * writer marks each ring's tail (and drop counts) when it takes a request;
 * once every marked ring's head has passed its mark and those drops are
 * reported, the lines are in the buffers, and it notes how many bytes each
 * buffer has taken in so far; once that many have left (written, or lost to
 * a sink error) the request is done. Lines moved past a mark in the same
 * pass are waited for too, which keeps the wait bounded. Rings made after the
 * mark are not waited for; rings reaped meanwhile were drained first. An
 * empty pass still completes every request taken before it, as before.
 *
 * Two channels, two sinks: each record names its channel; main lines are
 * rendered into the main buffer, access lines copied as they are into the
 * access buffer. A ring is read in order, so a record whose buffer is full
 * stops that ring until its sink takes bytes again, whichever channel the
 * records behind it belong to: one ring per thread keeps the thread's lines
 * ordered and the producer's path short, and the price is that a stalled
 * sink holds back the other channel too (callers drop; nobody blocks). The
 * access sink may be opened while the writer runs: the API publishes it
 * (access_ready) and the writer takes it on its next pass.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log/internal.h"

#define RING_BUDGET (64u * 1024)
#define IDLE_PASSES 64
/*
 * The idle sleep: 100 ms where the producers' wake-up can be missed (see
 * fence_producers) and while closing (the end of a call wakes nobody), 10 s
 * otherwise: lines, drops, thread exits (ring.c) and every request (flush,
 * reopen, close) wake the writer, so the bound covers only a missed wake-up.
 */
#define DEEP_SLEEP_NS (UINT64_C(100) * 1000 * 1000)
#define FENCED_SLEEP_NS (UINT64_C(10) * 1000 * 1000 * 1000)
#define STALL_RETRY_NS (UINT64_C(500) * 1000 * 1000)
/* How long a reopen waits for an old sink that takes nothing (its lines, a line's rest). */
#define REOPEN_WAIT_NS (UINT64_C(1000) * 1000 * 1000)

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

typedef struct sink {
    char *out;       /* NULL: no such sink (yet) */
    size_t off, len; /* pending bytes: out[off, len) */
    int fd;
    int kind;
    bool mid_line; /* the last byte written was not a line end (a short write) */
    bool torn;     /* a line was cut there by an error: end it before the next one */
    uint64_t gone; /* bytes ever taken out of out: written or lost (flushes wait on it) */
} sink_t;

/* Where the flush request being served is (see the top of this file). */
enum {
    FLUSH_IDLE = 0,  /* none taken */
    FLUSH_RINGS = 1, /* waiting for the heads of the marked rings */
    FLUSH_BYTES = 2, /* waiting for the buffered bytes before the marks */
};

typedef struct writer {
    sink_t s[HK__CHANS];
    uint64_t reopen_seen;
    uint64_t reopen_gen;      /* the marks of the request taken (see do_reopen) */
    char *pending[HK__CHANS]; /* reopens taken, not yet applied (see apply_reopens) */
    uint64_t pending_since;   /* CLOCK_MONOTONIC ns of the oldest pending one */
    uint64_t flush_done;
    int flush_phase;
    uint64_t flush_req;               /* the request served, while not FLUSH_IDLE */
    uint64_t flush_target[HK__CHANS]; /* FLUSH_BYTES: its lines are out at gone == target */
    uint64_t rr;                      /* passes so far: which ring goes first (round robin) */
} writer_t;

/*
 * The generation of the last flush mark. It outlives a writer: a ring keeps
 * its stamp across close and open, and a new writer must not mistake an old
 * stamp for its own. Only the writer thread touches it (writers run one after
 * the other, joined).
 */
static uint64_t flush_gen;

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

static void discard_out(writer_t *w, int ch)
{
    sink_t *s = &w->s[ch];
    if (!s->out)
        return;
    uint64_t n = count_lines(s->out + s->off, s->len - s->off);
    atomic_fetch_add_explicit(&hk__log.cs[ch].lost, n, memory_order_relaxed);
    s->gone += s->len - s->off;
    s->off = s->len = 0;
}

/* Writes what the sink of channel ch takes now; returns the bytes written. */
static size_t flush_out(writer_t *w, int ch)
{
    sink_t *s = &w->s[ch];
    hk__log_chan_stats_t *cs = &hk__log.cs[ch];
    size_t total = 0;
    /*
     * An error (ENOSPC, EIO) after part of a line was written left that part
     * in the file: a newline first, so that the next line starts on its own
     * and stays parsable (the cut line itself was counted in lost).
     */
    if (s->torn && s->off < s->len) {
        ssize_t r = s->kind == HK__SINK_SOCK ? send(s->fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL)
                                             : write(s->fd, "\n", 1);
        if (r != 1) {
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                atomic_fetch_add_explicit(&cs->write_errors, 1, memory_order_relaxed);
                discard_out(w, ch); /* still failing: lost, as below */
            }
            return 0;
        }
        s->torn = s->mid_line = false;
    }
    while (s->off < s->len) {
        const char *p = s->out + s->off;
        size_t n = s->len - s->off;
        ssize_t r = s->kind == HK__SINK_SOCK ? send(s->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                                             : write(s->fd, p, n);
        if (r > 0) {
            s->mid_line = p[r - 1] != '\n';
            atomic_fetch_add_explicit(&cs->written, count_lines(p, (size_t)r),
                                      memory_order_relaxed);
            atomic_fetch_add_explicit(&cs->bytes, (uint64_t)r, memory_order_relaxed);
            s->off += (size_t)r;
            s->gone += (uint64_t)r;
            total += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EPIPE, EIO, ENOSPC...: these lines are lost; later ones try again. */
        atomic_fetch_add_explicit(&cs->write_errors, 1, memory_order_relaxed);
        s->torn = s->mid_line; /* the rest of a line already begun is among them */
        discard_out(w, ch);
    }
    if (s->off == s->len)
        s->off = s->len = 0;
    return total;
}

static size_t flush_all(writer_t *w)
{
    size_t total = 0;
    for (int ch = 0; ch < HK__CHANS; ch++)
        if (w->s[ch].out)
            total += flush_out(w, ch);
    return total;
}

static int has_room(const sink_t *s)
{
    return HK__OUT_CAP - s->len >= HK__LINE_MAX;
}

/* Whether some buffer can take a line: draining another pass may move something. */
static int any_room(const writer_t *w)
{
    for (int ch = 0; ch < HK__CHANS; ch++)
        if (w->s[ch].out && has_room(&w->s[ch]))
            return 1;
    return 0;
}

/* Takes the access sink once the API has published it; returns whether there is one. */
static int adopt_access(writer_t *w)
{
    sink_t *s = &w->s[HK__CHAN_ACCESS];
    if (!s->out && atomic_load_explicit(&hk__log.access_ready, memory_order_acquire)) {
        s->fd = hk__log.sink_fd[HK__CHAN_ACCESS];
        s->kind = hk__log.sink_kind[HK__CHAN_ACCESS];
        s->out = hk__log.out_buf[HK__CHAN_ACCESS];
    }
    return s->out != NULL;
}

/* A "N messages dropped" notice in the main sink for each channel with unreported drops. */
static size_t report_drops(writer_t *w, hk__log_ring_t *r)
{
    static const char *const what[HK__CHANS] = {"messages", "access lines"};
    sink_t *m = &w->s[HK__CHAN_MAIN];
    size_t n = 0;
    for (int ch = 0; ch < HK__CHANS; ch++) {
        uint64_t d = atomic_load_explicit(&r->dropped[ch], memory_order_relaxed);
        if (d <= r->drops_reported[ch] || !has_room(m))
            continue;
        char msg[48], tid[16];
        snprintf(msg, sizeof msg, "%llu %s dropped",
                 (unsigned long long)(d - r->drops_reported[ch]), what[ch]);
        snprintf(tid, sizeof tid, "%d", (int)r->tid);
        m->len += hk__log_render_note(m->out + m->len, hk__log.format, HK_LOG_WARN, real_ns(), msg,
                                      "dropped", d - r->drops_reported[ch], "tid", tid);
        r->drops_reported[ch] = d;
        atomic_fetch_add_explicit(&hk__log.cs[ch].drop_reports, 1, memory_order_relaxed);
        n++;
    }
    return n;
}

/* Moves one line record into its sink's buffer; 0 when that buffer is full (try later). */
static int take(writer_t *w, const hk__log_rec_t *rec)
{
    int ch = rec->chan == HK__CHAN_ACCESS ? HK__CHAN_ACCESS : HK__CHAN_MAIN;
    if (ch == HK__CHAN_ACCESS && !adopt_access(w)) {
        /* Queued just before a close, and the logger reopened without an access sink. */
        atomic_fetch_add_explicit(&hk__log.cs[ch].lost, 1, memory_order_relaxed);
        return 1;
    }
    sink_t *s = &w->s[ch];
    if (!has_room(s))
        return 0;
    if (ch == HK__CHAN_MAIN) {
        s->len += hk__log_render(s->out + s->len, rec, hk__log.format);
    } else {
        memcpy(s->out + s->len, (const char *)rec + HK__REC_HDR, rec->size - HK__REC_HDR);
        s->len += rec->size - HK__REC_HDR;
    }
    return 1;
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
    for (int ch = 0; ch < HK__CHANS; ch++) {
        sink_t *s = &w->s[ch];
        if (s->off > 0) {
            memmove(s->out, s->out + s->off, s->len - s->off);
            s->len -= s->off;
            s->off = 0;
        }
    }
    size_t moved = 0, before;
    int reap = 0;
    /*
     * Each pass starts one ring further down the list. Starting at the head
     * (the newest ring) every time gave that ring all the room a slow sink
     * frees, pass after pass, while older rings filled and dropped.
     */
    hk__log_ring_t *list = ring_list(), *first = list;
    size_t n = 0;
    for (hk__log_ring_t *r = list; r; r = r->next)
        n++;
    if (n > 1)
        for (uint64_t k = w->rr % n; k > 0; k--)
            first = first->next;
    w->rr++;
    do {
        before = moved;
        hk__log_ring_t *r = first;
        for (size_t i = 0; i < n && any_room(w); i++, r = r->next ? r->next : list) {
            uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
            uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            uint64_t start = head;
            /*
             * A ring with drops to report stops a main line early, so that
             * the notice always fits behind its lines: a busy ring fills
             * every byte a slow main sink frees, and the notice (and a flush
             * waiting for it) would otherwise wait until the thread stops
             * logging. Access lines do not take main room: they go on.
             */
            const sink_t *m = &w->s[HK__CHAN_MAIN];
            bool notice = !hk__log_ring_reported(r);
            /*
             * While a reopen waits, a ring gives only the lines logged before
             * the request (they go to the old sink); a ring made after the
             * mark holds none of those.
             */
            if (w->pending[HK__CHAN_MAIN] || w->pending[HK__CHAN_ACCESS]) {
                uint64_t limit = r->reopen_gen == w->reopen_gen ? r->reopen_mark : head;
                if (limit <= head)
                    tail = head;
                else if (limit < tail)
                    tail = limit;
            }
            while (head != tail && head - start < RING_BUDGET) {
                const hk__log_rec_t *rec =
                    (const hk__log_rec_t *)(r->buf + ((uint32_t)head & r->mask));
                if (rec->kind != HK__REC_LINE) {
                    head += rec->size;
                    continue;
                }
                if (notice && rec->chan != HK__CHAN_ACCESS &&
                    HK__OUT_CAP - m->len < 2 * HK__LINE_MAX)
                    break;
                if (!take(w, rec))
                    break;
                head += hk__align8(rec->size);
                moved++;
            }
            atomic_store_explicit(&r->head, head, memory_order_release);
            moved += report_drops(w, r);
            if (atomic_load_explicit(&r->dead, memory_order_acquire) &&
                atomic_load_explicit(&r->tail, memory_order_acquire) == head &&
                hk__log_ring_reported(r))
                reap = 1;
        }
    } while (moved != before && any_room(w));
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
        if (!hk__log_ring_reported(r))
            return 0;
    }
    return 1;
}

/*
 * Whether no call is between its open check and its commit (seq_cst: see
 * hk__log_call_begin). Read before the tails, so a line committed by a call
 * seen finished here is seen in its ring.
 */
static int no_call_running(void)
{
    for (hk__log_ring_t *r = ring_list(); r; r = r->next)
        if (atomic_load_explicit(&r->busy, memory_order_seq_cst))
            return 0;
    return 1;
}

static int outs_empty(const writer_t *w)
{
    for (int ch = 0; ch < HK__CHANS; ch++)
        if (w->s[ch].len)
            return 0;
    return 1;
}

/* Swaps the sink of channel ch for path (taken); a failure is said in the main sink. */
static void reopen_one(writer_t *w, int ch, char *path)
{
    static const char *const what[HK__CHANS] = {"log reopen failed", "access log reopen failed"};
    sink_t *s = &w->s[ch];
    int kind = HK__SINK_FILE;
    int fd = hk__log_sink_open_path(path, &kind);
    if (fd < 0) {
        sink_t *m = &w->s[HK__CHAN_MAIN];
        atomic_fetch_add_explicit(&hk__log.reopen_errors, 1, memory_order_relaxed);
        if (has_room(m))
            m->len += hk__log_render_note(m->out + m->len, hk__log.format, HK_LOG_ERROR, real_ns(),
                                          what[ch], "errno", (uint64_t)-fd, "path", path);
        free(path);
        return;
    }
    close(s->fd);
    s->fd = fd;
    s->kind = kind;
    s->torn = s->mid_line = false;
    pthread_mutex_lock(&hk__log.ctl_lock);
    free(hk__log.path[ch]);
    hk__log.path[ch] = path;
    hk__log.sink_fd[ch] = fd;
    pthread_mutex_unlock(&hk__log.ctl_lock);
    atomic_fetch_add_explicit(&hk__log.cs[ch].reopens, 1, memory_order_relaxed);
}

static void do_reopen(writer_t *w)
{
    char *path[HK__CHANS];
    pthread_mutex_lock(&hk__log.ctl_lock);
    for (int ch = 0; ch < HK__CHANS; ch++) {
        path[ch] = hk__log.reopen_path[ch];
        hk__log.reopen_path[ch] = NULL;
    }
    w->reopen_seen = atomic_load_explicit(&hk__log.reopen_seq, memory_order_relaxed);
    /*
     * The marks the caller left (a newer request's replace older ones): the
     * lines logged before the request go to the old sink, the later ones to
     * the new. Copied here, under the caller's locks, for the writer alone.
     */
    w->reopen_gen = hk__log.reopen_gen;
    pthread_mutex_lock(&hk__log.lock);
    for (hk__log_ring_t *r = hk__log.rings; r; r = r->next) {
        r->reopen_gen = r->reopen_req_gen;
        r->reopen_mark = r->reopen_req_mark;
    }
    pthread_mutex_unlock(&hk__log.lock);
    pthread_mutex_unlock(&hk__log.ctl_lock);
    /* An access reopen is queued only once access_ready was set: the sink is there to take. */
    adopt_access(w);
    for (int ch = 0; ch < HK__CHANS; ch++) {
        if (!path[ch] || !w->s[ch].out) {
            free(path[ch]);
            continue;
        }
        if (!w->pending[HK__CHAN_MAIN] && !w->pending[HK__CHAN_ACCESS])
            w->pending_since = hk__log_mono_ns();
        free(w->pending[ch]); /* a newer request replaces it */
        w->pending[ch] = path[ch];
        flush_out(w, ch);
    }
}

/* Whether every ring has given the lines logged before the pending reopen. */
static int marks_passed(const writer_t *w)
{
    for (hk__log_ring_t *r = ring_list(); r; r = r->next)
        if (r->reopen_gen == w->reopen_gen &&
            atomic_load_explicit(&r->head, memory_order_relaxed) < r->reopen_mark)
            return 0;
    return 1;
}

static int reopen_pending(const writer_t *w)
{
    return w->pending[HK__CHAN_MAIN] || w->pending[HK__CHAN_ACCESS];
}

/*
 * Drops the rest of the line whose beginning the old sink took: the old
 * sink would not take it in time, and the new one must not get half a line.
 * The line is lost (it was never counted as written: its newline was not).
 */
static void drop_rest_of_line(writer_t *w, int ch)
{
    sink_t *s = &w->s[ch];
    const char *p = s->out + s->off;
    const char *nl = memchr(p, '\n', s->len - s->off);
    size_t n = nl ? (size_t)(nl + 1 - p) : s->len - s->off;
    s->off += n;
    s->gone += n;
    if (s->off == s->len)
        s->off = s->len = 0;
    s->mid_line = false;
    atomic_fetch_add_explicit(&hk__log.cs[ch].lost, 1, memory_order_relaxed);
}

/*
 * Applies the pending reopens whose old sink has everything logged before the
 * request: the rings are past their marks and the buffer is out, the last
 * line whole (a short write to a full pipe or fifo holds the swap until the
 * old sink took the rest: a line goes whole into one file). After
 * REOPEN_WAIT_NS of a stuck old sink the swap goes ahead: the rest of a line
 * begun there is dropped (counted as lost), the other lines go to the new
 * sink. Returns whether a sink was swapped.
 */
static int apply_reopens(writer_t *w, uint64_t now)
{
    int done = 0;
    int passed = marks_passed(w);
    for (int ch = 0; ch < HK__CHANS; ch++) {
        if (!w->pending[ch])
            continue;
        if (!passed || w->s[ch].len) {
            if (now - w->pending_since < REOPEN_WAIT_NS)
                continue;
            if (w->s[ch].mid_line)
                drop_rest_of_line(w, ch);
        }
        char *path = w->pending[ch];
        w->pending[ch] = NULL;
        reopen_one(w, ch, path);
        done = 1;
    }
    if (done && reopen_pending(w))
        w->pending_since = now; /* the other channel's wait starts over: it is rare */
    return done;
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

/* Takes flush request req, if none is being served: marks where its lines end in each ring. */
static void flush_mark(writer_t *w, uint64_t req)
{
    if (w->flush_phase != FLUSH_IDLE || req <= w->flush_done)
        return;
    flush_gen++;
    /*
     * req was loaded with acquire, so every line logged before its request is
     * below the tail read here, and every drop before it is in these counts.
     */
    for (hk__log_ring_t *r = ring_list(); r; r = r->next) {
        r->flush_gen = flush_gen;
        r->flush_mark = atomic_load_explicit(&r->tail, memory_order_acquire);
        for (int ch = 0; ch < HK__CHANS; ch++)
            r->flush_drops[ch] = atomic_load_explicit(&r->dropped[ch], memory_order_relaxed);
    }
    w->flush_req = req;
    w->flush_phase = FLUSH_RINGS;
}

/* Completes the request served once its lines, and its drop notices, have left the buffers. */
static void flush_progress(writer_t *w)
{
    if (w->flush_phase == FLUSH_RINGS) {
        for (hk__log_ring_t *r = ring_list(); r; r = r->next) {
            if (r->flush_gen != flush_gen)
                continue; /* made after the mark: holds no line of the request */
            if (atomic_load_explicit(&r->head, memory_order_relaxed) < r->flush_mark)
                return;
            for (int ch = 0; ch < HK__CHANS; ch++)
                if (r->drops_reported[ch] < r->flush_drops[ch])
                    return;
        }
        /* Every line of the request is in a buffer now, behind at most what is there. */
        for (int ch = 0; ch < HK__CHANS; ch++)
            w->flush_target[ch] = w->s[ch].gone + (w->s[ch].len - w->s[ch].off);
        w->flush_phase = FLUSH_BYTES;
    }
    if (w->flush_phase == FLUSH_BYTES) {
        for (int ch = 0; ch < HK__CHANS; ch++)
            if (w->s[ch].gone < w->flush_target[ch])
                return;
        w->flush_phase = FLUSH_IDLE;
        note_flushed(w, w->flush_req);
    }
}

static void discard_all(writer_t *w)
{
    for (int ch = 0; ch < HK__CHANS; ch++)
        discard_out(w, ch);
    for (hk__log_ring_t *r = ring_list(); r; r = r->next)
        hk__log_ring_discard(r);
}

/*
 * Why membarrier: before its idle sleep the writer stores writer_sleeping and
 * then looks at every ring's tail; a producer stores its tail and then loads
 * writer_sleeping (ring.c, ring_commit). Without a full fence on both sides
 * (Dekker's pattern) each may miss the other's store, the line waits for the
 * sleep's timeout, and a fence on the producer's side would cost every line.
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every other thread of
 * the process run a full barrier before it returns, as if each producer had
 * one between its two steps, at the cost of one call (and an IPI per CPU
 * running one of our threads) per idle sleep. Returns whether it ran.
 */
static bool fence_producers(bool registered)
{
    return registered && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* Sleeps on the eventfd, and on every sink with bytes it did not take. */
static void sleep_ns(writer_t *w, uint64_t ns)
{
    struct pollfd pfd[1 + HK__CHANS] = {{.fd = hk__log.eventfd, .events = POLLIN}};
    nfds_t nfds = 1;
    for (int ch = 0; ch < HK__CHANS; ch++)
        if (w->s[ch].len)
            pfd[nfds++] = (struct pollfd){.fd = w->s[ch].fd, .events = POLLOUT};
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    int r = ppoll(pfd, nfds, &ts, NULL);
    if (r > 0 && (pfd[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t n = read(hk__log.eventfd, &v, sizeof v);
        (void)n;
    }
}

void *hk__log_writer_main(void *arg)
{
    (void)arg;
    writer_t w = {.s[HK__CHAN_MAIN] = {.out = hk__log.out_buf[HK__CHAN_MAIN],
                                       .fd = hk__log.sink_fd[HK__CHAN_MAIN],
                                       .kind = hk__log.sink_kind[HK__CHAN_MAIN]}};
    int idle = 0;
    /* Once per process would do; registering again is harmless and cheap. */
    bool fenced = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    for (;;) {
        uint64_t req = atomic_load_explicit(&hk__log.flush_req, memory_order_acquire);
        adopt_access(&w);
        if (atomic_load_explicit(&hk__log.reopen_seq, memory_order_acquire) != w.reopen_seen)
            do_reopen(&w);
        if (reopen_pending(&w))
            (void)apply_reopens(&w, hk__log_mono_ns());
        int stop = atomic_load_explicit(&hk__log.stop, memory_order_acquire);
        /* After the reopens: a request taken here comes after any reopen queued before it. */
        if (!reopen_pending(&w))
            flush_mark(&w, req);
        size_t moved = drain(&w);
        size_t wrote = flush_all(&w);
        if (reopen_pending(&w) && wrote)
            w.pending_since = hk__log_mono_ns(); /* the old sink moves: keep waiting for it */
        if (reopen_pending(&w) && apply_reopens(&w, hk__log_mono_ns()))
            moved++; /* go round again: the new sink may take what the old one did not */
        /*
         * The close path keeps the "everything is out" test: its contract is
         * every line, and with the logger closed no new ones come, so that
         * moment does come. A call already past its open check may still
         * commit one: the writer waits for it (no_call_running, checked
         * before the rings), up to the deadline.
         */
        int quiet = !stop || no_call_running();
        int empty = outs_empty(&w) && rings_empty();
        if (empty && !reopen_pending(&w)) {
            note_flushed(&w, req); /* covers the request served too: it is not newer */
            w.flush_phase = FLUSH_IDLE;
        } else {
            flush_progress(&w);
        }
        uint64_t now = stop ? hk__log_mono_ns() : 0;
        uint64_t deadline = atomic_load_explicit(&hk__log.stop_deadline, memory_order_relaxed);
        if (stop && empty && quiet) {
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
        if (!outs_empty(&w)) {
            /* The sink is full: callers need not wake us, we wait for it. */
            atomic_store_explicit(&hk__log.wake_pending, 1, memory_order_relaxed);
            ns = STALL_RETRY_NS;
        } else if (++idle < IDLE_PASSES) {
            atomic_store_explicit(&hk__log.wake_pending, 0, memory_order_relaxed);
            ns = hk__log.flush_interval_ns;
        } else {
            atomic_store_explicit(&hk__log.wake_pending, 0, memory_order_relaxed);
            atomic_store_explicit(&hk__log.writer_sleeping, 1, memory_order_seq_cst);
            fenced = fence_producers(fenced);
            if (!rings_empty()) {
                atomic_store_explicit(&hk__log.writer_sleeping, 0, memory_order_relaxed);
                continue;
            }
            /*
             * A closing writer may be waiting for a call in flight
             * (no_call_running), and the end of a call wakes nobody: only
             * its commit does, and a call may end without one or be
             * descheduled between the two. So it keeps the short bound.
             */
            ns = fenced && !stop ? FENCED_SLEEP_NS : DEEP_SLEEP_NS;
        }
        if (stop && deadline - now < ns)
            ns = deadline - now;
        if (reopen_pending(&w)) {
            /* Wake in time to give up waiting for the old sink (apply_reopens). */
            uint64_t t = hk__log_mono_ns(), end = w.pending_since + REOPEN_WAIT_NS;
            uint64_t left = end > t ? end - t : 1000000;
            if (left < ns)
                ns = left;
        }
        sleep_ns(&w, ns);
        atomic_store_explicit(&hk__log.writer_sleeping, 0, memory_order_relaxed);
    }
    for (int ch = 0; ch < HK__CHANS; ch++)
        free(w.pending[ch]); /* closed before the old sink took the rest of its line */
    return NULL;
}
