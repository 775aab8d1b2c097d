/*
 * The /proc scanner.
 *
 * Why plain system calls: a scan touches every fd of every process; with
 * 1,000 processes of 20 fds that is 20,000 readlinks. stdio would add a
 * buffer allocation and a copy per file; lsof adds a stat() and more per fd.
 *
 * Per process: readlink of <pid>/exe, the fd table (fdtable.c: a getdents
 * pass over <pid>/fd and one readlink per fd, about three quarters of a
 * scan), then for each epoll set one open of <pid>/fdinfo/<n> and one read
 * into a reused 64 KiB buffer, parsed in place. Paths go from /proc, so the
 * pid directory itself is never opened. A full scan reuses the fd table of
 * a process that has not run since the last full scan (memo.c): then the
 * process costs the exe readlink, a CPU-clock read, a stat of <pid>/fd and
 * its fdinfo reads. Interest entries are classified by their own sdev and
 * the fd table (kind.c), with no system call per entry.
 *
 * Races are normal: a process may exit (ENOENT/ESRCH) or an fd may close
 * between the directory read and the readlink. Such a process is dropped and
 * counted ("gone"); a vanished fd is simply not counted. EACCES/EPERM (not
 * root, or another user's process) is counted as "denied".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdinfo.h"
#include "fdtable.h"
#include "scan.h"

void scanner_init(scanner_t *s, const char *proc_root)
{
    memset(s, 0, sizeof *s);
    snprintf(s->proc_root, sizeof s->proc_root, "%s", proc_root ? proc_root : "/proc");
    s->nshards = 1;
    /* Unknown devices (a sandbox without sockets) leave entries to the fd table alone. */
    (void)watch_devs_learn(&s->devs);
}

void scanner_shard(scanner_t *s, unsigned shard, unsigned nshards)
{
    s->shard = shard;
    s->nshards = nshards;
}

void scanner_memo(scanner_t *s, int on)
{
    s->no_memo = !on;
}

