/*
 * Private parts of the logger: the record layout shared by the producers
 * (fmt.c, ring.c) and the writer (render.c, writer.c), the per-thread ring,
 * and the process-wide state.
 *
 * A record in a ring is a 16-byte header, then the message and the fields,
 * unescaped, each with its length:
 *   u16 msg_len, msg bytes,
 *   then per field: u8 flags, u16 key_len, u16 val_len, key bytes, value bytes.
 * Records start on 8-byte boundaries and never wrap: when the space left at
 * the end of the ring is too short, the producer fills it with a pad record
 * and starts again at offset 0. The space left is a multiple of 8 but may be
 * only 8 bytes, so a pad is just the first 8 bytes of a header (size and
 * kind): the reader of a pad must look at nothing else.
 *
 * Each line record carries its channel (chan): main lines are laid out as
 * above; an access line is the header followed by the line's bytes, its
 * '\n' included, written out as they are. The channel also indexes the
 * per-channel counters and, in the writer, the sink.
 */
#ifndef HK_LOG_INTERNAL_H
#define HK_LOG_INTERNAL_H

#include "hark/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

enum {
    HK__REC_LINE = 1,
    HK__REC_PAD = 2,
};

/* Channels: where a line goes. */
enum {
    HK__CHAN_MAIN = 0,   /* hk_log(): rendered with timestamp and level */
    HK__CHAN_ACCESS = 1, /* hk_log_access(): verbatim, to the access sink */
    HK__CHANS = 2,
};

/* Record flags. */
#define HK__REC_TRUNCATED 0x1u
/* Field flags: the value is exactly one numeric conversion (a JSON number candidate). */
#define HK__FIELD_NUMERIC 0x1u

typedef struct hk__log_rec {
    uint32_t size; /* header + payload, not padded (pad records: the bytes to skip) */
    uint8_t kind;
    uint8_t level;
    uint8_t flags;
    uint8_t chan;   /* HK__CHAN_*; 0 (main) unless set */
    uint64_t ts_ns; /* CLOCK_REALTIME; 0 for access lines */
} hk__log_rec_t;

#define HK__REC_HDR ((uint32_t)sizeof(hk__log_rec_t))
#define HK__REC_MAX (HK__REC_HDR + 2 + HK_LOG_LINE_MAX + 64)
#define HK__FIELD_HDR 5u
/* The writer's output buffer per sink; it takes lines while HK__LINE_MAX bytes are free. */
#define HK__OUT_CAP (256u * 1024)

static inline uint32_t hk__align8(uint32_t n)
{
    return (n + 7u) & ~7u;
}

typedef struct hk__log_ring hk__log_ring_t;

struct hk__log_ring {
    /* Written by the producer (its thread) only. */
    _Alignas(64) _Atomic uint64_t tail;
    uint64_t head_cache;                  /* the producer's last view of head */
    _Atomic uint64_t accepted[HK__CHANS]; /* single writer: load + store, no locked op */
    _Atomic uint64_t dropped[HK__CHANS];
    /*
     * 1 while a call of this thread is between its open check and its
     * commit: a closing writer waits for it (see hk__log_call_begin).
     */
    _Atomic int busy;
    /* Written by the writer thread only. */
    _Alignas(64) _Atomic uint64_t head;
    uint64_t drops_reported[HK__CHANS];
    /*
     * Where a flush request's lines end in this ring (writer.c): the tail and
     * drop counts when the writer took the request, stamped with that
     * request's generation so that a ring made later (zeroed) is not waited for.
     */
    uint64_t flush_gen;
    uint64_t flush_mark;
    uint64_t flush_drops[HK__CHANS];
    /*
     * Where the lines logged before a reopen request end: the tail when
     * hk_log_reopen was called, stamped with the request's generation so that
     * a ring made later is not waited for. req_*: written by the caller under
     * ctl_lock and hk__log.lock; the writer copies them under the same locks.
     */
    uint64_t reopen_req_gen;
    uint64_t reopen_req_mark;
    uint64_t reopen_gen;
    uint64_t reopen_mark;
    /* Rare: set by the thread-exit destructor, read by the writer. */
    _Alignas(64) _Atomic int dead;
    hk__log_ring_t *next; /* in hk__log.rings, under hk__log.lock */
    uint32_t cap;
    uint32_t mask;
    pid_t tid;
    unsigned char *buf;
    unsigned char scratch[HK__REC_MAX]; /* the producer formats here, then copies */
};

/* Whether the writer has reported every drop of r (both channels). */
static inline int hk__log_ring_reported(const hk__log_ring_t *r)
{
    for (int ch = 0; ch < HK__CHANS; ch++)
        if (atomic_load_explicit(&r->dropped[ch], memory_order_relaxed) != r->drops_reported[ch])
            return 0;
    return 1;
}

/*
 * The check a call makes before it touches its ring: whether the logger (or
 * flag, the access channel) is still open, with r->busy set around it. The
 * seq_cst store and load pair with the closer's seq_cst store of the flag and
 * the writer's seq_cst load of busy (Dekker): either this call sees the flag
 * cleared, or the closing writer sees busy set and waits for the commit. The
 * store hits the thread's own cache line (no shared counter); the call clears
 * busy with hk__log_call_end once its line is committed or dropped.
 */
static inline int hk__log_call_begin(hk__log_ring_t *r, _Atomic int *flag)
{
    atomic_store_explicit(&r->busy, 1, memory_order_seq_cst);
    if (__builtin_expect(atomic_load_explicit(flag, memory_order_seq_cst), 1))
        return 1;
    atomic_store_explicit(&r->busy, 0, memory_order_release);
    return 0;
}

