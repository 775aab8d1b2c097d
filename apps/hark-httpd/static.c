/*
 * Static files: path to file through the open-file cache, conditional
 * requests (304), single ranges (206/416), HEAD, and the body from memory
 * (small files) or with sendfile.
 *
 * gzip_static: for a client whose Accept-Encoding takes gzip, path.gz is
 * looked up first and, when it is a regular file, sent as the gzip-encoded
 * representation of path (path's MIME type, Content-Encoding: gzip, the .gz
 * file's own ETag marked "-gzip", so that a cache never mixes the two). A missing .gz is
 * remembered in the open-file cache like a file (an "absent" entry, trusted
 * for open_file_ttl), so a site without .gz files pays one failed open per
 * path and ttl, not one per request. Both representations carry Vary.
 *
 * Why openat2 with RESOLVE_BENEATH: the decoded path is already normalised
 * (no ".." above the root), but a symlink inside the root could still point
 * outside it. Resolving beneath the root's directory fd makes the kernel
 * refuse any escape (EXDEV), whatever the path or the links say. The open
 * goes through hark/fs.h: from the dentry cache on the loop when warm, on
 * the pool when cold, so a slow disk delays that request and no other.
 */
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conn.h"

struct httpd_open {
    hk_fs_req_t req;
    httpd_conn_t *conn;
    httpd_file_t *stale; /* a cached entry being revalidated */
    httpd_file_t *file;  /* the result (own reference) */
    int err;             /* or the error */
    bool done;
    int root_fd;
    bool probe;    /* gzip_static's look for path.gz: a missing file is noted, not an error */
    uint64_t root; /* httpd_root_key */
    size_t path_len;
    char path[4352];
};

static void open_finish(httpd_open_t *o)
{
    httpd_conn_t *c = o->conn;
    httpd_file_unref(o->stale);
    o->stale = NULL;
    o->done = true;
    c->flags &= ~HTTPD_C_FS_BUSY;
    if (c->flags & HTTPD_C_CLOSING) {
        httpd_conn_fs_done(c);
        return;
    }
    httpd_conn_resume(c);
}

static void on_small_read(hk_fs_req_t *req)
{
    httpd_open_t *o = req->data;
    httpd_file_t *f = o->file;
    if (req->result != (int64_t)f->size) {
        /* Changed under us, or unreadable now: send it with sendfile, which checks the length. */
        free(f->data);
        f->data = NULL;
    }
    if (!(o->conn->flags & HTTPD_C_CLOSING))
        httpd_fcache_put(o->conn->w->fcache, f);
    open_finish(o);
}

/*
 * The probe found no usable path.gz: an absent entry (the stale one, checked
 * again, or a new one in the cache) stands for it. Only for answers about the
 * path itself, not for a lack of fds or memory.
 */
static void note_absent(httpd_open_t *o)
{
    uint64_t now = hk_loop_now(o->conn->w->loop);
    if (o->stale && o->stale->absent) {
        httpd_fcache_touch(o->stale, now);
        o->file = httpd_file_ref(o->stale);
        return;
    }
    httpd_file_t *a = httpd_file_absent(o->root, o->path, o->path_len, now);
    if (!a) {
        o->err = -ENOMEM;
        return;
    }
    if (!(o->conn->flags & HTTPD_C_CLOSING))
        httpd_fcache_put_spare(o->conn->w->fcache, a);
    o->file = a;
}

static bool probe_says_absent(int err)
{
    return err == -ENOENT || err == -ENOTDIR || err == -EXDEV || err == -ELOOP || err == -EACCES ||
           err == -EPERM || err == -ENAMETOOLONG;
}

