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
#include <unistd.h>

#include "fdtable.h"

static int parse_fdnum(const char *s)
{
    long v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return (int)v;
}

/* Makes room for fd numbers below n in the scanner's per-fd tables. */
static int table_room(scanner_t *s, size_t n)
{
    if (n <= s->fdcap)
        return 0;
    size_t kc = s->fdcap, ic = s->fdcap;
    if (scan_grow((void **)&s->kind, &kc, n, 1) ||
        scan_grow((void **)&s->ino, &ic, n, sizeof(uint64_t)))
        return -ENOMEM;
    s->fdcap = kc < ic ? kc : ic;
    return 0;
}

/* Records open fd number fd of the given kind (socket inode ino). Returns 0 or -ENOMEM. */
static int note_fd(fd_pass_t *f, unsigned fd, int kind, uint64_t ino)
{
    scanner_t *s = f->s;
    if (table_room(s, (size_t)fd + 1) < 0)
        return -ENOMEM;
    while (f->fdmax <= fd)
        s->kind[f->fdmax++] = WK_GONE; /* holes: closed fd numbers */
    s->kind[fd] = (uint8_t)kind;
    s->ino[fd] = ino;
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

/* Reads fd number fd's link and records it; returns 0 or -ENOMEM. */
static int look_fd(fd_pass_t *f, unsigned fd, const char *name)
{
    char t[256];
    ssize_t n = readlinkat(f->dfd, name, t, sizeof t - 1);
    if (n <= 0)
        return 0; /* closed meanwhile */
    uint64_t ino;
    int kind = watch_kind_of_link(t, (size_t)n, &ino);
    return note_fd(f, fd, kind, ino);
}

int fd_table_read(fd_pass_t *f)
{
    char *dents = f->s->buf; /* getdents64 into the scanner's buffer: no DIR allocation */
    ssize_t dn;
    while ((dn = getdents64(f->dfd, dents, SCAN_BUF_SIZE)) > 0) {
        for (size_t off = 0; off < (size_t)dn;) {
            struct dirent64 *de = (struct dirent64 *)(dents + off);
            off += de->d_reclen;
            int fd = parse_fdnum(de->d_name);
            if (fd >= 0 && look_fd(f, (unsigned)fd, de->d_name) < 0)
                return -ENOMEM;
        }
    }
    /* ENOENT (ESRCH): the process exited while its table was read. */
    return dn < 0 ? -errno : 0;
}

int fd_table_restore(fd_pass_t *f, const fd_memo_t *m)
{
    const uint8_t *kind = memo_kinds(&f->s->memo, m);
    const uint64_t *ino = memo_inos(&f->s->memo, m);
    if (table_room(f->s, m->nkind) < 0)
        return -ENOMEM;
    for (unsigned fd = 0; fd < m->nkind; fd++) {
        if (kind[fd] == WK_GONE) {
            f->s->kind[f->fdmax++] = WK_GONE;
            continue;
        }
        if (note_fd(f, fd, kind[fd], kind[fd] == WK_SOCKET ? *ino++ : 0) < 0)
            return -ENOMEM;
    }
    return 0;
}
