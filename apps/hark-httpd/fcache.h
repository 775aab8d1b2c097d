/*
 * The open-file cache of one worker: open fds of recently served files with
 * what their responses need (size, ETag, Last-Modified, MIME type) and, for
 * small files, their bytes, so that a hot file costs no open, no stat and
 * for small ones no sendfile: the response is one write of header + body.
 *
 * Entries are reference counted: a response in flight keeps its file open
 * even if the entry is evicted or replaced meanwhile. Freshness: an entry is
 * trusted for ttl after it was validated; then the next request opens the
 * path again (off the loop when the dentry is cold) and keeps the entry if
 * the inode, size, mtime and ctime are unchanged, to the nanosecond (a file
 * rewritten in place within one second at the same size is noticed).
 */
#ifndef HTTPD_FCACHE_H
#define HTTPD_FCACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/*
 * The cache's name for a root directory: the configuration generation and
 * the root's fd number. Not the fd number alone: after a reload the kernel
 * gives an old generation's closed numbers to new roots, and a cache keyed by
 * number served an earlier root's files.
 */
static inline uint64_t httpd_root_key(unsigned gen_id, int root_fd)
{
    return (uint64_t)gen_id << 32 | (uint32_t)root_fd;
}

/* Files up to this size are kept in memory and sent with the header in one write. */
#define HTTPD_SMALL_FILE 16384

typedef struct httpd_file {
    struct httpd_file *hnext;         /* hash chain */
    struct httpd_file *lprev, *lnext; /* LRU list, most recent first */
    unsigned refs;
    bool cached;
    bool absent;   /* a path found missing (gzip_static's probe): no fd, no data */
    uint64_t root; /* httpd_root_key: the generation and the root's fd number */
    uint32_t hash;
    int fd;
    uint64_t size;
    time_t mtime;               /* seconds: Last-Modified and the date preconditions */
    struct timespec mtim, ctim; /* what httpd_file_same compares */
    ino_t ino;
    dev_t dev;
    uint64_t validated; /* loop time of the last check */
    const char *mime;
    char *data; /* the bytes of a small file, NULL for larger ones */
    unsigned etag_len;
    char etag[56];
    char lastmod[32];
    size_t path_len;
    char path[]; /* relative to the root, NUL-terminated */
} httpd_file_t;

typedef struct httpd_fcache httpd_fcache_t;

/* cap 0: nothing is kept (every file is opened per request). */
httpd_fcache_t *httpd_fcache_new(unsigned cap, uint64_t ttl_ns);
void httpd_fcache_free(httpd_fcache_t *c);
/* A reload's open_file_ttl (the capacity, open_file_cache, needs a restart). */
void httpd_fcache_set_ttl(httpd_fcache_t *c, uint64_t ttl_ns);

/*
 * The entry for (root, path) with a new reference, or NULL; *fresh says
 * whether it was validated within the ttl (a stale one must be revalidated).
 */
httpd_file_t *httpd_fcache_get(httpd_fcache_t *c, uint64_t root, const char *path, size_t len,
                               uint64_t now, bool *fresh);

/*
 * A new file from an open fd (taken over) and its stat: refs 1, not cached.
 * NULL on ENOMEM (fd is then closed).
 */
httpd_file_t *httpd_file_new(uint64_t root, const char *path, size_t len, int fd,
                             const struct stat *st, uint64_t now);

/*
 * An entry saying that path does not exist (or is no regular file), so that
 * gzip_static does not try to open path.gz again on every request for a file
 * that has none: trusted for the cache's ttl like any entry. NULL on ENOMEM.
 */
httpd_file_t *httpd_file_absent(uint64_t root, const char *path, size_t len, uint64_t now);

/* Same inode, size, mtime and ctime (nanoseconds): the cached copy is still right. */
bool httpd_file_same(const httpd_file_t *f, const struct stat *st);

/* Caches f (the cache takes its own reference), replacing an entry with the same key. */
void httpd_fcache_put(httpd_fcache_t *c, httpd_file_t *f);
/*
 * The same, but only into room the cache has spare (or over an entry with
 * the same key): for absent entries, which must never push a file out.
 */
void httpd_fcache_put_spare(httpd_fcache_t *c, httpd_file_t *f);
/* Removes the entry for (root, path) if it is an absent one. */
void httpd_fcache_drop_absent(httpd_fcache_t *c, uint64_t root, const char *path, size_t len);
/*
 * Removes f from the cache if it is there (its fd closes with the last
 * reference: at once, or when the last response using it is written).
 */
void httpd_fcache_drop(httpd_fcache_t *c, httpd_file_t *f);

/* Marks a cached entry fresh again. */
void httpd_fcache_touch(httpd_file_t *f, uint64_t now);

httpd_file_t *httpd_file_ref(httpd_file_t *f);
void httpd_file_unref(httpd_file_t *f);

/* Entries cached now. */
unsigned httpd_fcache_count(const httpd_fcache_t *c);

#endif