static void on_opened(hk_fs_req_t *req)
{
    httpd_open_t *o = req->data;
    httpd_conn_t *c = o->conn;
    int fd = (int)req->result;
    if (fd < 0) {
        /*
         * Out of file descriptors or memory says nothing about the file: a
         * stale cached entry (its fd still open, checked open_file_ttl ago)
         * is served rather than a 503, and checked again on its next use.
         */
        if (o->stale && (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM)) {
            o->file = httpd_file_ref(o->stale);
        } else if (o->probe && probe_says_absent(fd)) {
            note_absent(o);
        } else {
            o->err = fd;
            /*
             * The path no longer names the cached file (deleted, or out of
             * reach): the entry goes, and with it, once no response uses it,
             * the fd that kept a deleted file's blocks on the disk.
             */
            if (o->stale && probe_says_absent(fd))
                httpd_fcache_drop(c->w->fcache, o->stale);
        }
        open_finish(o);
        return;
    }
    struct stat st;
    if ((c->flags & HTTPD_C_CLOSING) || fstat(fd, &st) < 0) {
        o->err = -EIO;
        close(fd);
        open_finish(o);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        o->err = S_ISDIR(st.st_mode) ? -EISDIR : -EACCES;
        close(fd);
        if (o->probe) {
            o->err = 0;
            note_absent(o); /* replaces a stale entry in the cache */
        } else if (o->stale) {
            httpd_fcache_drop(c->w->fcache, o->stale); /* the file was replaced by a directory */
        }
        open_finish(o);
        return;
    }
    uint64_t now = hk_loop_now(c->w->loop);
    if (o->stale && httpd_file_same(o->stale, &st)) {
        close(fd);
        httpd_fcache_touch(o->stale, now);
        o->file = httpd_file_ref(o->stale);
        open_finish(o);
        return;
    }
    /*
     * Back to blocking for the file kept: io_uring does not wait for a
     * non-blocking file, and answers a read of bytes not in the page cache
     * with EAGAIN.
     */
    (void)fcntl(fd, F_SETFL, 0);
    httpd_file_t *f = httpd_file_new(o->root, o->path, o->path_len, fd, &st, now);
    if (!f) {
        o->err = -ENOMEM;
        open_finish(o);
        return;
    }
    o->file = f;
    if (f->size > 0 && f->size <= HTTPD_SMALL_FILE && (f->data = malloc(f->size)) != NULL &&
        hk_fs_read(c->w->fs, &o->req, fd, f->data, f->size, 0, on_small_read) == 0)
        return;
    free(f->data);
    f->data = NULL;
    httpd_fcache_put(c->w->fcache, f);
    open_finish(o);
}

/* Starts the open of path beneath root_fd. Returns 1 (waiting) or -errno. */
static int static_open(httpd_conn_t *c, int root_fd, const char *path, size_t len,
                       httpd_file_t *stale, bool probe)
{
    httpd_open_t *o = c->open;
    if (!o) {
        o = malloc(sizeof(*o));
        if (!o)
            return -ENOMEM;
        memset(&o->req, 0, sizeof(o->req));
        c->open = o;
    }
    if (len >= sizeof(o->path))
        return -ENAMETOOLONG;
    o->conn = c;
    o->stale = stale;
    o->file = NULL;
    o->err = 0;
    o->done = false;
    o->root_fd = root_fd;
    o->probe = probe;
    o->root = httpd_root_key(c->gen->id, root_fd);
    o->path_len = len;
    memcpy(o->path, path, len);
    o->path[len] = '\0';
    o->req.data = o;
    /*
     * O_NONBLOCK: a FIFO's open waits for a writer (a device's may too), and
     * held a pool thread for as long as none came; a few requests for one
     * held them all. Such a file is refused anyway (not regular).
     */
    int r = hk_fs_openat(c->w->fs, &o->req, root_fd, o->path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0,
                         RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, on_opened);
    if (r < 0) {
        o->stale = NULL;
        return r;
    }
    httpd_count(&c->w->counters.cache_misses, 1);
    c->flags |= HTTPD_C_WAITING | HTTPD_C_FS_BUSY;
    return 1;
}

void httpd_static_cancel(httpd_conn_t *c)
{
    if (c->open && (c->flags & HTTPD_C_FS_BUSY))
        hk_fs_cancel(&c->open->req); /* the callback still runs, and sees the closing flag */
}

