/*
 * Per-thread rings: one single-producer, single-consumer byte ring per
 * logging thread, drained by the writer.
 *
 * Why per thread: a shared queue needs a lock or a contended atomic on every
 * call, and a lock held by the writer while the sink is stuck would stop
 * every caller. With one ring per thread the producer touches only its own
 * tail (a release store) and, rarely, the writer's head (an acquire load
 * when its cached copy says the ring looks full), and it never waits: a full
 * ring means the line is dropped and counted.
 *
 * Why no system call per line: the writer sleeps on a short timer
 * (flush_interval_ns) while lines keep coming, so producers need not wake
 * it. Only when it has been idle long enough to sleep without a timer
 * (writer_sleeping), or when a ring is more than half full, does a producer
 * write the eventfd, and then only if nobody else did since the writer last
 * read it (wake_pending), as hk_async_send does. The producer has no fence
 * between its tail store and its writer_sleeping load: the writer supplies
 * it with membarrier before it sleeps (writer.c, fence_producers). Where the
 * kernel lacks membarrier, a wake-up can be missed and the idle sleep is
 * bounded at 100 ms, so a missed one costs latency, never a line.
 *
 * Lifetime: a ring is allocated and registered (under hk__log.lock) on its
 * thread's first call and freed after the thread exits: the pthread key
 * destructor marks it dead and the writer frees it once drained, or the
 * destructor frees it itself when no writer runs. A thread that logs from a
 * later TLS destructor finds the DEAD marker and its lines are dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/internal.h"

#define RING_DEAD ((hk__log_ring_t *)(uintptr_t)1)

static _Thread_local hk__log_ring_t *tl_ring;
static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;

void hk__log_ring_free(hk__log_ring_t *r)
{
    free(r->buf);
    free(r);
}

/* Unlinks r from the ring list; hk__log.lock held. */
static void unlink_ring(hk__log_ring_t *r)
{
    for (hk__log_ring_t **pp = &hk__log.rings; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    for (int ch = 0; ch < HK__CHANS; ch++) {
        hk__log.retired_accepted[ch] +=
            atomic_load_explicit(&r->accepted[ch], memory_order_relaxed);
        hk__log.retired_dropped[ch] += atomic_load_explicit(&r->dropped[ch], memory_order_relaxed);
    }
    hk__log.nrings--;
}

static void ring_destructor(void *arg)
{
    hk__log_ring_t *r = arg;
    tl_ring = RING_DEAD;
    pthread_mutex_lock(&hk__log.lock);
    if (hk__log.writer_running) {
        atomic_store_explicit(&r->dead, 1, memory_order_release);
        r = NULL; /* the writer frees it once drained */
        /*
         * An idle writer sleeps up to 10 s and nothing else need wake it:
         * the ring (its memory, the count in hk_log_stats) would wait that long.
         * A thread's exit is rare enough for a system call.
         */
        hk__log_wake_force();
    } else {
        /* No writer will ever drain it: what is left is lost. */
        hk__log_ring_discard(r);
        unlink_ring(r);
    }
    pthread_mutex_unlock(&hk__log.lock);
    if (r)
        hk__log_ring_free(r);
}

static void make_key(void)
{
    (void)pthread_key_create(&ring_key, ring_destructor);
}

static hk__log_ring_t *ring_register(void)
{
    pthread_once(&ring_key_once, make_key);
    pthread_mutex_lock(&hk__log.lock);
    uint32_t cap = hk__log.ring_bytes;
    pthread_mutex_unlock(&hk__log.lock);

    hk__log_ring_t *r = NULL;
    if (posix_memalign((void **)&r, 64, sizeof *r) != 0)
        return NULL;
    memset(r, 0, offsetof(hk__log_ring_t, scratch));
    r->buf = malloc(cap);
    if (!r->buf) {
        free(r);
        return NULL;
    }
    /* Touch every page now, so no call ever takes a page fault in the ring. */
    memset(r->buf, 0, cap);
    r->cap = cap;
    r->mask = cap - 1;
    r->tid = gettid();

    pthread_mutex_lock(&hk__log.lock);
    r->next = hk__log.rings;
    hk__log.rings = r;
    hk__log.nrings++;
    pthread_mutex_unlock(&hk__log.lock);
    (void)pthread_setspecific(ring_key, r);
    tl_ring = r;
    return r;
}

hk__log_ring_t *hk__log_ring_get(void)
{
    hk__log_ring_t *r = tl_ring;
    if (__builtin_expect(r != NULL, 1))
        return r == RING_DEAD ? NULL : r;
    return ring_register();
}

void hk__log_wake_force(void)
{
    atomic_store_explicit(&hk__log.wake_pending, 1, memory_order_relaxed);
    uint64_t one = 1;
    /* EAGAIN means the counter is full: the writer is woken anyway. */
    ssize_t w = write(hk__log.eventfd, &one, sizeof one);
    (void)w;
}

void hk__log_wake(void)
{
    if (atomic_load_explicit(&hk__log.wake_pending, memory_order_relaxed))
        return;
    if (atomic_exchange_explicit(&hk__log.wake_pending, 1, memory_order_acq_rel))
        return;
    uint64_t one = 1;
    ssize_t w = write(hk__log.eventfd, &one, sizeof one);
    (void)w;
}

static inline void bump(_Atomic uint64_t *c)
{
    /* Only the owning thread writes the counter: no locked instruction. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/*
 * Counts a line dropped on channel chan. A drop commits nothing, so it wakes
 * the sleeping writer itself, as ring_commit does (same fence argument), or
 * its notice would wait for the idle sleep's end (10 s): an oversized access
 * line drops with the ring empty.
 */
static void drop(hk__log_ring_t *r, int chan)
{
    bump(&r->dropped[chan]);
    atomic_signal_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&hk__log.writer_sleeping, memory_order_relaxed))
        hk__log_wake();
}

