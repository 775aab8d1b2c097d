/*
 * bench/pipes/common.h: the shared part of the "pipes" benchmark.
 *
 * Why: this is libevent's test/bench.c method, the classic way to compare
 * event loops. N socketpairs are watched, A of them carry a byte at a time,
 * and every read callback passes its byte on to the next socketpair until W
 * writes have been made. The work per event is the same for every system (one
 * recv, one send), so what differs is the loop's own cost per ready event,
 * and whether that cost grows with N (poll, select) or only with the number
 * of ready fds (epoll and the libraries built on it).
 *
 * Each system lives in its own file and its own executable (libev and
 * libevent must not meet in one link). The harness in main.c creates the
 * socketpairs and times the system's pipes_timed_<system>() function, which
 * is exported and never inlined so that callgrind can count exactly it with
 * --toggle-collect=pipes_timed_<system>. Watcher registration (setup) and
 * teardown stay outside of it.
 */
#ifndef PIPES_COMMON_H
#define PIPES_COMMON_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct pipes_bench {
    int n;            /* socketpairs */
    int active;       /* bytes in flight */
    long writes;      /* chained writes per round */
    int *fds;         /* 2n fds: [2i] is the watched (read) end, [2i + 1] the write end */
    int *next_wfd;    /* n fds: next_wfd[i] is fds[2 * ((i + 1) % n) + 1] */
    long count;       /* bytes read this round: the events */
    long writes_left; /* chained writes still to make this round */
    long expected;    /* events a round must see: active + writes */
    long failures;    /* failed recv or send; must stay 0 */
    void *sys;        /* the system's own state */
} pipes_bench_t;

typedef struct pipes_system {
    const char *name;
    /* Creates the loop and starts one read watcher per b->fds[2i]. 0 or -errno. */
    int (*setup)(pipes_bench_t *b);
    /* The timed part: runs the loop until b->count == b->expected. */
    void (*timed)(pipes_bench_t *b);
    /* Stops the watchers and frees the loop; the harness closes the fds after. */
    void (*teardown)(pipes_bench_t *b);
    /* Every fd must be below this (select's FD_SETSIZE), or 0 for no limit. */
    int fd_limit;
} pipes_system_t;

/* Each executable links main.c with exactly one system file, which defines this. */
extern const pipes_system_t pipes_system;

/* The timed functions, one per system; callgrind toggles collection on them. */
#define PIPES_TIMED __attribute__((noinline, used))
void pipes_timed_hark(pipes_bench_t *b);
void pipes_timed_hark_nometrics(pipes_bench_t *b);
void pipes_timed_epoll(pipes_bench_t *b);
void pipes_timed_libev(pipes_bench_t *b);
void pipes_timed_libevent(pipes_bench_t *b);
void pipes_timed_libuv(pipes_bench_t *b);
void pipes_timed_poll(pipes_bench_t *b);
void pipes_timed_select(pipes_bench_t *b);

/*
 * The read callback of libevent's bench.c, shared by every system: read the
 * byte of socketpair idx, count the event, and while writes remain pass a byte
 * on to socketpair idx + 1 (mod n), whose write end the harness looked up in
 * advance (next_wfd) so that the callback costs as little as it can: every
 * instruction here is in every system's instructions per event. Returns
 * non-zero once the round is done (every byte written has been read) or a
 * call failed.
 */
static inline int pipes_on_readable(pipes_bench_t *b, int idx)
{
    unsigned char ch;
    if (recv(b->fds[2 * idx], &ch, 1, 0) != 1) {
        b->failures++;
        return 1;
    }
    b->count++;
    if (b->writes_left > 0) {
        b->writes_left--;
        if (send(b->next_wfd[idx], "e", 1, 0) != 1) {
            b->failures++;
            return 1;
        }
    }
    return b->count >= b->expected;
}

#endif
