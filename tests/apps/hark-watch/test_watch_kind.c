/*
 * Kinds of fds and interest entries (apps/hark-watch/kind.c): the devices
 * learnt at start-up match what this kernel's epoll fdinfo prints for a
 * socket, a pipe and an eventfd; entries are told by their own sdev when it
 * says socket or pipe, and by the fd table otherwise, "gone" when the number
 * provably holds another family; the link texts.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdinfo.h"
#include "kind.h"

struct entries {
    fdinfo_tfd_t v[16];
    int n;
};

static void collect(const fdinfo_tfd_t *t, void *arg)
{
    struct entries *e = arg;
    if (e->n < 16)
        e->v[e->n++] = *t;
}

static ssize_t rd(void *ctx, char *buf, size_t cap)
{
    ssize_t n = read(*(int *)ctx, buf, cap);
    return n < 0 ? -1 : n;
}

static int link_kind(int fd)
{
    char path[64], t[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, t, sizeof t);
    cr_assert_gt(n, 0);
    uint64_t ino;
    return watch_kind_of_link(t, (size_t)n, &ino);
}

Test(kind, learnt_devices_match_the_sdev_of_epoll_fdinfo)
{
    watch_devs_t d;
    cr_assert_eq(watch_devs_learn(&d), 0);
    cr_assert(d.sock && d.pipe && d.anon);
    cr_assert(d.sock != d.pipe && d.sock != d.anon && d.pipe != d.anon);

    int ep = epoll_create1(EPOLL_CLOEXEC), sv[2], p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int efd = eventfd(0, EFD_CLOEXEC);
    int watched[] = {sv[0], p[0], efd};
    for (int i = 0; i < 3; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = watched[i]};
        cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, watched[i], &ev), 0);
    }
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    struct entries e = {.n = 0};
    fdinfo_stats_t st;
    cr_assert_eq(fdinfo_stream(buf, sizeof buf, rd, &fd, collect, &e, &st), 0);
    close(fd);
    cr_assert_eq(e.n, 3);

    uint8_t table[256];
    memset(table, WK_GONE, sizeof table);
    for (int i = 0; i < 3; i++)
        table[watched[i]] = (uint8_t)link_kind(watched[i]);
    const int want[] = {WK_SOCKET, WK_PIPE, WK_EVENTFD};
    const uint32_t dev[] = {d.sock, d.pipe, d.anon};
    for (int i = 0; i < e.n; i++) {
        int j = e.v[i].fd == sv[0] ? 0 : e.v[i].fd == p[0] ? 1 : 2;
        cr_assert_eq(e.v[i].fd, watched[j]);
        cr_assert_eq(e.v[i].sdev, dev[j], "fd %d: sdev %x, learnt %x", e.v[i].fd, e.v[i].sdev,
                     dev[j]);
        cr_assert_eq(watch_entry_kind(&d, &e.v[i], table, sizeof table), want[j]);
    }
    close(ep);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    close(efd);
}

Test(kind, entries_by_sdev_and_table)
{
    const watch_devs_t d = {.sock = 9, .pipe = 0xf, .anon = 0x10}, none = {0, 0, 0};
    const uint32_t disk = 0x800001; /* (8 << 20) | 1: sda1 in the kernel's encoding */
    uint8_t table[9];
    memset(table, WK_GONE, sizeof table);
    table[3] = WK_EVENTFD;
    table[4] = WK_PIPE;
    table[5] = WK_SOCKET;
    table[6] = WK_FILE;
    table[7] = WK_OTHER;
    static const struct {
        int known; /* devices learnt */
        int fd;
        uint32_t sdev;
        int want;
        const char *why;
    } cases[] = {
        /* Sockets and pipes by their own sdev, wherever their number went. */
        {1, 5, 9, WK_SOCKET, "socket at its number"},
        {1, 8, 9, WK_SOCKET, "dup'd, then closed: still a socket"},
        {1, 100, 9, WK_SOCKET, "beyond the table"},
        {1, 4, 9, WK_SOCKET, "number reused by a pipe"},
        {1, 5, 0xf, WK_PIPE, "pipe, number reused by a socket"},
        {1, 8, 0xf, WK_PIPE, "pipe, number closed"},
        /* Anonymous inodes: the table's subtype, if the number holds one. */
        {1, 3, 0x10, WK_EVENTFD, "eventfd at its number"},
        {1, 4, 0x10, WK_GONE, "number holds a pipe now"},
        {1, 5, 0x10, WK_GONE, "number holds a socket now"},
        {1, 6, 0x10, WK_GONE, "number holds a file now"},
        {1, 7, 0x10, WK_OTHER, "other spans both families"},
        {1, 8, 0x10, WK_GONE, "number closed"},
        /* Files: the table, unless the number holds an anonymous inode or a socket. */
        {1, 6, disk, WK_FILE, "file at its number"},
        {1, 7, disk, WK_OTHER, "other on a disk"},
        {1, 3, disk, WK_GONE, "number holds an eventfd now"},
        {1, 5, disk, WK_GONE, "number holds a socket now"},
        /* No sdev in the line (an old kernel), or devices unknown: the table alone. */
        {1, 5, 0, WK_SOCKET, "no sdev: socket by the table"},
        {1, 4, 0, WK_PIPE, "no sdev: pipe by the table"},
        {1, 8, 0, WK_GONE, "no sdev: closed number"},
        {0, 3, 0x10, WK_EVENTFD, "no devices: eventfd by the table"},
        {0, 5, 9, WK_SOCKET, "no devices: socket by the table"},
        {0, 8, 9, WK_GONE, "no devices: closed number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fdinfo_tfd_t t = {.fd = cases[i].fd, .events = 1, .ino = 77, .sdev = cases[i].sdev};
        int got = watch_entry_kind(cases[i].known ? &d : &none, &t, table, sizeof table);
        cr_assert_eq(got, cases[i].want, "%s: got %s", cases[i].why, watch_kind_name(got));
    }
}

Test(kind, link_texts)
{
    uint64_t ino;
    cr_assert_eq(watch_kind_of_link("socket:[123]", 12, &ino), WK_SOCKET);
    cr_assert_eq(ino, 123);
    cr_assert_eq(watch_kind_of_link("pipe:[5]", 8, &ino), WK_PIPE);
    cr_assert_eq(ino, 0);
    cr_assert_eq(watch_kind_of_link("anon_inode:[eventpoll]", 22, &ino), WK_EPOLL);
    cr_assert_eq(watch_kind_of_link("anon_inode:[eventfd]", 20, &ino), WK_EVENTFD);
    cr_assert_eq(watch_kind_of_link("anon_inode:[timerfd]", 20, &ino), WK_TIMERFD);
    cr_assert_eq(watch_kind_of_link("anon_inode:[signalfd]", 21, &ino), WK_SIGNALFD);
    cr_assert_eq(watch_kind_of_link("anon_inode:inotify", 18, &ino), WK_INOTIFY);
    cr_assert_eq(watch_kind_of_link("anon_inode:[pidfd]", 18, &ino), WK_OTHER);
    cr_assert_eq(watch_kind_of_link("/dev/null", 9, &ino), WK_FILE);
    cr_assert_eq(watch_kind_of_link("net:[4026531840]", 16, &ino), WK_OTHER);
    cr_assert_eq(watch_kind_of_link("", 0, &ino), WK_OTHER);
    cr_assert_str_eq(watch_kind_name(WK_GONE), "gone");
    cr_assert_str_eq(watch_kind_name(WK_KINDS), "?");
}
