/*
 * The /proc scanner.
 *
 * Why plain system calls: a scan touches every fd of every process; with
 * 1,000 processes of 20 fds that is 20,000 readlinks. stdio would add a
 * buffer allocation and a copy per file; lsof adds a stat() and more per fd.
 * We do openat on the pid directory, one getdents pass over fd/ (through
 * opendir, whose buffer is allocated once per process), one readlinkat per
 * fd into a stack buffer, and for epoll fds one openat + read of fdinfo/<fd>
 * into a stack buffer parsed in place. The kind of each watched fd comes
 * from the same readlink pass (a per-fd table), so resolving an interest
 * entry costs no system call at all.
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
#include "scan.h"

static const char *const kind_names[WK_KINDS] = {
    "socket", "pipe", "eventfd", "timerfd", "signalfd", "epoll", "inotify", "file", "other", "gone",
};

const char *watch_kind_name(int kind)
{
    return kind >= 0 && kind < WK_KINDS ? kind_names[kind] : "?";
}

void scanner_init(scanner_t *s, const char *proc_root)
{
    memset(s, 0, sizeof *s);
    snprintf(s->proc_root, sizeof s->proc_root, "%s", proc_root ? proc_root : "/proc");
    s->nshards = 1;
}

void scanner_shard(scanner_t *s, unsigned shard, unsigned nshards)
{
    s->shard = shard;
    s->nshards = nshards;
}

void scanner_free(scanner_t *s)
{
    free(s->kind);
    free(s->ino);
    free(s->epfds);
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

static int grow(void **p, size_t *cap, size_t need, size_t elem)
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

static int classify(const char *t, size_t n, uint64_t *ino)
{
    *ino = 0;
    if (n > 8 && !memcmp(t, "socket:[", 8)) {
        for (size_t i = 8; i < n && t[i] >= '0' && t[i] <= '9'; i++)
            *ino = *ino * 10 + (uint64_t)(t[i] - '0');
        return WK_SOCKET;
    }
    if (n > 6 && !memcmp(t, "pipe:[", 6))
        return WK_PIPE;
    if (t[0] == '/')
        return WK_FILE;
    if (n > 11 && !memcmp(t, "anon_inode:", 11)) {
        const char *a = t + 11;
        size_t m = n - 11;
        if (m == 9 && !memcmp(a, "[eventfd]", 9))
            return WK_EVENTFD;
        if (m == 9 && !memcmp(a, "[timerfd]", 9))
            return WK_TIMERFD;
        if (m == 10 && !memcmp(a, "[signalfd]", 10))
            return WK_SIGNALFD;
        if (m == 11 && !memcmp(a, "[eventpoll]", 11))
            return WK_EPOLL;
        if (m == 7 && !memcmp(a, "inotify", 7))
            return WK_INOTIFY;
    }
    return WK_OTHER;
}

struct entry_ctx {
    scanner_t *s;
    scan_t *sc;
    proc_rec_t *p;
    size_t fdmax; /* table size valid for this process */
    int oom;
};

static void on_tfd(const fdinfo_tfd_t *t, void *arg)
{
    struct entry_ctx *c = arg;
    proc_rec_t *p = c->p;
    int kind = (size_t)t->fd < c->fdmax ? c->s->kind[t->fd] : WK_GONE;
    p->entries++;
    p->kinds[kind]++;
    if (kind == WK_SOCKET && p->sock_n < SCAN_SOCKETS_PER_PROC) {
        if (grow((void **)&c->sc->inodes, &c->sc->icap, c->sc->ninodes + 1, sizeof(uint64_t))) {
            c->oom = 1;
            return;
        }
        /* The entry's own inode: right even if the fd number was reused. */
        c->sc->inodes[c->sc->ninodes++] = t->ino ? t->ino : c->s->ino[t->fd];
        p->sock_n++;
    }
}

static ssize_t read_fd(void *ctx, char *buf, size_t cap)
{
    for (;;) {
        ssize_t n = read(*(int *)ctx, buf, cap);
        if (n >= 0 || errno != EINTR)
            return n < 0 ? -errno : n;
    }
}

static int add_string(scan_t *sc, const char *s, size_t n, uint32_t *off)
{
    if (grow((void **)&sc->strings, &sc->scap, sc->slen + n + 1, 1))
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
    else
        sc->gone++;
}

