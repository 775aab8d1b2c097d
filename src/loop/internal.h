/*
 * Private parts of the loop module: the loop struct, the fd table, handle
 * flags, the intrusive list, and the functions the loop's files share.
 */
#ifndef HK_LOOP_INTERNAL_H
#define HK_LOOP_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "hark/loop.h"
#include "loop/ext.h"

#define HK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HK_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Handle flags (hk_handle_t._flags). */
enum {
    HK__ACTIVE = 0x01,   /* started */
    HK__REF = 0x02,      /* counts towards keeping the loop alive when active */
    HK__CLOSING = 0x04,  /* hk_close called; close callback pending */
    HK__CLOSED = 0x08,   /* close callback ran */
    HK__INTERNAL = 0x10, /* owned by the loop or another watcher; never counted */
    HK__FRESH = 0x20,    /* io: (re)initialised; the next start re-registers the fd */
    HK__ONTIME = 0x40,   /* timer: started with HK_TIMER_ONTIME or HOLD (ontime.c) */
    HK__HOLD = 0x80,     /* timer: started with HK_TIMER_HOLD (ontime.c) */
    HK__PARKED = 0x100,  /* timer: set aside for the rest of a timer pass (timer_heap.c) */
};

/*
 * epoll_data.u64 of every registration: generation << 32 | the fd's slot
 * offset in bytes (fd * sizeof(struct hk__fdslot)), so the dispatcher finds the
 * slot with one add and no bounds check: a tag is only ever made for an fd
 * whose slot exists, and the table never shrinks. User watchers' generations
 * start at 1; the loop's own fds (eventfd, signalfd, timerfd) have slots too
 * and register with generation 0, which no slot's live tag ever carries, so
 * they reach the internal handler through the dispatcher's slow path.
 */
#define HK__TAG_SLOT_MAX (UINT32_MAX / sizeof(struct hk__fdslot))
/* A slot's live tag while no watcher is active: its low half is no slot offset. */
#define HK__LIVE_NONE UINT64_MAX

/* One slot per fd number: which watcher owns it and what the kernel holds. */
struct hk__fdslot {
    uint64_t live;  /* the tag events must carry to reach w, or HK__LIVE_NONE */
    hk_io_t *w;     /* the active watcher, or NULL */
    hk_io_t *owner; /* the watcher whose registration the kernel holds */
    uint32_t gen;   /* generation tag of the current registration */
    uint32_t kmask; /* epoll events registered (0 with registered = disarmed ONESHOT) */
    uint32_t slow;  /* events the dispatcher must look at first: ~ the fast set (io.c, hk__fast) */
    uint8_t registered;
    uint8_t queued; /* in the change list */
    uint8_t is_file;
    /*
     * lost_gen: the generation of a registration that can no longer be reached
     * by number (a DEL found the number closed, or a new file took the number
     * before the DEL), which a dup'ed copy may keep alive; 0 for none.
     * lost_iter: the low byte of stats.iterations when it was found, so that
     * stale events fetched in that same batch do not count as its own.
     */
    uint8_t lost_iter;
    uint32_t lost_gen;
};

struct hk__heap_entry {
    uint64_t when;
    hk_timer_t *timer;
};

struct hk_loop {
    int epfd;
    unsigned flags;
    int metrics; /* time accounting and lag histogram on */
    int running;
    int stop_flag;
    uint64_t now;
    uint64_t woke_at; /* when the current iteration's epoll_wait returned */

    /* io */
    struct hk__fdslot *fds;
    uint32_t fds_cap;
    int *changes;
    uint32_t nchanges, changes_cap;
    struct hk__link files; /* always-ready regular-file watchers */
    struct epoll_event *events;
    int events_cap;

    /* timers */
    struct hk__heap_entry *heap;
    uint32_t heap_len, heap_cap;
    uint64_t timer_seq;
    struct hk__heap_entry *parked; /* due timers started in the current pass (timer_heap.c) */
    uint32_t nparked, parked_cap;
    int use_timerfd;
    int timerfd;
    uint64_t timerfd_armed; /* absolute deadline armed, HK_FOREVER = disarmed */

    /* handles */
    unsigned active_refs;  /* active, referenced, non-internal handles */
    unsigned open_handles; /* initialised and not yet closed */
    hk_handle_t *closing;
    struct hk__link hooks[3]; /* by hk_hook_kind_t - 1 */
    unsigned idle_active;
    struct hk__link defers;
    int defer_rounds; /* deferred rounds run in this iteration */

    /* cross-thread wake-ups: accessed with __atomic builtins */
    int eventfd;
    int sleeping;
    int wakeup_pending;
    int work_pending; /* an async was sent or a signal forwarded */
    struct hk__link asyncs;

    /* signals */
    int sigfd;
    sigset_t sigmask;
    unsigned sigcount[65];
    struct hk__link signals;
    uint64_t sig_forwarded; /* bit (signum - 1), set by other loops; atomic */
    hk_loop_t *sig_next;    /* in the process-wide registry */
    int sig_registered;

    /* modules layered on the loop (loop/ext.h) */
    struct {
        void *state;
        hk__ext_free_fn free_fn;
    } ext[HK__EXT_SLOTS];
    unsigned pending_reqs;
    hk__sleep_fn sleep_fn;   /* called around each sleep, or NULL (loop/ext.h) */
    uint64_t lag_zero;       /* lag samples of 0, folded into the histogram when read */
    struct hk__stall *stall; /* stall detector, or NULL (stall.c) */
    struct hk__queue *queue; /* queue model, or NULL (queue.c) */
    uint8_t queue_on;        /* the queue model measures callbacks */
    uint8_t hooked;          /* stall || queue_on: io dispatch takes its hooked path */
    uint8_t io_rebuild;      /* a registration outlived its fd: rebuild the epoll set (io.c) */
    uint64_t spin_ns;        /* busy polling before a sleep, or 0 (spin.c) */