void httpd_static_free(httpd_conn_t *c)
{
    if (!c->open)
        return;
    httpd_file_unref(c->open->file);
    httpd_file_unref(c->open->stale);
    free(c->open);
    c->open = NULL;
}

static int open_error_status(int err)
{
    switch (err) {
    case -EACCES:
    case -EPERM:
        return 403;
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        return 503;
    case -ENAMETOOLONG:
        return 414;
    case -ENOENT:
    case -ENOTDIR:
    case -EXDEV: /* a symlink out of the root: as if it did not exist */
    case -ELOOP:
    case -EINVAL:
        return 404;
    default:
        return 500;
    }
}

/*
 * Does an entity-tag list match the representation's ETag (tag)? Weak
 * comparison for If-None-Match, strong for If-Match, where a weak tag never
 * matches (RFC 9110 section 8.8.3.2); "*" matches any current file.
 */
static bool etag_matches(const char *v, size_t vlen, const char *tag, size_t tag_len, bool strong)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i < vlen && v[i] == '*')
            return true;
        bool weak = i + 2 < vlen && v[i] == 'W' && v[i + 1] == '/';
        if (weak)
            i += 2;
        size_t s = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (!(strong && weak) && e - s == tag_len && memcmp(v + s, tag, e - s) == 0)
            return true;
    }
    return false;
}

/*
 * A list header may come as several lines (RFC 9110 section 5.3): 1 if one
 * of them matches, 0 if none does, -1 if the header is absent.
 */
static int etag_header_matches(const hk_http_request_t *req, const char *name, size_t nlen,
                               const char *tag, size_t tag_len, bool strong)
{
    int found = -1;
    for (size_t i = 0; i < req->num_headers; i++) {
        const hk_http_header_t *h = &req->headers[i];
        if (h->name_len != nlen || strncasecmp(h->name, name, nlen) != 0)
            continue;
        if (etag_matches(h->value, h->value_len, tag, tag_len, strong))
            return 1;
        found = 0;
    }
    return found;
}

/*
 * The preconditions of a GET or HEAD in the order of RFC 9110 section 13.2.2:
 * If-Match, else If-Unmodified-Since (412 when false); then If-None-Match,
 * else If-Modified-Since (304 when false). Returns the status, 200 to go on.
 * A date that does not parse leaves its header ignored.
 */
static int static_preconditions(const hk_http_request_t *req, const httpd_file_t *f,
                                const char *tag, size_t tag_len)
{
    const hk_http_header_t *h;
    time_t t;
    int m = etag_header_matches(req, "if-match", 8, tag, tag_len, true);
    if (m == 0)
        return 412;
    if (m < 0 && (h = hk_http_find_header(req->headers, req->num_headers, "if-unmodified-since")) &&
        hk_http_date_parse(h->value, h->value_len, &t) == 0 && f->mtime > t)
        return 412;
    m = etag_header_matches(req, "if-none-match", 13, tag, tag_len, false);
    if (m == 1)
        return 304;
    if (m < 0 && (h = hk_http_find_header(req->headers, req->num_headers, "if-modified-since")) &&
        hk_http_date_parse(h->value, h->value_len, &t) == 0 && f->mtime <= t)
        return 304;
    return 200;
}

/* What gzip_static adds to a response. */
enum static_enc {
    ENC_OFF = 0,  /* gzip_static off: nothing */
    ENC_VARY = 1, /* the identity representation: Vary */
    ENC_GZIP = 2, /* path.gz: Content-Encoding and Vary */
};

/*
 * Does the request take gzip? Its weight above 0, or gzip not named and "*"
 * above 0 (RFC 9110 section 12.5.3), over every Accept-Encoding line.
 */
static bool accepts_gzip(const hk_http_request_t *req)
{
    int gzip = -1, star = -1;
    for (size_t i = 0; i < req->num_headers; i++) {
        const hk_http_header_t *h = &req->headers[i];
        if (h->name_len != 15 || strncasecmp(h->name, "accept-encoding", 15) != 0)
            continue;
        int s;
        int w = hk_http_coding_weight(h->value, h->value_len, "gzip", &s);
        if (w < 0) /* x-gzip is gzip (RFC 9110 section 8.4.1.3) */
            w = hk_http_coding_weight(h->value, h->value_len, "x-gzip", NULL);
        if (gzip < 0)
            gzip = w;
        if (star < 0)
            star = s;
    }
    return gzip > 0 || (gzip < 0 && star > 0);
}