static inline void hk__log_call_end(hk__log_ring_t *r)
{
    atomic_store_explicit(&r->busy, 0, memory_order_release);
}

/* Counters of one channel kept outside the rings. */
typedef struct hk__log_chan_stats {
    _Atomic uint64_t dropped_nomem;
    _Atomic uint64_t written; /* lines written to the channel's sink */
    _Atomic uint64_t lost;
    _Atomic uint64_t drop_reports; /* notices for this channel's drops (in the main sink) */
    _Atomic uint64_t bytes;
    _Atomic uint64_t write_errors;
    _Atomic uint64_t reopens;
} hk__log_chan_stats_t;

/* The process-wide logger. */
typedef struct hk__log_state {
    /* Read on every call. */
    _Alignas(64) _Atomic int min_level;
    _Atomic int open;
    _Atomic int access_open;     /* hk_log_access may queue lines */
    _Atomic int writer_sleeping; /* 1 while the writer sleeps without a timer of its own */
    _Atomic int wake_pending;    /* someone wrote the eventfd since the writer drained it */
    int eventfd;                 /* never closed but in a child after fork (see log.c) */

    /* Counters of events outside any ring. */
    _Alignas(64) _Atomic uint64_t dropped_closed;
    _Atomic uint64_t reopen_errors;
    hk__log_chan_stats_t cs[HK__CHANS];

    /* The ring list and the counters of freed rings; under lock. */
    pthread_mutex_t lock;
    hk__log_ring_t *rings;
    uint64_t retired_accepted[HK__CHANS];
    uint64_t retired_dropped[HK__CHANS];
    uint64_t nrings;
    int writer_running;
    uint32_t ring_bytes; /* size of new rings */

    /* Control from the API to the writer. */
    pthread_mutex_t api_lock; /* serialises open, close and access open; see log.c */
    pthread_mutex_t ctl_lock; /* open/close/reopen/flush; never taken by hk_log() */
    pthread_cond_t flushed;
    char *path[HK__CHANS];        /* each sink's path (NULL for an fd sink), under ctl_lock */
    char *reopen_path[HK__CHANS]; /* pending reopens, under ctl_lock */
    _Atomic uint64_t reopen_seq;
    uint64_t reopen_gen; /* generation of the last request's marks, under ctl_lock */
    _Atomic uint64_t flush_req;
    uint64_t flush_done; /* under ctl_lock */
    _Atomic int stop;
    _Atomic uint64_t stop_deadline; /* CLOCK_MONOTONIC ns */
    int stop_result;                /* 0 or -ETIMEDOUT, set by the writer before it exits */
    pthread_t writer;
    /*
     * The sinks and the writer's buffers, owned by the API (log.c frees them
     * after joining the writer). The writer takes the access sink once
     * access_ready is set: it may be opened while the writer runs.
     */
    int sink_fd[HK__CHANS];
    int sink_kind[HK__CHANS];
    char *out_buf[HK__CHANS];
    _Atomic int access_ready;
    int format;
    uint64_t flush_interval_ns;
    uint64_t exit_timeout_ns;
} hk__log_state_t;

/* Sink kinds: how the writer writes without blocking. */
enum {
    HK__SINK_FILE = 0, /* regular file: write(2), cannot block on space */
    HK__SINK_PIPE = 1, /* pipe, fifo, tty: private O_NONBLOCK description */
    HK__SINK_SOCK = 2, /* socket: send(MSG_DONTWAIT | MSG_NOSIGNAL) */
};

extern hk__log_state_t hk__log;

/* ring.c */
hk__log_ring_t *hk__log_ring_get(void);
void hk__log_ring_free(hk__log_ring_t *r);
int hk__log_ring_push(hk__log_ring_t *r, const void *rec, uint32_t size);
/* An access line of len bytes (without its newline, which this adds). */
int hk__log_ring_push_access(hk__log_ring_t *r, const char *line, size_t len);
void hk__log_wake(void);
/* Consumer side: drops every record left in r, counting its lines as lost. */
void hk__log_ring_discard(hk__log_ring_t *r);
/*
 * Consumer side, hk__log.lock held: unlinks and frees dead rings; only those
 * drained and with their drops reported when only_drained, else all of them
 * (what is left counts as lost).
 */
void hk__log_ring_reap_dead(int only_drained);
void hk__log_wake_force(void);
/*
 * In a child after fork(), hk__log.lock held: frees the rings of the
 * parent's other threads (they do not exist here) and empties the caller's,
 * whose lines the parent writes.
 */
void hk__log_ring_fork_child(void);

/* fmt.c: formats one record into buf (at least HK__REC_MAX bytes); returns its size. */
uint32_t hk__log_format(unsigned char *buf, int level, uint64_t ts_ns, const char *msg,
                        const char *fields, va_list *ap);

/* render.c: one record as a line; out must hold HK__LINE_MAX bytes. Returns the length. */
#define HK__LINE_MAX (6u * HK__REC_MAX + 256u)
size_t hk__log_render(char *out, const hk__log_rec_t *rec, int format);
/* A writer-made line (drop notices, reopen errors) with one numeric and one string field. */
size_t hk__log_render_note(char *out, int format, int level, uint64_t ts_ns, const char *msg,
                           const char *k1, uint64_t v1, const char *k2, const char *v2);

/* log.c: queues a reopen of channel ch's sink (see hk_log_reopen, hk_log_access_reopen). */
int hk__log_reopen(int ch, const char *path);

/* writer.c */
void *hk__log_writer_main(void *arg);
int hk__log_sink_open_path(const char *path, int *kind);
int hk__log_sink_from_fd(int fd, int *kind);

uint64_t hk__log_mono_ns(void);

#endif
