/*
 * Directory listings (autoindex on; off by default).
 *
 * Why the listing reads /proc/self/fd/N: the directory must be resolved
 * beneath the root like any file (openat2 RESOLVE_BENEATH refuses a symlink
 * out of it), but hark/fs.h reads directories by path. Opening the directory
 * beneath the root first and then reading "/proc/self/fd/N" lists exactly
 * the directory that was checked, whatever happens to the path meanwhile.
 * Both steps run through hark/fs.h, so a cold directory never blocks the loop.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

struct httpd_listing {
    hk_fs_req_t req;
    httpd_conn_t *conn;
    int dirfd;
    int root_fd;
    bool done;
    int err;
    char *html; /* the page (owned until taken) */
    size_t html_len;
    size_t dir_len;
    char dir[4352];    /* relative to the root, "" for the root itself */
    char url[4352];    /* the decoded URL path, for the title and links */
    char procpath[64]; /* /proc/self/fd/N */
};

static void listing_finish(httpd_listing_t *l)
{
    httpd_conn_t *c = l->conn;
    if (l->dirfd >= 0) {
        close(l->dirfd);
        l->dirfd = -1;
    }
    l->done = true;
    c->flags &= ~HTTPD_C_FS_BUSY;
    if (c->flags & HTTPD_C_CLOSING) {
        httpd_conn_fs_done(c);
        return;
    }
    httpd_conn_resume(c);
}

/* Appends s with HTML escaping (names are bytes from the disk). */
static void html_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
            break;
        }
    }
}

/* Appends s percent-encoded for use in a link. */
static void url_escape(FILE *f, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p))
            fputc(*p, f);
        else
            fprintf(f, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const hk_fs_dirent_t *)a)->name, ((const hk_fs_dirent_t *)b)->name);
}

static void on_readdir(hk_fs_req_t *req)
{
    httpd_listing_t *l = req->data;
    if (req->result < 0 || (l->conn->flags & HTTPD_C_CLOSING)) {
        l->err = req->result < 0 ? (int)req->result : -ECANCELED;
        hk_fs_req_cleanup(req);
        listing_finish(l);
        return;
    }
    size_t n = (size_t)req->result;
    qsort(req->dirents, n, sizeof(*req->dirents), by_name);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        l->err = -ENOMEM;
        hk_fs_req_cleanup(req);
        listing_finish(l);
        return;
    }
    fputs("<!doctype html><html><head><meta charset=\"utf-8\"><title>Index of ", f);
    html_escape(f, l->url);
    fputs("</title></head><body><h1>Index of ", f);
    html_escape(f, l->url);
    fputs("</h1><ul><li><a href=\"../\">../</a></li>\n", f);
    for (size_t i = 0; i < n; i++) {
        const hk_fs_dirent_t *d = &req->dirents[i];
        if (d->name[0] == '.')
            continue; /* hidden files and . / .. */
        const char *slash = d->type == DT_DIR ? "/" : "";
        fputs("<li><a href=\"", f);
        url_escape(f, d->name);
        fprintf(f, "%s\">", slash);
        html_escape(f, d->name);
        fprintf(f, "%s</a></li>\n", slash);
    }
    fputs("</ul></body></html>\n", f);
    if (fclose(f) != 0) {
        free(buf);
        l->err = -ENOMEM;
    } else {
        l->html = buf;
        l->html_len = len;
    }
    hk_fs_req_cleanup(req);
    listing_finish(l);
}

static void on_dir_open(hk_fs_req_t *req)
{
    httpd_listing_t *l = req->data;
    if (req->result < 0 || (l->conn->flags & HTTPD_C_CLOSING)) {
        if (req->result >= 0)
            close((int)req->result);
        l->err = req->result < 0 ? (int)req->result : -ECANCELED;
        listing_finish(l);
        return;
    }
    l->dirfd = (int)req->result;
    snprintf(l->procpath, sizeof(l->procpath), "/proc/self/fd/%d", l->dirfd);
    int r = hk_fs_readdir(l->conn->w->fs, &l->req, l->procpath, on_readdir);
    if (r < 0) {
        l->err = r;
        listing_finish(l);
    }
}

int httpd_autoindex_start(httpd_conn_t *c, int root_fd, const char *dir, size_t len,
                          const char *url, size_t url_len)
{
    httpd_listing_t *l = c->listing;
    if (!l) {
        l = calloc(1, sizeof(*l));
        if (!l)
            return -ENOMEM;
        c->listing = l;
    }
    if (len >= sizeof(l->dir) || url_len >= sizeof(l->url))
        return -ENAMETOOLONG;
    free(l->html);
    l->html = NULL;
    l->conn = c;
    l->dirfd = -1;
    l->root_fd = root_fd;
    l->done = false;
    l->err = 0;
    l->dir_len = len;
    memcpy(l->dir, len ? dir : ".", len ? len : 1);
    l->dir[len ? len : 1] = '\0';
    memcpy(l->url, url, url_len);
    l->url[url_len] = '\0';
    l->req.data = l;
    int r = hk_fs_openat(c->w->fs, &l->req, root_fd, l->dir, O_RDONLY | O_DIRECTORY, 0,
                         RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, on_dir_open);
    if (r < 0)
        return r;
    c->flags |= HTTPD_C_WAITING | HTTPD_C_FS_BUSY;
    return 1;
}

int httpd_autoindex_take(httpd_conn_t *c, int root_fd, const char *dir, size_t len, char **html,
                         size_t *html_len)
{
    httpd_listing_t *l = c->listing;
    if (!l || !l->done || l->root_fd != root_fd || l->dir_len != len ||
        (len && memcmp(l->dir, dir, len) != 0))
        return 0;
    l->done = false;
    *html = l->html;
    *html_len = l->html_len;
    l->html = NULL;
    return l->err ? l->err : 1;
}

void httpd_autoindex_cancel(httpd_conn_t *c)
{
    if (c->listing && (c->flags & HTTPD_C_FS_BUSY))
        hk_fs_cancel(&c->listing->req);
}

void httpd_autoindex_free(httpd_conn_t *c)
{
    if (!c->listing)
        return;
    if (c->listing->dirfd >= 0)
        close(c->listing->dirfd);
    free(c->listing->html);
    free(c->listing);
    c->listing = NULL;
}