/* Scans one process; returns 0 (recorded or skipped and counted) or -ENOMEM. */
static int scan_pid(scanner_t *s, int procfd, const char *name, scan_t *sc)
{
    int pfd = openat(procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        count_errno(sc, errno);
        return 0;
    }
    int r = 0;
    int dfd = -1;
    struct stat st;
    char exe[4096];
    ssize_t elen = readlinkat(pfd, "exe", exe, sizeof exe);
    if (elen < 0) {
        if (errno == ENOENT)
            sc->kthreads++; /* kernel thread, or a zombie: nothing to watch */
        else
            count_errno(sc, errno);
        goto out;
    }
    if (fstat(pfd, &st) < 0) {
        count_errno(sc, errno);
        goto out;
    }
    dfd = openat(pfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        count_errno(sc, errno);
        goto out;
    }
    if (grow((void **)&sc->procs, &sc->pcap, sc->nprocs + 1, sizeof *sc->procs)) {
        r = -ENOMEM;
        goto out;
    }
    proc_rec_t *p = &sc->procs[sc->nprocs];
    memset(p, 0, sizeof *p);
    p->pid = (pid_t)atoi(name);
    p->uid = st.st_uid;
    p->sock_off = (uint32_t)sc->ninodes;
    size_t fdmax = 0;
    s->nep = 0;
    /* getdents64 into a stack buffer: no DIR allocation, no fstat/fcntl of fdopendir. */
    _Alignas(struct dirent64) char dents[16384];
    ssize_t dn = 0;
    size_t doff = 0;
    while ((dn = doff ? dn : getdents64(dfd, dents, sizeof dents)) > 0) {
        struct dirent64 *de = (struct dirent64 *)(dents + doff);
        doff += de->d_reclen;
        if (doff >= (size_t)dn)
            doff = 0;
        int fd = parse_fdnum(de->d_name);
        if (fd < 0)
            continue;
        char t[256];
        ssize_t n = readlinkat(dfd, de->d_name, t, sizeof t - 1);
        if (n <= 0)
            continue; /* closed meanwhile */
        t[n] = '\0';
        if ((size_t)fd >= s->fdcap) {
            size_t kc = s->fdcap, ic = s->fdcap;
            if (grow((void **)&s->kind, &kc, (size_t)fd + 1, 1) ||
                grow((void **)&s->ino, &ic, (size_t)fd + 1, sizeof(uint64_t))) {
                r = -ENOMEM;
                goto out;
            }
            s->fdcap = kc < ic ? kc : ic;
        }
        while (fdmax <= (size_t)fd)
            s->kind[fdmax++] = WK_GONE; /* holes: closed fd numbers */
        uint64_t ino;
        int kind = classify(t, (size_t)n, &ino);
        s->kind[fd] = (uint8_t)kind;
        s->ino[fd] = ino;
        p->fds++;
        if (kind == WK_SOCKET) {
            const net_sock_t *ns = netinfo_find(&sc->net, ino);
            if (ns && ns->listening)
                p->listening++;
        } else if (kind == WK_EPOLL) {
            if (grow((void **)&s->epfds, &s->epcap, s->nep + 1, sizeof(int))) {
                r = -ENOMEM;
                goto out;
            }
            s->epfds[s->nep++] = fd;
        }
    }
    struct entry_ctx c = {s, sc, p, fdmax, 0};
    for (size_t i = 0; i < s->nep; i++) {
        char path[32];
        snprintf(path, sizeof path, "fdinfo/%d", s->epfds[i]);
        int ifd = openat(pfd, path, O_RDONLY | O_CLOEXEC);
        if (ifd < 0)
            continue; /* closed meanwhile, or the process is exiting */
        char buf[4096];
        fdinfo_stats_t fst;
        int rr = fdinfo_stream(buf, sizeof buf, read_fd, &ifd, on_tfd, &c, &fst);
        close(ifd);
        if (rr < 0)
            continue;
        p->epolls++;
        p->bad += fst.bad;
        sc->bad_lines += fst.bad;
        sc->truncated += fst.truncated != 0;
    }
    char ubuf[32];
    const char *uname = user_name(s, p->uid, ubuf, sizeof ubuf);
    if (c.oom || add_string(sc, exe, (size_t)elen, &p->exe) < 0 ||
        add_string(sc, uname, strlen(uname), &p->user) < 0) {
        r = -ENOMEM;
        goto out;
    }
    sc->nprocs++;
out:
    if (dfd >= 0)
        close(dfd);
    close(pfd);
    return r;
}

static void scan_reset(scan_t *sc)
{
    sc->nprocs = sc->slen = sc->ninodes = 0;
    sc->gone = sc->denied = sc->kthreads = sc->bad_lines = sc->truncated = 0;
    sc->duration_ns = 0;
    sc->error = 0;
}

int scanner_run(scanner_t *s, const pid_t *pids, size_t npids, scan_t *sc)
{
    uint64_t t0 = now_ns();
    scan_reset(sc);
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
            r = scan_pid(s, procfd, name, sc);
        }
    } else {
        DIR *d = fdopendir(dup(procfd));
        if (!d) {
            r = -errno;
        } else {
            struct dirent *de;
            while (r >= 0 && (de = readdir(d)))
                if (de->d_name[0] >= '1' && de->d_name[0] <= '9' &&
                    (s->nshards <= 1 || (unsigned)atoi(de->d_name) % s->nshards == s->shard))
                    r = scan_pid(s, procfd, de->d_name, sc);
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
        if (grow((void **)&dst->procs, &dst->pcap, dst->nprocs + p->nprocs, sizeof *dst->procs) ||
            grow((void **)&dst->strings, &dst->scap, dst->slen + p->slen + 1, 1) ||
            grow((void **)&dst->inodes, &dst->icap, dst->ninodes + p->ninodes + 1,
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
        dst->bad_lines += p->bad_lines;
        dst->truncated += p->truncated;
        if (p->duration_ns > dst->duration_ns)
            dst->duration_ns = p->duration_ns;
    }
    return dst->error;
}
