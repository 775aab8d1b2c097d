/*
 * readdir and the whole-file helper: the two operations whose result is
 * memory. Both run entirely on a worker (one thread hop for the whole job,
 * not one per system call) and hand the caller one malloc'd block.
 *
 * readdir packs the entry array and the names into a single block, so the
 * caller frees one pointer and the pointers inside stay valid together.
 *
 * readfile trusts fstat's size only as a first guess: a file may grow between
 * fstat and read, and /proc or sysfs files report 0. It reads until end of
 * file, growing the buffer, and gives -EFBIG as soon as more than the
 * caller's limit arrives, so a hostile or runaway file cannot make it
 * allocate without bound.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fs/internal.h"

struct hk__fs_names {
    char *buf; /* names, each with its NUL */
    size_t len, cap;
    size_t *offs; /* offset of each name in buf */
    unsigned char *types;
    size_t n, ncap;
};

static int hk__fs_names_add(struct hk__fs_names *nm, const char *name, unsigned char type)
{
    size_t l = strlen(name) + 1;
    if (nm->len + l > nm->cap) {
        size_t cap = nm->cap ? nm->cap * 2 : 1024;
        while (cap < nm->len + l)
            cap *= 2;
        char *b = realloc(nm->buf, cap);
        if (!b)
            return -ENOMEM;
        nm->buf = b;
        nm->cap = cap;
    }
    if (nm->n == nm->ncap) {
        size_t ncap = nm->ncap ? nm->ncap * 2 : 32;
        size_t *o = realloc(nm->offs, ncap * sizeof(*o));
        if (!o)
            return -ENOMEM;
        nm->offs = o;
        unsigned char *t = realloc(nm->types, ncap);
        if (!t)
            return -ENOMEM;
        nm->types = t;
        nm->ncap = ncap;
    }
    memcpy(nm->buf + nm->len, name, l);
    nm->offs[nm->n] = nm->len;
    nm->types[nm->n] = type;
    nm->len += l;
    nm->n++;
    return 0;
}

/* One block: the array, then the names. */
static hk_fs_dirent_t *hk__fs_names_pack(const struct hk__fs_names *nm)
{
    size_t head = nm->n * sizeof(hk_fs_dirent_t);
    hk_fs_dirent_t *ents = malloc(head + nm->len + 1);
    if (!ents)
        return NULL;
    char *names = (char *)ents + head;
    if (nm->len)
        memcpy(names, nm->buf, nm->len);
    for (size_t i = 0; i < nm->n; i++) {
        ents[i].name = names + nm->offs[i];
        ents[i].type = nm->types[i];
    }
    return ents;
}

void hk__fs_readdir_work(hk_fs_req_t *req)
{
    int fd = open(req->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        req->result = -errno;
        return;
    }
    DIR *dir = fdopendir(fd);
    if (!dir) {
        req->result = -errno;
        close(fd);
        return;
    }
    struct hk__fs_names nm = {0};
    int err = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            err = -errno; /* 0 at the end */
            break;
        }
        if (de->d_name[0] == '.' &&
            (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0)))
            continue;
        err = hk__fs_names_add(&nm, de->d_name, de->d_type);
        if (err < 0)
            break;
    }
    closedir(dir);
    if (err == 0) {
        req->dirents = hk__fs_names_pack(&nm);
        err = req->dirents ? (int)nm.n : -ENOMEM;
        if (nm.n > INT32_MAX)
            err = -EOVERFLOW;
    }
    if (err < 0) {
        free(req->dirents);
        req->dirents = NULL;
    }
    req->result = err;
    free(nm.buf);
    free(nm.offs);
    free(nm.types);
}

void hk__fs_readfile_work(hk_fs_req_t *req)
{
    uint64_t max = req->len;
    int fd = open(req->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        req->result = -errno;
        return;
    }
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) < 0) {
        err = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        err = -EISDIR;
        goto out;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
        err = -EFBIG;
        goto out;
    }
    /* Room for the size stat gave, one more byte to see the end, and the NUL. */
    size_t cap = (S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 4096) + 2;
    size_t len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        err = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            size_t ncap = cap * 2;
            if (ncap > max + 2)
                ncap = (size_t)max + 2;
            if (ncap <= cap) {
                err = -EFBIG; /* more than max bytes and still not at the end */
                break;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                err = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            err = -EFBIG;
            break;
        }
    }
    if (err < 0) {
        free(buf);
    } else {
        buf[len] = 0;
        req->file_data = buf;
        req->result = (int64_t)len;
    }
out:
    close(fd);
    if (err < 0)
        req->result = err;
}
