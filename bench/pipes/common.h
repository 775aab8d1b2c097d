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
 * The byte ring may also be shorter than N (-c R): R socketpairs spread
 * evenly over the N carry the bytes and the other N - R are watched but stay
 * idle. That separates the two ways N can cost: a loop that scans every
 * watched fd per iteration (poll, select) pays for the idle ones, while a
 * ring through all N also grows the kernel's working set (sockets, buffers)
 * that every loop touches, which shows up as a cost per event that grows with
 * N even for epoll. bench/pipes' fit (scripts/fit-pipes) needs the first
 * without the second.
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
    int ring;         /* socketpairs that pass bytes on (spread over the n); the rest idle */
    long writes;      /* chained writes per round */
    int *fds;         /* 2n fds: [2i] is the watched (read) end, [2i + 1] the write end */
    int *next_wfd;    /* n fds: the write end of the ring's socketpair after i */
    long count;       /* bytes read this round: the events */
    long writes_left; /* chained writes still to make this round */
    long expected;    /* events a round must see: active + writes */
    long failures;    /* failed recv or send; must stay 0 */
    long iterations;  /* loop iterations so far, for systems that count them */
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
    /*
     * Loop iterations since setup (read outside the timed part), or NULL when
     * the system does not count them. Iterations give K, the ready events per
     * iteration, which the O(N)-versus-O(K) fit needs.
     */
    long (*iterations)(pipes_bench_t *b);
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
 * on to the next socketpair of the ring, whose write end the harness looked up in
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