/* type: the Content-Type (for path.gz, its path's). */
static int static_serve(httpd_conn_t *c, const hk_http_request_t *req, httpd_file_t *f, bool ka,
                        enum static_enc enc, const char *type)
{
    bool head = req->method_id == HK_HTTP_HEAD;
    /*
     * A modification time in the future (clock skew, an unpacked archive) is
     * sent as the response's own date: Last-Modified must never be later than
     * Date (RFC 9110 section 8.8.2.1). Date is taken after this, so it is
     * this second or a later one. Such a date is no strong validator, so an
     * If-Range holding it never matches (it is compared with f->lastmod).
     */
    const char *lastmod = f->lastmod;
    /* The cached second first: only a file that looks newer pays for a clock read. */
    if (f->mtime > c->w->date_sec) {
        const char *now = httpd_worker_date(c->w);
        if (f->mtime > c->w->date_sec)
            lastmod = now;
    }
    /*
     * The encoded representation's tag is the .gz file's with "-gzip" inside
     * the quotes. Its own mtime and size are not enough: "gzip -k" gives the
     * .gz its file's mtime to the nanosecond, so a file and a .gz of the same
     * length (a small file that deflate shrinks by just the gzip header and
     * name) had one strong tag for two representations, and a cache
     * revalidating with the identity's tag got a 304 for the gzip one (RFC
     * 9110 section 8.8.3).
     * The preconditions and If-Range compare with this tag, not the file's.
     */
    char tag[sizeof(f->etag) + 8];
    size_t tag_len = f->etag_len;
    memcpy(tag, f->etag, tag_len);
    if (enc == ENC_GZIP && tag_len >= 2) {
        memcpy(tag + tag_len - 1, "-gzip\"", 6);
        tag_len += 5;
    }
    int status = static_preconditions(req, f, tag, tag_len);
    if (status == 412) {
        httpd_resp_error(c, 412, ka, head);
        return 0;
    }
    /*
     * A 304 carries the validators, not the representation's metadata
     * (RFC 9110 section 15.4.5): no Content-Type or Accept-Ranges, as nginx.
     */
    char extra[384];
    int n = snprintf(extra, sizeof(extra), "ETag: %.*s\r\nLast-Modified: %s\r\n%s%s%s",
                     (int)tag_len, tag, lastmod, status == 304 ? "" : "Accept-Ranges: bytes\r\n",
                     enc == ENC_GZIP && status != 304 ? "Content-Encoding: gzip\r\n" : "",
                     enc != ENC_OFF ? "Vary: Accept-Encoding\r\n" : "");
    httpd_resp_t r = {.status = status,
                      .keep_alive = ka,
                      .head = head,
                      .type = status == 304 ? NULL : type,
                      .length = f->size,
                      .extra = extra,
                      .extra_len = (size_t)n};
    uint64_t first = 0, last = f->size ? f->size - 1 : 0;
    const hk_http_header_t *h;
    if (r.status == 200 && req->method_id == HK_HTTP_GET &&
        (h = hk_http_find_header(req->headers, req->num_headers, "range"))) {
        const hk_http_header_t *ifr =
            hk_http_find_header(req->headers, req->num_headers, "if-range");
        /*
         * A date is a strong validator only when the file was not modified
         * in this second (RFC 9110 sections 13.1.5 and 8.8.2.2): a second
         * version written within it would share the date, and a range of
         * it be spliced onto the first. Otherwise the whole file (200).
         * Nor where gzip_static is on: path and path.gz may share the date
         * ("gzip -k" keeps the mtime), and a client that resumes with another
         * Accept-Encoding would splice a range of one onto the other. There
         * only the tag, which differs, can match.
         */
        bool use = !ifr || (ifr->value_len == tag_len && memcmp(ifr->value, tag, tag_len) == 0);
        if (!use && enc == ENC_OFF && ifr->value_len == strlen(f->lastmod) &&
            memcmp(ifr->value, f->lastmod, ifr->value_len) == 0) {
            (void)httpd_worker_date(c->w); /* date_sec: this second */
            use = f->mtime < c->w->date_sec;
        }
        int rr =
            use ? hk_http_range_parse(h->value, h->value_len, f->size, &first, &last) : -EINVAL;
        if (rr == 0) {
            r.status = 206;
            r.length = last - first + 1;
            n += snprintf(extra + n, sizeof(extra) - (size_t)n,
                          "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)first,
                          (unsigned long long)last, (unsigned long long)f->size);
        } else if (rr == -ERANGE) {
            r.status = 416;
            r.length = 0;
            n += snprintf(extra + n, sizeof(extra) - (size_t)n, "Content-Range: bytes */%llu\r\n",
                          (unsigned long long)f->size);
        }
        r.extra_len = (size_t)n;
    }
    if (r.status == 304 || r.status == 416)
        r.length = 0;
    if (httpd_resp_head(c, &r) < 0)
        return 0;
    if (head || r.length == 0)
        return 0;
    if (f->data) {
        if (httpd_resp_body_mem(c, f->data + first, r.length, f) == 0)
            return 0;
        /* No iovec left: fall back to sendfile for this body. */
    }
    httpd_resp_body_file(c, f, first, r.length);
    httpd_batch_flush(c); /* a file range ends a batch */
    return 0;
}