    hk_loop_stats_t stats;
};

/* Intrusive circular list with a sentinel. */
static inline void hk__list_init(struct hk__link *l)
{
    l->_prev = l->_next = l;
}
static inline bool hk__list_empty(const struct hk__link *l)
{
    return l->_next == l;
}
static inline void hk__list_insert_tail(struct hk__link *l, struct hk__link *n)
{
    n->_next = l;
    n->_prev = l->_prev;
    l->_prev->_next = n;
    l->_prev = n;
}
static inline void hk__list_remove(struct hk__link *n)
{
    n->_prev->_next = n->_next;
    n->_next->_prev = n->_prev;
    n->_prev = n->_next = n;
}
/* Moves every element of from to the (empty) list to. */
static inline void hk__list_move(struct hk__link *from, struct hk__link *to)
{
    if (hk__list_empty(from)) {
        hk__list_init(to);
        return;
    }
    to->_next = from->_next;
    to->_prev = from->_prev;
    to->_next->_prev = to;
    to->_prev->_next = to;
    hk__list_init(from);
}

/*
 * Safe iteration over a list whose callbacks may stop, close or start any
 * element: move the whole list aside into pending, then take elements one by
 * one, putting each back into home before its callback runs. An element
 * removed meanwhile simply leaves pending; one added lands in home and waits
 * for the next pass. Returns NULL when pending is empty.
 *
 *     struct hk__link pending;
 *     hk__list_move(home, &pending);
 *     for (struct hk__link *l; (l = hk__list_rotate(&pending, home));) ...
 */
static inline struct hk__link *hk__list_rotate(struct hk__link *pending, struct hk__link *home)
{
    if (hk__list_empty(pending))
        return NULL;
    struct hk__link *l = pending->_next;
    hk__list_remove(l);
    hk__list_insert_tail(home, l);
    return l;
}

/* handle.c */
void hk__handle_init(hk_loop_t *loop, hk_handle_t *h, hk_handle_type_t type);
void hk__handle_start(hk_handle_t *h);
void hk__handle_stop(hk_handle_t *h);
void hk__run_closing(hk_loop_t *loop);

/* io.c */
int hk__fdtable_reserve(hk_loop_t *loop, int fd);
void hk__io_apply_changes(hk_loop_t *loop);
void hk__io_dispatch(hk_loop_t *loop, int n);
void hk__io_run_files(hk_loop_t *loop);
void hk__io_close(hk_io_t *io);
int hk__io_reregister_all(hk_loop_t *loop);
int hk__epoll_ctl(hk_loop_t *loop, int op, int fd, uint32_t events, uint64_t data);
int hk__epoll_add_internal(hk_loop_t *loop, int fd);

/* timer.c, timer_heap.c */
void hk__timers_run(hk_loop_t *loop);
int hk__heap_push(hk_loop_t *loop, hk_timer_t *t, uint64_t when);
void hk__heap_remove(hk_loop_t *loop, hk_timer_t *t);
void hk__heap_replace_top(hk_loop_t *loop, uint64_t when);
int hk__heap_park_top(hk_loop_t *loop);
void hk__heap_unpark_all(hk_loop_t *loop);

/* sleep.c */
int hk__sleep(hk_loop_t *loop, uint64_t deadline, uint64_t now);
int hk__timerfd_setup(hk_loop_t *loop);
void hk__timerfd_drain(hk_loop_t *loop);

/* async.c */
int hk__async_setup(hk_loop_t *loop);
void hk__async_wakeup(hk_loop_t *loop);
void hk__async_on_eventfd(hk_loop_t *loop);
void hk__async_process(hk_loop_t *loop);
void hk__async_quiesce(hk_async_t *async);

/* signal.c */
void hk__signal_on_fd(hk_loop_t *loop);
void hk__signal_process_forwarded(hk_loop_t *loop);
void hk__signal_loop_free(hk_loop_t *loop);
int hk__signal_fork(hk_loop_t *loop);

/* hook.c, defer.c */
void hk__hooks_run(hk_loop_t *loop, hk_hook_kind_t kind);
void hk__defers_run(hk_loop_t *loop);

/* queue.c: the queue model (see loop/queue.h); ontime.c: ONTIME and HOLD timers */
void hk__loop_hooks_changed(hk_loop_t *loop);
int hk__queue_ensure(hk_loop_t *loop, uint64_t window);
void hk__queue_batch_begin(hk_loop_t *loop);
void hk__queue_after_cb(hk_loop_t *loop);
void hk__queue_woke(hk_loop_t *loop, uint64_t deadline, uint64_t slept_at);
void hk__queue_timer_cb(hk_loop_t *loop, hk_timer_t *t, uint64_t expirations);
int hk__queue_ontime_start(hk_loop_t *loop, hk_timer_t *t, unsigned flags, uint64_t *when);
void hk__queue_ontime_stop(hk_loop_t *loop, hk_timer_t *t);
uint64_t hk__queue_ontime_fire(hk_loop_t *loop, hk_timer_t *t, uint64_t now);
void hk__queue_free(hk_loop_t *loop);

/* spin.c */
int hk__spin(hk_loop_t *loop, uint64_t deadline, uint64_t now);

/* stats.c */
void hk__lag_record(hk_loop_t *loop, uint64_t lag_ns);

/* ext.c */
void hk__loop_ext_free_all(hk_loop_t *loop);

/* loop.c */
uint64_t hk__clock_now(void);

#endif