/*
 * Room for a record of size bytes: returns where to write it and sets *next
 * to the tail after it, or returns NULL when the ring is full. Inlined into
 * both push functions, so hk_log pays nothing for the access channel.
 */
static inline __attribute__((always_inline)) unsigned char *
ring_reserve(hk__log_ring_t *r, uint32_t size, uint64_t *next)
{
    uint32_t need = hk__align8(size);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t off = (uint32_t)tail & r->mask;
    uint32_t to_end = r->cap - off;
    uint64_t total = need + (to_end < need ? to_end : 0);
    if (tail + total - r->head_cache > r->cap) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (tail + total - r->head_cache > r->cap)
            return NULL;
    }
    if (to_end < need) {
        /*
         * Records are 8-byte aligned, so the space left can be 8 bytes, less
         * than a whole header: write only what fits. The reader looks at
         * nothing of a pad but size and kind, which are in the first 8 bytes.
         */
        hk__log_rec_t pad = {.size = to_end, .kind = HK__REC_PAD};
        memcpy(r->buf + off, &pad, to_end < sizeof pad ? to_end : sizeof pad);
        tail += to_end;
        off = 0;
    }
    *next = tail + need;
    return r->buf + off;
}

/* Publishes the record(s) before tail, counts one line, wakes the writer if it needs it. */
static inline __attribute__((always_inline)) void ring_commit(hk__log_ring_t *r, uint64_t tail,
                                                              int chan)
{
    atomic_store_explicit(&r->tail, tail, memory_order_release);
    /*
     * The writer's membarrier (writer.c, fence_producers) orders the CPU's
     * view of this store and the writer_sleeping load below; the compiler
     * must not reorder them either (a release store lets later loads move
     * above it). No instruction: it only pins the order in the code.
     */
    atomic_signal_fence(memory_order_seq_cst);
    bump(&r->accepted[chan]);

    uint64_t used = tail - r->head_cache;
    if (used > r->cap / 2) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        used = tail - r->head_cache;
    }
    if (__builtin_expect(used > r->cap / 2, 0) ||
        atomic_load_explicit(&hk__log.writer_sleeping, memory_order_relaxed))
        hk__log_wake();
}