void scanner_free(scanner_t *s)
{
    memo_free(&s->memo);
    free(s->fds);
    free(s->epfds);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

void scan_free(scan_t *sc)
{
    free(sc->procs);
    free(sc->strings);
    free(sc->inodes);
    netinfo_free(&sc->net);
    memset(sc, 0, sizeof *sc);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int scan_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

struct entry_ctx {
    scanner_t *s;
    scan_t *sc;
    proc_rec_t *p;
    size_t nfd; /* entries of s->fds valid for this process */
    int oom;
};

static void on_tfd(const fdinfo_tfd_t *t, void *arg)
{
    struct entry_ctx *c = arg;
    proc_rec_t *p = c->p;
    const watch_fd_t *at = fd_table_find(c->s->fds, c->nfd, t->fd);
    int kind = watch_entry_kind_at(&c->s->devs, t, at ? at->kind : WK_GONE);
    p->entries++;
    p->kinds[kind]++;
    if (kind == WK_SOCKET && p->sock_n < SCAN_SOCKETS_PER_PROC) {
        if (scan_grow((void **)&c->sc->inodes, &c->sc->icap, c->sc->ninodes + 1,
                      sizeof(uint64_t))) {
            c->oom = 1;
            return;
        }
        /* The entry's own inode: right even if the fd number was reused. */
        uint64_t ino = t->ino;
        if (!ino && at)
            ino = at->ino;
        c->sc->inodes[c->sc->ninodes++] = ino;
        p->sock_n++;
    }
}

/*
 * Reads fdinfo. It is a single_open seq_file: one read returns the whole
 * text when it fits, so a read shorter than asked is the end, and the read
 * that would return 0 is not made.
 */
struct fdinfo_src {
    int fd;
    int eof;
};

static ssize_t read_fdinfo(void *ctx, char *buf, size_t cap)
{
    struct fdinfo_src *src = ctx;
    if (src->eof)
        return 0;
    for (;;) {
        ssize_t n = read(src->fd, buf, cap);
        if (n >= 0) {
            src->eof = (size_t)n < cap;
            return n;
        }
        if (errno != EINTR)
            return -errno;
    }
}

static int add_string(scan_t *sc, const char *s, size_t n, uint32_t *off)
{
    if (scan_grow((void **)&sc->strings, &sc->scap, sc->slen + n + 1, 1))
        return -ENOMEM;
    memcpy(sc->strings + sc->slen, s, n);
    sc->strings[sc->slen + n] = '\0';
    *off = (uint32_t)sc->slen;
    sc->slen += n + 1;
    return 0;
}

static const char *user_name(scanner_t *s, uid_t uid, char *tmp, size_t cap)
{
    for (size_t i = 0; i < s->nusers; i++)
        if (s->users[i].uid == uid)
            return s->users[i].name;
    struct passwd pw, *res = NULL;
    char pbuf[1024];
    snprintf(tmp, cap, "%u", (unsigned)uid);
    if (getpwuid_r(uid, &pw, pbuf, sizeof pbuf, &res) == 0 && res)
        snprintf(tmp, cap, "%s", res->pw_name);
    if (s->nusers < sizeof s->users / sizeof s->users[0]) {
        s->users[s->nusers].uid = uid;
        snprintf(s->users[s->nusers].name, sizeof s->users[0].name, "%s", tmp);
        return s->users[s->nusers++].name;
    }
    return tmp;
}

static void count_errno(scan_t *sc, int err)
{
    if (err == EACCES || err == EPERM)
        sc->denied++;
    else if (err == EFBIG)
        sc->truncated++;
    else
        sc->gone++;
}

/*
 * Opens /proc/<pid>/fd into *dfd and fstats it into *st, unless the memo
 * holds this process's table and the process has not run since (cpu is its
 * CPU clock now, -1 for no memo; then *dfd stays -1). Returns the memo
 * record to restore, or NULL; on failure returns NULL with *dfd -1 and the
 * errno in *err.
 */
static const fd_memo_t *open_fd_dir(scanner_t *s, int procfd, const char *base, pid_t pid,
                                    int64_t cpu, int *dfd, struct stat *st, int *err)
{
    char path[64];
    snprintf(path, sizeof path, "%s/fd", base);
    *dfd = -1;
    *err = 0;
    const fd_memo_t *m = cpu >= 0 ? memo_find(&s->memo, pid) : NULL;
    if (m) {
        if (fstatat(procfd, path, st, 0) < 0) {
            *err = errno;
            return NULL;
        }
        if (st->st_ino == m->dir_ino && (uint64_t)st->st_size == m->count &&
            (uint64_t)cpu == m->cpu_ns)
            return m;
    }
    *dfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dfd < 0 || fstat(*dfd, st) < 0) {
        *err = errno;
        if (*dfd >= 0)
            close(*dfd);
        *dfd = -1;
    }
    return NULL;
}

static const char *name_exe(char *path, size_t cap, const char *name)
{
    snprintf(path, cap, "%s/exe", name);
    return path;
}

/*
 * The leader of pid name has no exe link. A kernel thread or a zombie, unless
 * the leader exited alone (SYS_exit, not exit_group) and other threads run on:
 * then <pid>/exe and <pid>/fd are the dead leader's (no link, no fds), a way
 * to vanish from /proc-based tools. The process is still there through any
 * live thread, <pid>/task/<tid>, which has its exe, fd and fdinfo. Finds one:
 * 1 with base and exe filled, else 0.
 */
static int live_thread(int procfd, const char *name, char *base, size_t cap, char *exe, size_t ecap,
                       ssize_t *elen)
{
    char path[64];
    snprintf(path, sizeof path, "%s/task", name);
    int tfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tfd < 0)
        return 0;
    DIR *d = fdopendir(tfd);
    if (!d) {
        close(tfd);
        return 0;
    }
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9' || !strcmp(de->d_name, name))
            continue;
        int n = snprintf(base, cap, "%s/task/%s", name, de->d_name);
        if (n < 0 || (size_t)n >= cap)
            continue; /* not a thread id (they are short) */
        *elen = readlinkat(procfd, name_exe(path, sizeof path, base), exe, ecap);
        found = *elen >= 0;
    }
    closedir(d);
    return found;
}

