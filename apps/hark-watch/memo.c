/*
 * The fd-table memo: skipping the per-fd readlinks of processes that have
 * not run.
 *
 * Why: one readlink per fd is most of a scan (scan.c), and most processes
 * of a machine sleep through the seconds between two scans. Their fd tables
 * cannot have changed: a table changes only through kernel code run by a
 * thread of the process (open, close, dup2, accept, epoll_create, a
 * received SCM_RIGHTS, exec, a seccomp supervisor's addfd, which the
 * target installs itself), and that moves the process's CPU clock, the
 * nanoseconds run by all its threads, live and exited, which any process
 * may read with clock_gettime (the clock id of clock_getcpuclockid, made
 * here without glibc's probing system call). So a full pass records, per
 * process, the clock read *before* it (a change during the pass shows next
 * time), the inode of /proc/<pid>/fd (a new process behind a reused pid has
 * another) and the open-fd count; the next full scan reuses the recorded
 * table when all three are unchanged.
 *
 * What the memo does not cover is read every scan: the epoll interest lists
 * themselves (a forked child sharing an epoll file can add entries while the
 * owner sleeps), whether each socket listens (a property of the socket, not
 * of the table), the executable and the owner.
 *
 * Residual cases, bounded by a full pass of every process at least every
 * MEMO_REVALIDATE full scans (staggered by pid, so no scan pays for all):
 * a process sharing the table through clone(CLONE_FILES) without
 * CLONE_THREAD changes it while the owner sleeps (the sharer, scanned in
 * full because its own clock moved, shows the same fds); a thread that runs
 * without a tick or a context switch between two scans (a tickless CPU,
 * scans closer than a tick) has not had its time folded into the clock yet.
 *
 * Two generations: the one being written and the last full scan's, looked
 * up by pid (/proc lists pids in ascending order, so binary search; a
 * generation written out of order is sorted when it becomes the lookup one).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kind.h"
#include "memo.h"
#include "scan.h"

static void gen_free(memo_gen_t *g)
{
    free(g->v);
    free(g->fds);
    free(g->kinds);
    free(g->inos);
    memset(g, 0, sizeof *g);
}

void memo_free(memo_t *m)
{
    gen_free(&m->gen[0]);
    gen_free(&m->gen[1]);
    memset(m, 0, sizeof *m);
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = ((const fd_memo_t *)a)->pid, y = ((const fd_memo_t *)b)->pid;
    return (x > y) - (x < y);
}

void memo_begin(memo_t *m)
{
    m->scans++;
    m->cur ^= 1;
    memo_gen_t *g = &m->gen[m->cur], *last = &m->gen[m->cur ^ 1];
    g->n = g->nkinds = g->ninos = 0;
    g->sorted = 1;
    if (!last->sorted && last->n) {
        qsort(last->v, last->n, sizeof *last->v, cmp_pid);
        last->sorted = 1;
    }
}

const fd_memo_t *memo_find(const memo_t *m, pid_t pid)
{
    if (((uint32_t)pid + m->scans) % MEMO_REVALIDATE == 0)
        return NULL; /* this process's periodic full pass */
    const memo_gen_t *g = &m->gen[m->cur ^ 1];
    fd_memo_t key = {.pid = pid};
    return g->n ? bsearch(&key, g->v, g->n, sizeof *g->v, cmp_pid) : NULL;
}

int64_t memo_cpu_ns(pid_t pid)
{
    /* MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED): ~pid << 3, per-process, scheduler time. */
    clockid_t clk = (clockid_t)(~(uint32_t)pid << 3 | 2u);
    struct timespec ts;
    if (clock_gettime(clk, &ts) < 0)
        return -errno;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int memo_put(memo_t *m, const fd_memo_t *hdr, const watch_fd_t *fds)
{
    memo_gen_t *g = &m->gen[m->cur];
    size_t socks = 0;
    for (uint32_t i = 0; i < hdr->nkind; i++)
        socks += fds[i].kind == WK_SOCKET;
    if (scan_grow((void **)&g->v, &g->cap, g->n + 1, sizeof *g->v) ||
        scan_grow((void **)&g->fds, &g->fcap, g->nkinds + hdr->nkind, sizeof(uint32_t)) ||
        scan_grow((void **)&g->kinds, &g->kcap, g->nkinds + hdr->nkind, 1) ||
        scan_grow((void **)&g->inos, &g->icap, g->ninos + socks, sizeof(uint64_t)))
        return -ENOMEM;
    fd_memo_t *r = &g->v[g->n];
    *r = *hdr;
    r->kind_off = g->nkinds;
    r->ino_off = g->ninos;
    for (uint32_t i = 0; i < hdr->nkind; i++) {
        g->fds[g->nkinds] = fds[i].fd;
        g->kinds[g->nkinds++] = fds[i].kind;
        if (fds[i].kind == WK_SOCKET)
            g->inos[g->ninos++] = fds[i].ino;
    }
    if (g->n && g->v[g->n - 1].pid >= r->pid)
        g->sorted = 0;
    g->n++;
    return 0;
}

const uint32_t *memo_fds(const memo_t *m, const fd_memo_t *r)
{
    return m->gen[m->cur ^ 1].fds + r->kind_off;
}

const uint8_t *memo_kinds(const memo_t *m, const fd_memo_t *r)
{
    return m->gen[m->cur ^ 1].kinds + r->kind_off;
}

const uint64_t *memo_inos(const memo_t *m, const fd_memo_t *r)
{
    return m->gen[m->cur ^ 1].inos + r->ino_off;
}
