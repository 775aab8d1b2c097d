/*
 * fdinfo.h: a parser for /proc/<pid>/fdinfo/<fd> text, epoll's "tfd:" lines
 * above all. Zero-copy (it parses the caller's read buffer in place),
 * bounded (fixed buffer, capped total input) and total: any byte sequence
 * gives a result, never a crash (fuzz/fdinfo.c checks it).
 */
#ifndef HARK_WATCH_FDINFO_H
#define HARK_WATCH_FDINFO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One entry of an epoll interest list. */
typedef struct fdinfo_tfd {
    int fd;          /* the target fd number in the owner's table */
    uint32_t events; /* the interest mask (EPOLLIN ... EPOLLET, EPOLLEXCLUSIVE) */
    uint64_t data;   /* the user data word */
    uint64_t pos;    /* file position of the target */
    uint64_t ino;    /* inode of the target */
    uint32_t sdev;   /* device of the target */
} fdinfo_tfd_t;

typedef struct fdinfo_stats {
    uint32_t tfds;  /* well-formed tfd lines */
    uint32_t bad;   /* tfd lines that did not parse, and lines longer than the buffer */
    uint32_t lines; /* lines seen */
    uint64_t bytes; /* bytes read */
    int truncated;  /* stopped at FDINFO_MAX_BYTES */
    uint32_t flags; /* the "flags:" field (octal), when seen */
    int has_flags;
} fdinfo_stats_t;

/* The most fdinfo text read from one fd (about 350,000 interest entries). */
#define FDINFO_MAX_BYTES (32u << 20)

/*
 * Parses one line (no '\n'; need not be NUL-terminated). Returns 1 and fills
 * *out for a well-formed tfd line, 0 for any other line, -1 for a line that
 * starts with "tfd:" but is malformed (missing fd or events, overflow, junk).
 */
int fdinfo_parse_tfd(const char *line, size_t len, fdinfo_tfd_t *out);

typedef void (*fdinfo_tfd_cb)(const fdinfo_tfd_t *tfd, void *arg);

/*
 * Parses the complete lines of buf[0..len): calls cb for each tfd line and
 * counts into *st. With final set, a last line without '\n' counts too.
 * Returns the number of bytes consumed (up to and including the last '\n').
 */
size_t fdinfo_feed(const char *buf, size_t len, int final, fdinfo_tfd_cb cb, void *arg,
                   fdinfo_stats_t *st);

/* Reads at most cap bytes into buf: > 0 bytes, 0 at the end, or -errno. */
typedef ssize_t (*fdinfo_read_fn)(void *ctx, char *buf, size_t cap);

/*
 * Reads a whole fdinfo file through rd into the caller's buffer (cap >= 64;
 * the scanner passes a stack buffer), parsing in place; a line longer than
 * the buffer is skipped and counted bad. *st is zeroed first. Returns 0, or
 * the -errno of rd (what was parsed before stays counted).
 */
int fdinfo_stream(char *buf, size_t cap, fdinfo_read_fn rd, void *rctx, fdinfo_tfd_cb cb, void *arg,
                  fdinfo_stats_t *st);

#endif