/* Whether the open this request waited for, now done, was the one of path beneath root_fd. */
static bool open_done_for(const httpd_conn_t *c, int root_fd, const char *path, size_t len)
{
    const httpd_open_t *o = c->open;
    return o && o->done && o->root == httpd_root_key(c->gen->id, root_fd) && o->path_len == len &&
           memcmp(o->path, path, len) == 0;
}

/*
 * The file at path beneath root_fd: from the open this request waited for,
 * from the cache, or from a new open (returns 1: the request waits for it).
 * Otherwise returns 0 with *fp (a reference) or *errp set.
 */
static int static_lookup(httpd_conn_t *c, int root_fd, const char *path, size_t len, bool probe,
                         httpd_file_t **fp, int *errp)
{
    httpd_file_t *f = NULL;
    int err = 0;
    httpd_open_t *o = c->open;
    if (o && o->done) {
        /* The open this request waited for (unless the route changed meanwhile). */
        if (open_done_for(c, root_fd, path, len)) {
            f = o->file;
            err = o->err;
        } else {
            httpd_file_unref(o->file);
        }
        o->done = false;
        o->file = NULL;
    }
    if (!f && !err) {
        uint64_t now = hk_loop_now(c->w->loop);
        bool fresh;
        f = httpd_fcache_get(c->w->fcache, httpd_root_key(c->gen->id, root_fd), path, len, now,
                             &fresh);
        if (f && f->absent && !probe) {
            /* A probe's note that x.gz is missing, and x.gz is asked for itself: open it. */
            httpd_file_unref(f);
            f = NULL;
        }
        if (f && fresh) {
            httpd_count(&c->w->counters.cache_hits, 1);
        } else {
            /* Not cached, or stale: the open revalidates a stale entry (kept if unchanged). */
            int r = static_open(c, root_fd, path, len, f, probe);
            if (r == 1)
                return 1;
            httpd_file_unref(f);
            f = NULL;
            err = r;
        }
    }
    *fp = f;
    *errp = err;
    return 0;
}

