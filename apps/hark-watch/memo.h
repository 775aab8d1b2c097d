/*
 * memo.h: what the last full scan learnt about each process's fd table
 * (the number and kind of every open fd, its sockets' inodes), kept for the next
 * scan, which reuses it for a process that has not executed since.
 * Private to the scanner (scan.c); see memo.c for why this is safe.
 */
#ifndef HARK_WATCH_MEMO_H
#define HARK_WATCH_MEMO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kind.h"

/* One process's fd table as a full pass found it. */
typedef struct fd_memo {
    pid_t pid;
    uint32_t nkind;   /* open fds recorded: fds and kinds [0 .. nkind), by number */
    uint64_t dir_ino; /* inode of /proc/<pid>/fd (another process behind a reused pid differs) */
    uint64_t count;   /* st_size of /proc/<pid>/fd: open fds */
    uint64_t cpu_ns;  /* the process's CPU clock, read before the pass */
    size_t kind_off;  /* in memo_gen_t.fds and memo_gen_t.kinds */
    size_t ino_off;   /* its socket fds' inodes, in fd order, in memo_gen_t.inos */
} fd_memo_t;

typedef struct memo_gen {
    fd_memo_t *v; /* ascending pid */
    size_t n, cap;
    uint32_t *fds; /* fd numbers, by open fd (never an array indexed by number) */
    uint8_t *kinds;
    size_t nkinds, kcap, fcap;
    uint64_t *inos;
    size_t ninos, icap;
    int sorted;
} memo_gen_t;

typedef struct memo {
    memo_gen_t gen[2]; /* gen[cur] is being written, the other is looked up */
    int cur;
    uint32_t scans; /* full scans begun: staggers the periodic re-reads */
} memo_t;

/* Every process gets a full pass at least once in this many full scans. */
#define MEMO_REVALIDATE 16

void memo_free(memo_t *m);

/* Starts a full scan: the last one's records become those looked up. */
void memo_begin(memo_t *m);

/* The last full scan's record of pid, or NULL; also NULL when pid is due for a full pass. */
const fd_memo_t *memo_find(const memo_t *m, pid_t pid);

/* The CPU clock of process pid (all its threads, in ns), or -errno. */
int64_t memo_cpu_ns(pid_t pid);

/*
 * Records a process's fd table (fds[0 .. hdr->nkind), its open fds sorted by
 * number; of their inodes only the sockets') in the generation being
 * written. Returns 0 or -ENOMEM (the record is dropped: the process just
 * gets a full pass next time).
 */
int memo_put(memo_t *m, const fd_memo_t *hdr, const watch_fd_t *fds);

/* The fd numbers, kinds and socket inodes of a record found by memo_find. */
const uint32_t *memo_fds(const memo_t *m, const fd_memo_t *r);
const uint8_t *memo_kinds(const memo_t *m, const fd_memo_t *r);
const uint64_t *memo_inos(const memo_t *m, const fd_memo_t *r);

#endif
