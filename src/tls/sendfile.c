/*
 * Sending files over TLS: SSL_sendfile with kTLS, pread + SSL_write without.
 *
 * Why file bytes ride in the stream's write queue: they must go out in
 * order with the caller's other writes and count against the same
 * watermarks, and the queue already does both. A request queues one iovec
 * whose address lies in a range of address space reserved once per process
 * (PROT_NONE, never touched, no memory behind it): the stream only does
 * arithmetic on iovec addresses and hands them to the transport, and the
 * transport recognises the range and sends the file region that the offset
 * into it stands for. Nothing real can live in that range, so no caller
 * buffer is ever mistaken for a file.
 *
 * With kTLS send active the kernel encrypts from the page cache
 * (SSL_sendfile, zero copy). Otherwise each round reads one record's worth
 * (16 KiB) with pread and writes it with SSL_write; after a WANT_WRITE the
 * same range is read again, so OpenSSL's retry sees the same bytes.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/err.h>

#include "tls/internal.h"

static pthread_once_t hk__tls_range_once = PTHREAD_ONCE_INIT;
static uintptr_t hk__tls_range;

static void hk__tls_range_init(void)
{
    void *p = mmap(NULL, HK_TLS_SENDFILE_MAX, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    hk__tls_range = p == MAP_FAILED ? 0 : (uintptr_t)p;
}

int hk__tls_is_file_ptr(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    return hk__tls_range && a >= hk__tls_range && a - hk__tls_range < HK_TLS_SENDFILE_MAX;
}

int hk__tls_file_write(hk__tls_conn_t *c, const void *p, size_t left, size_t *written, int *ssl_err,
                       int *saved_errno)
{
    hk_tls_sendfile_t *req = c->sf_head;
    size_t pos = (size_t)((uintptr_t)p - hk__tls_range);
    *written = 0;
    if (!req || pos != req->_sent || left > req->len - pos) {
        *ssl_err = SSL_ERROR_SYSCALL; /* cannot happen while the queue is in order */
        *saved_errno = EFAULT;
        return 0;
    }
    off_t off = req->offset + (off_t)pos;
    int ret;
    if (BIO_get_ktls_send(SSL_get_wbio(c->ssl))) {
        errno = 0;
        ossl_ssize_t n = SSL_sendfile(c->ssl, req->fd, off, left, 0);
        *saved_errno = errno;
        ret = n > 0;
        if (ret)
            *written = (size_t)n;
        else
            *ssl_err = SSL_get_error(c->ssl, (int)n);
    } else {
        char buf[HK__TLS_CHUNK];
        size_t want = left < sizeof buf ? left : sizeof buf;
        ssize_t got;
        do
            got = pread(req->fd, buf, want, off);
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            *ssl_err = SSL_ERROR_SYSCALL;
            *saved_errno = got < 0 ? errno : EIO; /* EIO: the file is shorter than asked */
            return 0;
        }
        errno = 0;
        ret = SSL_write_ex(c->ssl, buf, (size_t)got, written);
        *saved_errno = errno;
        if (!ret)
            *ssl_err = SSL_get_error(c->ssl, ret);
    }
    if (ret) {
        req->_sent += *written;
        if (req->_sent == req->len) {
            c->sf_head = req->_next;
            if (!c->sf_head)
                c->sf_tail = NULL;
        }
    }
    return ret;
}

/*
 * A request completed before all its bytes went out (an error, a close) is
 * still on the connection's list: take it off before its callback, which may
 * free it or queue the next one.
 */
static void hk__tls_sf_unlink(hk__tls_conn_t *c, hk_tls_sendfile_t *req)
{
    hk_tls_sendfile_t *prev = NULL;
    for (hk_tls_sendfile_t **pp = &c->sf_head; *pp; prev = *pp, pp = &(*pp)->_next) {
        if (*pp == req) {
            *pp = req->_next;
            if (c->sf_tail == req)
                c->sf_tail = prev;
            return;
        }
    }
}

static void hk__tls_on_file_written(hk_write_req_t *wreq, int status)
{
    hk_tls_sendfile_t *req =
        (hk_tls_sendfile_t *)((char *)wreq - offsetof(hk_tls_sendfile_t, _req));
    hk__tls_conn_t *c = hk__tls_conn(req->stream);
    if (c && req->_sent < req->len)
        hk__tls_sf_unlink(c, req);
    if (req->_cb)
        req->_cb(req, status);
}

int hk_tls_sendfile(hk_stream_t *s, hk_tls_sendfile_t *req, int fd, off_t offset, size_t len,
                    hk_tls_sendfile_cb cb)
{
    hk__tls_conn_t *c = hk__tls_conn(s);
    if (!c || !req || fd < 0 || offset < 0 || len == 0 || len > HK_TLS_SENDFILE_MAX)
        return -EINVAL;
    if (c->state != HK__TLS_OPEN)
        return -ENOTCONN;
    pthread_once(&hk__tls_range_once, hk__tls_range_init);
    if (!hk__tls_range)
        return -ENOMEM;
    req->stream = s;
    req->fd = fd;
    req->offset = offset;
    req->len = len;
    req->_sent = 0;
    req->_cb = cb;
    req->_next = NULL;
    req->_iov.iov_base = (void *)hk__tls_range;
    req->_iov.iov_len = len;
    hk_tls_sendfile_t *prev = c->sf_tail;
    if (prev)
        prev->_next = req;
    else
        c->sf_head = req;
    c->sf_tail = req;
    int r = hk_stream_write(s, &req->_req, &req->_iov, 1, hk__tls_on_file_written);
    if (r < 0) { /* nothing was queued: take the request back off the list */
        if (prev)
            prev->_next = NULL;
        else
            c->sf_head = NULL;
        c->sf_tail = prev;
    }
    return r;
}