int hk__log_ring_push(hk__log_ring_t *r, const void *rec, uint32_t size)
{
    uint64_t next;
    unsigned char *p = ring_reserve(r, size, &next);
    if (__builtin_expect(!p, 0)) {
        drop(r, HK__CHAN_MAIN);
        return -EAGAIN;
    }
    memcpy(p, rec, size);
    ring_commit(r, next, HK__CHAN_MAIN);
    return 0;
}

int hk__log_ring_push_access(hk__log_ring_t *r, const char *line, size_t len)
{
    if (len >= HK_LOG_ACCESS_LINE_MAX) {
        drop(r, HK__CHAN_ACCESS);
        return -EMSGSIZE;
    }
    uint32_t size = HK__REC_HDR + (uint32_t)len + 1;
    uint64_t next;
    unsigned char *p = ring_reserve(r, size, &next);
    if (__builtin_expect(!p, 0)) {
        drop(r, HK__CHAN_ACCESS);
        return -EAGAIN;
    }
    /* Straight into the ring: the line is final, there is nothing to format. */
    hk__log_rec_t h = {.size = size, .kind = HK__REC_LINE, .chan = HK__CHAN_ACCESS};
    memcpy(p, &h, sizeof h);
    if (len)
        memcpy(p + HK__REC_HDR, line, len);
    p[HK__REC_HDR + len] = '\n';
    ring_commit(r, next, HK__CHAN_ACCESS);
    return 0;
}

void hk__log_ring_discard(hk__log_ring_t *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t lines[HK__CHANS] = {0};
    while (head != tail) {
        const hk__log_rec_t *rec = (const hk__log_rec_t *)(r->buf + ((uint32_t)head & r->mask));
        if (rec->kind == HK__REC_LINE) {
            lines[rec->chan & 1]++;
            head += hk__align8(rec->size);
        } else {
            head += rec->size;
        }
    }
    atomic_store_explicit(&r->head, head, memory_order_release);
    for (int ch = 0; ch < HK__CHANS; ch++)
        atomic_fetch_add_explicit(&hk__log.cs[ch].lost, lines[ch], memory_order_relaxed);
}

void hk__log_ring_reap_dead(int only_drained)
{
    hk__log_ring_t **pp = &hk__log.rings;
    while (*pp) {
        hk__log_ring_t *r = *pp;
        /* A ring that died after the writer looked at it still holds lines: not yet. */
        if (!atomic_load_explicit(&r->dead, memory_order_acquire) ||
            (only_drained && (atomic_load_explicit(&r->tail, memory_order_acquire) !=
                                  atomic_load_explicit(&r->head, memory_order_relaxed) ||
                              !hk__log_ring_reported(r)))) {
            pp = &r->next;
            continue;
        }
        hk__log_ring_discard(r);
        unlink_ring(r); /* *pp now points past r */
        hk__log_ring_free(r);
    }
}

void hk__log_ring_fork_child(void)
{
    hk__log_ring_t *mine = tl_ring == RING_DEAD ? NULL : tl_ring;
    hk__log_ring_t **pp = &hk__log.rings;
    while (*pp) {
        hk__log_ring_t *r = *pp;
        /*
         * What any ring holds was logged before the fork: the parent's writer
         * writes it, so it is neither written again nor counted as lost here.
         */
        atomic_store_explicit(&r->head, atomic_load_explicit(&r->tail, memory_order_relaxed),
                              memory_order_relaxed);
        for (int ch = 0; ch < HK__CHANS; ch++)
            r->drops_reported[ch] = atomic_load_explicit(&r->dropped[ch], memory_order_relaxed);
        if (r == mine) {
            r->head_cache = atomic_load_explicit(&r->tail, memory_order_relaxed);
            pp = &r->next;
            continue;
        }
        /* Its thread does not exist here, so its key destructor will never run. */
        unlink_ring(r); /* *pp now points past r */
        hk__log_ring_free(r);
    }
}
