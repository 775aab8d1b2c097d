/*
 * Kinds of fds and of interest entries.
 *
 * Why two sources. An fd's kind comes from its /proc/<pid>/fd link: the only
 * place that tells an epoll from an eventfd (they share one anonymous inode).
 * An interest entry, though, describes the watched *file*, which may no
 * longer sit at the fd number the entry names: epoll keys an entry by (file,
 * number) and keeps it while the file lives, so a process can add a socket,
 * dup it elsewhere and close the number. Looked up in the fd table, such an
 * entry is "gone" (or, if the number was reused, whatever took it): a way to
 * hide sockets from a detector that counts them. fdinfo prints each entry's
 * own "sdev:" (the device of the watched file's filesystem), and every socket
 * lives on sockfs and every pipe on pipefs, each one kernel-wide superblock.
 * So sockets and pipes are told from the entry itself; for the rest (eventfd,
 * timerfd, signalfd, epoll and inotify share anon_inodefs; files are told by
 * their path) the fd table still decides, when the number holds a file of the
 * entry's family, and the entry is "gone" when it provably does not.
 *
 * The devices are learnt at start-up from a socket, a pipe and an eventfd of
 * our own: stat(2) gives them in the user encoding, fdinfo in the kernel's
 * ((major << 20) | minor, fs/eventpoll.c prints i_sb->s_dev), which differ
 * once a minor exceeds 255 (many mounts, containers), so we convert.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kind.h"

static const char *const kind_names[WK_KINDS] = {
    "socket", "pipe", "eventfd", "timerfd", "signalfd", "epoll", "inotify", "file", "other", "gone",
};

const char *watch_kind_name(int kind)
{
    return kind >= 0 && kind < WK_KINDS ? kind_names[kind] : "?";
}

int watch_kind_of_link(const char *t, size_t n, uint64_t *ino)
{
    *ino = 0;
    if (n > 8 && !memcmp(t, "socket:[", 8)) {
        for (size_t i = 8; i < n && t[i] >= '0' && t[i] <= '9'; i++)
            *ino = *ino * 10 + (uint64_t)(t[i] - '0');
        return WK_SOCKET;
    }
    if (n > 6 && !memcmp(t, "pipe:[", 6))
        return WK_PIPE;
    if (n > 0 && t[0] == '/')
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

static uint32_t dev_of(int fd, int *err)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        *err = -errno;
        return 0;
    }
    return (uint32_t)(major(st.st_dev) << 20 | minor(st.st_dev));
}

int watch_devs_learn(watch_devs_t *d)
{
    int err = 0, p[2] = {-1, -1};
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    d->sock = dev_of(s, &err);
    if (pipe2(p, O_CLOEXEC) < 0)
        p[0] = p[1] = -1;
    d->pipe = dev_of(p[0], &err);
    int e = eventfd(0, EFD_CLOEXEC);
    d->anon = dev_of(e, &err);
    if (s >= 0)
        close(s);
    if (p[0] >= 0) {
        close(p[0]);
        close(p[1]);
    }
    if (e >= 0)
        close(e);
    /* Distinct filesystems, or the numbers mean nothing: then the fd table alone decides. */
    if ((d->sock && (d->sock == d->pipe || d->sock == d->anon)) ||
        (d->pipe && d->pipe == d->anon)) {
        memset(d, 0, sizeof *d);
        return err ? err : -EINVAL;
    }
    return err;
}

static int is_anon_kind(int k)
{
    return k == WK_EVENTFD || k == WK_TIMERFD || k == WK_SIGNALFD || k == WK_EPOLL ||
           k == WK_INOTIFY;
}

int watch_entry_kind(const watch_devs_t *d, const fdinfo_tfd_t *t, const uint8_t *kind,
                     size_t nkind)
{
    return watch_entry_kind_at(d, t, t->fd >= 0 && (size_t)t->fd < nkind ? kind[t->fd] : WK_GONE);
}

int watch_entry_kind_at(const watch_devs_t *d, const fdinfo_tfd_t *t, int at)
{
    if (!t->sdev)
        return at; /* no sdev in this fdinfo: the table alone */
    if (d->sock && t->sdev == d->sock)
        return WK_SOCKET;
    if (d->pipe && t->sdev == d->pipe)
        return WK_PIPE;
    /* Not a socket or a pipe: the number must hold a file of the entry's family. */
    if ((at == WK_SOCKET && d->sock) || (at == WK_PIPE && d->pipe))
        return WK_GONE;
    if (at == WK_OTHER || !d->anon)
        return at; /* "other" spans both families */
    int anon_entry = t->sdev == d->anon;
    return is_anon_kind(at) == anon_entry ? at : WK_GONE;
}
