/*
 * A socket BIO that never raises SIGPIPE.
 *
 * OpenSSL's socket BIO writes with write(2). When the peer has reset the
 * connection, write(2) on a socket raises SIGPIPE, whose default action kills
 * the whole process: one misbehaving client would take a server down. The
 * streams of hark/net.h send with MSG_NOSIGNAL; this BIO does the same for TLS
 * (send/recv with MSG_NOSIGNAL, EAGAIN reported as "retry"), so the error
 * arrives as EPIPE/ECONNRESET on the one connection. kTLS needs OpenSSL's own
 * socket BIO, so a context that asks for kTLS (HK_TLS_KTLS) keeps it, and
 * docs/tls.md says to ignore SIGPIPE in that case.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tls/internal.h"

static BIO_METHOD *hk__tls_bio_method;
static pthread_once_t hk__tls_bio_once = PTHREAD_ONCE_INIT;

static int hk__tls_bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int hk__tls_bio_retryable(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == EINPROGRESS;
}

static int hk__tls_bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(hk__tls_bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && hk__tls_bio_retryable(errno))
        BIO_set_retry_write(b);
    return (int)n;
}

static int hk__tls_bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(hk__tls_bio_fd(b), buf, (size_t)len, 0);
    if (n < 0 && hk__tls_bio_retryable(errno))
        BIO_set_retry_read(b);
    return (int)n;
}

static int hk__tls_bio_puts(BIO *b, const char *str)
{
    size_t len = 0;
    while (str[len])
        len++;
    return hk__tls_bio_write(b, str, (int)len);
}

static long hk__tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = hk__tls_bio_fd(b);
        return hk__tls_bio_fd(b);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int hk__tls_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void hk__tls_bio_init_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "hark socket (MSG_NOSIGNAL)");
    if (!m)
        return;
    if (!BIO_meth_set_write(m, hk__tls_bio_write) || !BIO_meth_set_read(m, hk__tls_bio_read) ||
        !BIO_meth_set_puts(m, hk__tls_bio_puts) || !BIO_meth_set_ctrl(m, hk__tls_bio_ctrl) ||
        !BIO_meth_set_create(m, hk__tls_bio_create)) {
        BIO_meth_free(m);
        return;
    }
    hk__tls_bio_method = m;
}

/* A BIO over fd that does not own it (the stream closes the fd), or NULL. */
BIO *hk__tls_bio_new(int fd)
{
    pthread_once(&hk__tls_bio_once, hk__tls_bio_init_method);
    if (!hk__tls_bio_method)
        return NULL;
    BIO *b = BIO_new(hk__tls_bio_method);
    if (b)
        BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}
