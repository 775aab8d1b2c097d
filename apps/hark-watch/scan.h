/*
 * scan.h: one pass over /proc. For every process: its fds, its epoll sets,
 * every interest entry classified by what the watched fd is, and the sockets
 * it listens on. Runs on a pool worker (watch.c); plain system calls only.
 */
#ifndef HARK_WATCH_SCAN_H
#define HARK_WATCH_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kind.h"
#include "memo.h"
#include "netinfo.h"

typedef struct proc_rec {
    pid_t pid;
    uid_t uid;
    uint32_t fds;     /* open fds */
    uint32_t epolls;  /* epoll sets */
    uint32_t entries; /* interest entries over all its epoll sets */
    uint32_t kinds[WK_KINDS];
    uint32_t listening; /* listening sockets among its fds */
    uint32_t bad;       /* fdinfo lines that did not parse */
    uint32_t exe;       /* offset of the executable path in scan_t.strings */
    uint32_t user;      /* offset of the user name in scan_t.strings */
    uint32_t sock_off;  /* its watched sockets' inodes: scan_t.inodes[sock_off ..] */
    uint32_t sock_n;
} proc_rec_t;

/* Most watched-socket inodes kept per process (for the endpoints of an alert). */
#define SCAN_SOCKETS_PER_PROC 4096

typedef struct scan {
    proc_rec_t *procs;
    size_t nprocs, pcap;
    char *strings;
    size_t slen, scap;
    uint64_t *inodes;
    size_t ninodes, icap;
    netinfo_t net;
    /* Counters of this pass. */
    uint64_t gone;     /* processes that exited mid-scan (ENOENT, ESRCH) */
    uint64_t denied;   /* processes or fds we may not look at (EACCES, EPERM) */
    uint64_t kthreads; /* kernel threads (no executable) */
    uint64_t reused;   /* processes whose fd table came from the memo (not run since) */
    uint64_t bad_lines;
    uint64_t truncated; /* processes dropped: an epoll set's fdinfo went past FDINFO_MAX_BYTES */
    uint64_t duration_ns;
    int error; /* -errno when the pass itself failed (no /proc) */
} scan_t;

/* Bytes of the scanner's reused buffer for fdinfo text and directory entries. */
#define SCAN_BUF_SIZE 65536

/* Scratch space of one scanner (one pass at a time). */
typedef struct scanner {
    /*
     * The current process's open fds, ascending by number: a list, not an
     * array indexed by fd, so one fd at 1,000,000 costs one entry.
     */
    watch_fd_t *fds;
    size_t fdcap;
    int *epfds;
    size_t nep, epcap;
    char *buf;         /* SCAN_BUF_SIZE bytes, allocated by the first run */
    watch_devs_t devs; /* sockfs, pipefs, anon_inodefs, learnt by scanner_init */
    memo_t memo;       /* fd tables of the last full scan (memo.c) */
    int no_memo;       /* every full scan reads every fd table (scanner_memo) */
    struct {
        uid_t uid;
        char name[32];
    } users[64]; /* user names by uid, resolved once (getpwuid_r reads files) */
    size_t nusers;
    unsigned shard, nshards; /* a full scan takes the pids with pid % nshards == shard */
    char proc_root[64];
} scanner_t;

void scanner_init(scanner_t *s, const char *proc_root);
void scanner_free(scanner_t *s);

/* Makes full scans of s cover only the pids with pid % nshards == shard. */
void scanner_shard(scanner_t *s, unsigned shard, unsigned nshards);

/*
 * With on = 0, full scans read every process's fd table, as the first scan
 * and scans of listed pids always do; by default a full scan reuses the
 * table of a process that has not run since the last one (memo.c).
 */
void scanner_memo(scanner_t *s, int on);

/* Grows *p (of *cap elements of elem bytes) to hold need, doubling. Returns 0 or -ENOMEM. */
int scan_grow(void **p, size_t *cap, size_t need, size_t elem);

/*
 * Concatenates the shards' results into dst (which it resets): records,
 * strings and inodes with their offsets fixed, counters summed, duration the
 * longest. dst->net is left alone. Returns 0, -ENOMEM, or the first shard's
 * error.
 */
int scan_merge(scan_t *dst, scan_t *const *parts, size_t n);

/*
 * Scans every process (pids == NULL) or the listed ones into *out (which it
 * resets; reuse one scan_t to keep its memory). Returns 0 or -errno (also in
 * out->error); processes that vanish or refuse are counted, not errors.
 */
int scanner_run(scanner_t *s, const pid_t *pids, size_t npids, scan_t *out);
void scan_free(scan_t *sc);

static inline const char *scan_exe(const scan_t *sc, const proc_rec_t *p)
{
    return sc->strings + p->exe;
}

static inline const char *scan_user(const scan_t *sc, const proc_rec_t *p)
{
    return sc->strings + p->user;
}

#endif
