/*
 * fdtable.h: one process's fd table, for the scanner (scan.c): the kind of
 * every fd number, its epoll sets and listening sockets, read from
 * /proc/<pid>/fd or restored from the memo of the last full scan. A list of
 * the open fds sorted by number, not an array indexed by number: memory by
 * open fd, whatever the numbers (one fd at 1,000,000 is one entry).
 */
#ifndef HARK_WATCH_FDTABLE_H
#define HARK_WATCH_FDTABLE_H

#include <sys/types.h>

#include "memo.h"
#include "scan.h"

typedef struct fd_pass {
    scanner_t *s;
    scan_t *sc;
    proc_rec_t *p;
    int dfd;      /* /proc/<pid>/fd, for fd_table_read */
    size_t nfd;   /* entries of s->fds valid for this process */
    int unsorted; /* an fd came below the last one (the listing is ascending, in fact) */
    int vanished; /* listed fds whose link could not be read: closed, or the process exited */
    int split;    /* the listing went on past a full getdents64 batch: an exit may have cut it */
} fd_pass_t;

/* Reads the table through f->dfd. Returns 0 or -ENOMEM. */
int fd_table_read(fd_pass_t *f);

/* Fills the table from a memo record instead. Returns 0 or -ENOMEM. */
int fd_table_restore(fd_pass_t *f, const fd_memo_t *m);

/* The entry of fd number fd in v[0 .. n) (sorted by number), or NULL: a binary search. */
const watch_fd_t *fd_table_find(const watch_fd_t *v, size_t n, int fd);

#endif
