/* Helpers shared by the fs tests: a loop with an fs context, temp files, page-cache state. */
#ifndef HK_TEST_FS_UTIL_H
#define HK_TEST_FS_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hark.h"

/* The TSan build's stand-in for Criterion (tests/support/tsan) lacks these. */
#ifndef cr_skip_test
#define cr_skip_test(...)                                                                          \
    do {                                                                                           \
        fprintf(stderr, "skipped: " __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                                       \
        exit(0);                                                                                   \
    } while (0)
#endif
#ifndef cr_expect_eq
#define cr_expect_eq cr_assert_eq
#endif
#ifndef cr_assert_str_neq
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#endif

struct fx {
    hk_loop_t *loop;
    hk_fs_t *fs;
    char dir[256];
};

/* What a callback saw. */
struct done {
    int calls;
    int64_t result;
    unsigned served;
};

static inline void fx_on_done(hk_fs_req_t *req)
{
    struct done *d = req->data;
    d->calls++;
    d->result = req->result;
    d->served = req->served;
}

static inline void fx_setup(struct fx *fx, hk_fs_backend_t backend, unsigned flags)
{
    memset(fx, 0, sizeof(*fx));
    cr_assert_eq(hk_loop_new(&fx->loop, 0), 0);
    hk_fs_options_t o = {.backend = backend, .flags = flags};
    cr_assert_eq(hk_fs_new(fx->loop, &o, &fx->fs), 0);
    /* The build tree, not /tmp: tests need a disk file system (tmpfs never evicts). */
    const char *base = getenv("HK_TEST_TMPDIR");
    snprintf(fx->dir, sizeof(fx->dir), "%s/hk-fs-XXXXXX", base ? base : ".");
    cr_assert_not_null(mkdtemp(fx->dir), "mkdtemp: %s", strerror(errno));
}

static inline int fx_rm(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void fx_teardown(struct fx *fx)
{
    cr_assert_eq(hk_fs_free(fx->fs), 0);
    hk_loop_run(fx->loop, HK_RUN_NOWAIT); /* close callbacks of the io_uring watcher */
    cr_assert_eq(hk_loop_free(fx->loop), 0);
    nftw(fx->dir, fx_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Runs the loop until nothing is left to do; the request in flight keeps it
 * running (pool work, io_uring requests, a deferred inline completion).
 */
static inline void fx_wait(struct fx *fx, struct done *d)
{
    cr_assert_geq(hk_loop_run(fx->loop, HK_RUN_DEFAULT), 0);
    cr_assert_eq(d->calls, 1, "callback ran %d times", d->calls);
}

static inline void fx_path(const struct fx *fx, char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", fx->dir, name);
}

/* Byte i of the test pattern of file seed. */
static inline unsigned char fx_byte(unsigned seed, uint64_t i)
{
    return (unsigned char)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

/* Writes a file of size bytes of pattern seed, flushed to disk (so it can be evicted). */
static inline void fx_make_file(const char *path, size_t size, unsigned seed)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    unsigned char *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        buf[i] = fx_byte(seed, i);
    cr_assert_eq(write(fd, buf, size), (ssize_t)size);
    cr_assert_eq(fdatasync(fd), 0);
    free(buf);
    close(fd);
}

static inline int fx_check_pattern(const unsigned char *buf, size_t n, unsigned seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != fx_byte(seed, off + i))
            return 0;
    return 1;
}

/* Pages of [0, len) in the page cache, counted with mincore (no page is faulted in). */
static inline size_t fx_resident(int fd, size_t len, unsigned char *vec)
{
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    size_t pages = (len + 4095) / 4096, n = 0;
    cr_assert_eq(mincore(p, len, vec), 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    munmap(p, len);
    return n;
}

/*
 * Drops the file's pages from the page cache. Returns 1 when mincore then
 * sees none resident, 0 when this file system does not evict (tests skip).
 */
static inline int fx_evict(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    unsigned char *vec = malloc((len + 4095) / 4096 + 1);
    size_t n = fx_resident(fd, len, vec);
    free(vec);
    close(fd);
    return n == 0;
}

#endif
