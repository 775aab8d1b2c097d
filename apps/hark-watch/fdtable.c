/*
 * One process's fd table: one readlink per fd of /proc/<pid>/fd, the only
 * place that tells an epoll from an eventfd (they share one anonymous
 * inode) and gives a socket's inode for the listening check.
 *
 * What we measured and did not keep (bench/watch, perf): probing 0, 1, 2,
 * ... up to the open-fd count of fstat(fd/) instead of listing the
 * directory saves the getdents calls but not their cost, which is a dcache
 * lookup per name (proc_fill_cache): the readlinks then miss the cache in
 * the same lookups instead. Same time within 1 %, so the plain listing.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "fdtable.h"

/*
 * An fd number as /proc names it: decimal, no sign, no leading zero, 0 to
 * INT_MAX (fs.nr_open can be raised that far). -1 for anything else: a
 * bigger number is not an fd, and must not wrap onto a small one.
 */
static int parse_fdnum(const char *s)
{
    int v = 0;
    if (!*s || (s[0] == '0' && s[1]))
        return -1;
    for (; *s; s++) {
        int d = *s - '0';
        if (d < 0 || d > 9 || v > (INT_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    return v;
}

/* Records open fd number fd of the given kind (socket inode ino). Returns 0 or -ENOMEM. */
static int note_fd(fd_pass_t *f, unsigned fd, int kind, uint64_t ino)
{
    scanner_t *s = f->s;
    if (scan_grow((void **)&s->fds, &s->fdcap, f->nfd + 1, sizeof *s->fds) < 0)
        return -ENOMEM;
    if (f->nfd && s->fds[f->nfd - 1].fd >= fd)
        f->unsorted = 1;
    s->fds[f->nfd++] = (watch_fd_t){.ino = ino, .fd = fd, .kind = (uint8_t)kind};
    f->p->fds++;
    if (kind == WK_SOCKET) {
        const net_sock_t *ns = netinfo_find(&f->sc->net, ino);
        if (ns && ns->listening)
            f->p->listening++;
    } else if (kind == WK_EPOLL) {
        if (scan_grow((void **)&s->epfds, &s->epcap, s->nep + 1, sizeof(int)))
            return -ENOMEM;
        s->epfds[s->nep++] = (int)fd;
    }
    return 0;
}

static int cmp_fd(const void *a, const void *b)
{
    uint32_t x = ((const watch_fd_t *)a)->fd, y = ((const watch_fd_t *)b)->fd;
    return (x > y) - (x < y);
}

/* The table is searched by number: sort it if the listing was not in order. */
static void table_sort(fd_pass_t *f)
{
    if (f->unsorted)
        qsort(f->s->fds, f->nfd, sizeof *f->s->fds, cmp_fd);
    f->unsorted = 0;
}

const watch_fd_t *fd_table_find(const watch_fd_t *v, size_t n, int fd)
{
    if (fd < 0)
        return NULL;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].fd < (uint32_t)fd)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].fd == (uint32_t)fd ? &v[lo] : NULL;
}

/* Reads fd number fd's link and records it; returns 0 or -ENOMEM. */
static int look_fd(fd_pass_t *f, unsigned fd, const char *name)
{
    char t[256];
    ssize_t n = readlinkat(f->dfd, name, t, sizeof t - 1);
    if (n <= 0) {
        f->vanished = 1; /* closed meanwhile, or the process exited: scan.c tells which */
        return 0;
    }
    uint64_t ino;
    int kind = watch_kind_of_link(t, (size_t)n, &ino);
    return note_fd(f, fd, kind, ino);
}

/*
 * The longest record getdents64 gives an fd name (ten digits and a NUL after
 * the fixed part, in 8-byte steps). A batch stops early only when the next
 * record would not fit, so one that ends closer than this to the buffer's
 * end may have stopped for room, and the listing goes on in the next call.
 */
#define FD_DIRENT_MAX ((offsetof(struct dirent64, d_name) + 11 + 7) & ~(size_t)7)

int fd_table_read(fd_pass_t *f)
{
    char *dents = f->s->buf; /* getdents64 into the scanner's buffer: no DIR allocation */
    ssize_t dn;
    while ((dn = getdents64(f->dfd, dents, SCAN_BUF_SIZE)) > 0) {
        /*
         * The next call lists the rest, unless the process exits in between:
         * the kernel then lists its fd table, gone, as empty, with no error,
         * and every link read so far was there. scan.c checks such a table.
         */
        if ((size_t)dn > SCAN_BUF_SIZE - FD_DIRENT_MAX)
            f->split = 1;
        for (size_t off = 0; off < (size_t)dn;) {
            struct dirent64 *de = (struct dirent64 *)(dents + off);
            off += de->d_reclen;
            int fd = parse_fdnum(de->d_name);
            if (fd >= 0 && look_fd(f, (unsigned)fd, de->d_name) < 0)
                return -ENOMEM;
        }
    }
    /* ENOENT (ESRCH): the process exited while its table was read. */
    if (dn < 0)
        return -errno;
    table_sort(f);
    return 0;
}

int fd_table_restore(fd_pass_t *f, const fd_memo_t *m)
{
    const uint32_t *fds = memo_fds(&f->s->memo, m);
    const uint8_t *kind = memo_kinds(&f->s->memo, m);
    const uint64_t *ino = memo_inos(&f->s->memo, m);
    for (uint32_t i = 0; i < m->nkind; i++)
        if (note_fd(f, fds[i], kind[i], kind[i] == WK_SOCKET ? *ino++ : 0) < 0)
            return -ENOMEM;
    table_sort(f);
    return 0;
}