/* Scans one process; returns 0 (recorded or skipped and counted) or -ENOMEM. */
static int scan_pid(scanner_t *s, int procfd, const char *name, scan_t *sc, int full)
{
    char path[96], exe[4096], base[48];
    snprintf(base, sizeof base, "%s", name); /* where exe, fd and fdinfo are read */
    ssize_t elen = readlinkat(procfd, name_exe(path, sizeof path, base), exe, sizeof exe);
    /* No exe link: maybe only the leader exited; then we read the process through a live thread. */
    if (elen < 0) {
        int err = errno;
        struct stat st;
        if (err != ENOENT ||
            !live_thread(procfd, name, base, sizeof base, exe, sizeof exe, &elen)) {
            if (err == ENOENT && fstatat(procfd, name, &st, 0) == 0)
                sc->kthreads++; /* kernel thread, or a zombie: nothing to watch */
            else
                count_errno(sc, err);
            return 0;
        }
    }
    pid_t pid = (pid_t)atoi(name);
    /* Only full scans use the memo. Read before the table: a change made meanwhile moves it. */
    int64_t cpu = full && !s->no_memo ? memo_cpu_ns(pid) : -1;
    int dfd, err;
    struct stat st; /* of fd/: the owner, and (Linux 6.2+) the number of open fds in st_size */
    const fd_memo_t *memo = open_fd_dir(s, procfd, base, pid, cpu, &dfd, &st, &err);
    if (!memo && dfd < 0) {
        count_errno(sc, err);
        return 0;
    }
    int r = 0, kept = 0;
    size_t inodes_at = sc->ninodes; /* a dropped process leaves no socket inodes behind */
    if (scan_grow((void **)&sc->procs, &sc->pcap, sc->nprocs + 1, sizeof *sc->procs)) {
        r = -ENOMEM;
        goto out;
    }
    proc_rec_t *p = &sc->procs[sc->nprocs];
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->uid = st.st_uid;
    p->sock_off = (uint32_t)sc->ninodes;
    s->nep = 0;
    fd_pass_t f = {.s = s, .sc = sc, .p = p, .dfd = dfd};
    r = memo ? fd_table_restore(&f, memo) : fd_table_read(&f);
    sc->reused += memo != NULL;
    if (r < 0 && r != -ENOMEM) {
        count_errno(sc, -r); /* gone (or denied) mid-scan: dropped, never a sample */
        r = 0;
        goto out;
    }
    if (r < 0)
        goto out;
    if (cpu >= 0) {
        fd_memo_t rec = {.pid = pid,
                         .nkind = (uint32_t)f.nfd,
                         .dir_ino = st.st_ino,
                         .count = (uint64_t)st.st_size,
                         .cpu_ns = (uint64_t)cpu};
        (void)memo_put(&s->memo, &rec, s->fds); /* no room: a full pass next time */
    }
    struct entry_ctx c = {s, sc, p, f.nfd, 0};
    int missed = 0, failed = 0;
    for (size_t i = 0; i < s->nep && !failed; i++) {
        snprintf(path, sizeof path, "%s/fdinfo/%d", base, s->epfds[i]);
        struct fdinfo_src src = {openat(procfd, path, O_RDONLY | O_CLOEXEC), 0};
        if (src.fd < 0) {
            if (errno == ENOENT)
                missed++; /* closed meanwhile, or the process is exiting: see below */
            else
                failed = errno;
            continue;
        }
        /* What this set adds, undone if its read fails part way. */
        proc_rec_t before = *p;
        size_t ninodes = sc->ninodes;
        fdinfo_stats_t fst;
        int rr = fdinfo_stream(s->buf, SCAN_BUF_SIZE, read_fdinfo, &src, on_tfd, &c, &fst);
        close(src.fd);
        if (rr == 0 && fst.truncated)
            rr = -EFBIG; /* cut at FDINFO_MAX_BYTES: not the whole set either */
        if (rr < 0) {
            *p = before;
            sc->ninodes = ninodes;
            if (rr == -ENOENT || rr == -ESRCH)
                missed++; /* the fd closed, or the process exited, after the open */
            else
                failed = -rr;
            continue;
        }
        p->epolls++;
        p->bad += fst.bad;
        sc->bad_lines += fst.bad;
    }
    /*
     * An epoll set that exists but could not be read in full (EACCES, EIO,
     * ENOMEM, ..., or EFBIG: cut at FDINFO_MAX_BYTES): the sample would be
     * the process minus (part of) that set, smaller than it is. Not a
     * sample: drop it and count it.
     */
    if (failed) {
        count_errno(sc, failed);
        goto out;
    }
    /*
     * An fd that was no longer there: an epoll fd (ENOENT at the open or the
     * read), an fd listed whose link then failed, or no fd listed at all (an
     * exited process lists none, without an error, until it is reaped), or
     * a listing that went on past a full getdents64 batch (an exit between
     * two calls ends it there, also without an error, after every link of
     * the batches before was read: the later fds are silently missing). If
     * the process itself is gone (its exe link goes when it exits, before its
     * fds are closed), what was read is a dying process's leftovers, not a
     * sample; drop it and count it as gone. If it lives, the fd was closed:
     * the set is not the process's any more, and is not counted, like any fd
     * closed between the listing and the readlink.
     */
    char probe[8]; /* only whether the link is still there */
    if ((missed || f.vanished || f.split || f.nfd == 0) &&
        readlinkat(procfd, name_exe(path, sizeof path, base), probe, sizeof probe) < 0) {
        count_errno(sc, errno);
        goto out;
    }
    char ubuf[32];
    const char *uname = user_name(s, p->uid, ubuf, sizeof ubuf);
    if (c.oom || add_string(sc, exe, (size_t)elen, &p->exe) < 0 ||
        add_string(sc, uname, strlen(uname), &p->user) < 0) {
        r = -ENOMEM;
        goto out;
    }
    sc->nprocs++;
    kept = 1;
out:
    if (!kept)
        sc->ninodes = inodes_at;
    if (dfd >= 0)
        close(dfd);
    return r;
}

