/*
 * kind.h: what an fd or an epoll interest entry is (socket, pipe, eventfd,
 * ...), from the text of its /proc/<pid>/fd link or from the device number
 * that epoll's fdinfo prints for the watched file.
 */
#ifndef HARK_WATCH_KIND_H
#define HARK_WATCH_KIND_H

#include <stddef.h>
#include <stdint.h>

#include "fdinfo.h"

enum watch_kind {
    WK_SOCKET,
    WK_PIPE,
    WK_EVENTFD,
    WK_TIMERFD,
    WK_SIGNALFD,
    WK_EPOLL,
    WK_INOTIFY,
    WK_FILE,
    WK_OTHER,
    WK_GONE, /* the entry's fd number no longer holds the watched file (dup'd, then closed) */
    WK_KINDS
};

const char *watch_kind_name(int kind);

/*
 * Classifies the text of a /proc/<pid>/fd/<n> link ("socket:[123]",
 * "pipe:[7]", "anon_inode:[eventfd]", "/path", ...); for a socket, *ino is
 * its inode, otherwise 0.
 */
int watch_kind_of_link(const char *text, size_t len, uint64_t *ino);

/*
 * The devices of the kernel's pseudo-filesystems for sockets (sockfs),
 * pipes (pipefs) and anonymous inodes (eventfd, timerfd, signalfd, epoll,
 * inotify), in the kernel's encoding ((major << 20) | minor), which is what
 * fdinfo's "sdev:" prints. 0 = unknown.
 */
typedef struct watch_devs {
    uint32_t sock, pipe, anon;
} watch_devs_t;

/* Learns them by fstat'ing a socket, a pipe and an eventfd of our own. Returns 0 or -errno. */
int watch_devs_learn(watch_devs_t *d);

/*
 * The kind of one interest entry. Sockets and pipes are told by the entry's
 * own sdev, which describes the watched file itself; the other kinds share
 * a device (anon_inodefs) or are told only by their path, so they come from
 * the per-fd table (kind[fd] for fd < nkind, holes WK_GONE), read from the
 * fd links, when the number still holds a file of the entry's family.
 */
int watch_entry_kind(const watch_devs_t *d, const fdinfo_tfd_t *t, const uint8_t *kind,
                     size_t nkind);

/* The same, given what the table holds at the entry's fd number (WK_GONE: nothing). */
int watch_entry_kind_at(const watch_devs_t *d, const fdinfo_tfd_t *t, int at);

/* One open fd of a process's table: its number, kind and (sockets) inode. */
typedef struct watch_fd {
    uint64_t ino;
    uint32_t fd;
    uint8_t kind;
} watch_fd_t;

#endif