int httpd_static_handle(httpd_conn_t *c, const hk_http_request_t *req, const httpd_location_t *loc,
                        int root_fd, const char *path, size_t len, bool ka)
{
    bool head = req->method_id == HK_HTTP_HEAD;
    const httpd_config_t *cfg = c->gen->cfg;
    /* The path beneath the root: no leading '/', the index file for a directory. */
    char rel[4352];
    size_t rlen = len > 0 ? len - 1 : 0;
    if (rlen + strlen(cfg->index) + 1 >= sizeof(rel)) {
        httpd_resp_error(c, 414, ka, head);
        return 0;
    }
    memcpy(rel, path + 1, rlen);
    size_t dir_len = rlen; /* a directory request: the directory, without its slash */
    bool dir_req = rlen == 0 || rel[rlen - 1] == '/';
    if (dir_req) {
        dir_len = rlen ? rlen - 1 : 0;
        size_t il = strlen(cfg->index);
        memcpy(rel + rlen, cfg->index, il);
        rlen += il;
    }
    rel[rlen] = '\0';

    enum static_enc enc = loc->gzip_static ? ENC_VARY : ENC_OFF;
    if (enc && rlen + 3 < sizeof(rel) && accepts_gzip(req) &&
        !open_done_for(c, root_fd, rel, rlen)) {
        /*
         * path.gz first, unless this request already waits for path itself
         * (its probe for path.gz is over). ".gz" goes on rel in place.
         */
        memcpy(rel + rlen, ".gz", 4);
        httpd_file_t *gz;
        int gerr;
        int w = static_lookup(c, root_fd, rel, rlen + 3, true, &gz, &gerr);
        rel[rlen] = '\0';
        if (w == 1)
            return 1;
        if (gz && !gz->absent) {
            static_serve(c, req, gz, ka, ENC_GZIP, httpd_mime_type(rel, rlen));
            httpd_file_unref(gz);
            return 0;
        }
        httpd_file_unref(gz); /* none: path itself, whatever kept the probe from finding one */
    }
    httpd_file_t *f;
    int err;
    if (static_lookup(c, root_fd, rel, rlen, false, &f, &err) == 1)
        return 1;
    if (!f && enc && rlen + 3 < sizeof(rel)) {
        /*
         * No path: forget the probe's note that path.gz is missing too, so
         * that requests for missing paths (a scanner's 404s) leave nothing
         * behind in the cache.
         */
        memcpy(rel + rlen, ".gz", 4);
        httpd_fcache_drop_absent(c->w->fcache, httpd_root_key(c->gen->id, root_fd), rel, rlen + 3);
        rel[rlen] = '\0';
    }
    if (!f && dir_req && loc->autoindex && err == -ENOENT) {
        /* No index file: list the directory (autoindex on). */
        char *html = NULL;
        size_t hl = 0;
        int t = httpd_autoindex_take(c, root_fd, rel, dir_len, &html, &hl);
        if (t == 1) {
            httpd_resp_t r = {.status = 200,
                              .keep_alive = ka,
                              .head = head,
                              .type = "text/html; charset=utf-8",
                              .length = hl};
            if (httpd_resp_head(c, &r) < 0 || head)
                free(html);
            else
                httpd_resp_body_owned(c, html, hl);
            httpd_batch_flush(c); /* one owned body per batch */
            return 0;
        }
        if (t == 0) {
            t = httpd_autoindex_start(c, root_fd, rel, dir_len, path, len);
            if (t == 1)
                return 1;
        }
        err = t;
    }
    if (!f) {
        if (err == -EISDIR && (len == 0 || path[len - 1] != '/')) {
            /*
             * A directory named without its slash: send the client to the
             * right URL. The path as the client sent it, still percent-encoded
             * (the parser let no CR, LF or space through): the decoded one
             * could hold "?", "%" or a line break.
             */
            char extra[4500];
            int n = snprintf(extra, sizeof(extra), "Location: %.*s/%s%.*s\r\n", (int)req->path_len,
                             req->path, req->query ? "?" : "", req->query ? (int)req->query_len : 0,
                             req->query ? req->query : "");
            if (n > 0 && (size_t)n < sizeof(extra)) {
                httpd_resp_redirect(c, ka, head, extra, (size_t)n);
                return 0;
            }
        }
        httpd_resp_error(c, err == -EISDIR ? 404 : open_error_status(err), ka, head);
        return 0;
    }
    static_serve(c, req, f, ka, enc, f->mime);
    httpd_file_unref(f);
    return 0;
}