static void scan_reset(scan_t *sc)
{
    sc->nprocs = sc->slen = sc->ninodes = 0;
    sc->gone = sc->denied = sc->kthreads = sc->reused = sc->bad_lines = sc->truncated = 0;
    sc->duration_ns = 0;
    sc->error = 0;
}

int scanner_run(scanner_t *s, const pid_t *pids, size_t npids, scan_t *sc)
{
    uint64_t t0 = now_ns();
    scan_reset(sc);
    if (!s->buf && !(s->buf = malloc(SCAN_BUF_SIZE))) {
        sc->error = -ENOMEM;
        return -ENOMEM;
    }
    int r = netinfo_load_listening(&sc->net, s->proc_root);
    if (r == -ENOMEM)
        goto done;
    r = 0;
    int procfd = open(s->proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0) {
        r = -errno;
        goto done;
    }
    if (pids) {
        for (size_t i = 0; i < npids && r >= 0; i++) {
            char name[16];
            snprintf(name, sizeof name, "%d", (int)pids[i]);
            r = scan_pid(s, procfd, name, sc, 0);
        }
    } else {
        if (!s->no_memo)
            memo_begin(&s->memo);
        DIR *d = fdopendir(dup(procfd));
        if (!d) {
            r = -errno;
        } else {
            struct dirent *de;
            while (r >= 0 && (de = readdir(d)))
                if (de->d_name[0] >= '1' && de->d_name[0] <= '9' &&
                    (s->nshards <= 1 || (unsigned)atoi(de->d_name) % s->nshards == s->shard))
                    r = scan_pid(s, procfd, de->d_name, sc, 1);
            closedir(d);
        }
    }
    close(procfd);
done:
    sc->error = r;
    sc->duration_ns = now_ns() - t0;
    return r;
}

int scan_merge(scan_t *dst, scan_t *const *parts, size_t n)
{
    scan_reset(dst);
    for (size_t i = 0; i < n; i++) {
        const scan_t *p = parts[i];
        if (p->error && !dst->error)
            dst->error = p->error;
        if (scan_grow((void **)&dst->procs, &dst->pcap, dst->nprocs + p->nprocs,
                      sizeof *dst->procs) ||
            scan_grow((void **)&dst->strings, &dst->scap, dst->slen + p->slen + 1, 1) ||
            scan_grow((void **)&dst->inodes, &dst->icap, dst->ninodes + p->ninodes + 1,
                      sizeof(uint64_t)))
            return -ENOMEM;
        for (size_t j = 0; j < p->nprocs; j++) {
            proc_rec_t *r = &dst->procs[dst->nprocs++];
            *r = p->procs[j];
            r->exe += (uint32_t)dst->slen;
            r->user += (uint32_t)dst->slen;
            r->sock_off += (uint32_t)dst->ninodes;
        }
        if (p->slen)
            memcpy(dst->strings + dst->slen, p->strings, p->slen);
        dst->slen += p->slen;
        if (p->ninodes)
            memcpy(dst->inodes + dst->ninodes, p->inodes, p->ninodes * sizeof(uint64_t));
        dst->ninodes += p->ninodes;
        dst->gone += p->gone;
        dst->denied += p->denied;
        dst->kthreads += p->kthreads;
        dst->reused += p->reused;
        dst->bad_lines += p->bad_lines;
        dst->truncated += p->truncated;
        if (p->duration_ns > dst->duration_ns)
            dst->duration_ns = p->duration_ns;
    }
    return dst->error;
}
