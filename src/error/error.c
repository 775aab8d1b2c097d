/*
 * One table gives both the name and the message of every errno hark returns,
 * so hk_strerror() and hk_err_name() cannot disagree. Messages are our own
 * short wording, not strerror(), which varies by locale and libc.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>

#include "hark/error.h"

#define HK_ERRNO_TABLE(X)                                                                          \
    X(EPERM, "operation not permitted")                                                            \
    X(ENOENT, "no such file or directory")                                                         \
    X(ESRCH, "no such process")                                                                    \
    X(EINTR, "interrupted system call")                                                            \
    X(EIO, "input/output error")                                                                   \
    X(ENXIO, "no such device or address")                                                          \
    X(E2BIG, "argument list too long")                                                             \
    X(EBADF, "bad file descriptor")                                                                \
    X(ECHILD, "no child process")                                                                  \
    X(EAGAIN, "resource temporarily unavailable")                                                  \
    X(ENOMEM, "out of memory")                                                                     \
    X(EACCES, "permission denied")                                                                 \
    X(EFAULT, "bad address")                                                                       \
    X(EBUSY, "resource busy")                                                                      \
    X(EEXIST, "already exists")                                                                    \
    X(ENOTDIR, "not a directory")                                                                  \
    X(EISDIR, "is a directory")                                                                    \
    X(EINVAL, "invalid argument")                                                                  \
    X(ENFILE, "too many open files in system")                                                     \
    X(EMFILE, "too many open files")                                                               \
    X(EFBIG, "file too large")                                                                     \
    X(ENOSPC, "no space left")                                                                     \
    X(ESPIPE, "illegal seek")                                                                      \
    X(EROFS, "read-only file system")                                                              \
    X(EPIPE, "broken pipe")                                                                        \
    X(ERANGE, "result out of range")                                                               \
    X(ENAMETOOLONG, "name too long")                                                               \
    X(ENOSYS, "system call not available")                                                         \
    X(ENOTSUP, "operation not supported")                                                          \
    X(ELOOP, "too many levels of symbolic links")                                                  \
    X(EOVERFLOW, "value too large")                                                                \
    X(EPROTO, "protocol error")                                                                    \
    X(EBADMSG, "bad message")                                                                      \
    X(EMSGSIZE, "message too long")                                                                \
    X(EADDRINUSE, "address already in use")                                                        \
    X(EADDRNOTAVAIL, "address not available")                                                      \
    X(ENETDOWN, "network is down")                                                                 \
    X(ENETUNREACH, "network is unreachable")                                                       \
    X(ECONNABORTED, "connection aborted")                                                          \
    X(ECONNRESET, "connection reset by peer")                                                      \
    X(ENOBUFS, "no buffer space available")                                                        \
    X(EISCONN, "already connected")                                                                \
    X(ENOTCONN, "not connected")                                                                   \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(ECONNREFUSED, "connection refused")                                                          \
    X(EHOSTUNREACH, "host is unreachable")                                                         \
    X(EALREADY, "already in that state")                                                           \
    X(EINPROGRESS, "operation in progress")                                                        \
    X(ECANCELED, "operation canceled")                                                             \
    X(ENODATA, "no data of the requested kind")                                                    \
    X(ESHUTDOWN, "shut down")                                                                      \
    X(EOWNERDEAD, "owner died")                                                                    \
    X(EXDEV, "cross-device link or outside the tree")                                              \
    X(EDEADLK, "would deadlock")                                                                   \
    X(EAFNOSUPPORT, "address family not supported")                                                \
    X(ENOTSOCK, "not a socket")                                                                    \
    X(EPROTONOSUPPORT, "protocol not supported")

struct hk_errno_entry {
    int code;
    const char *name;
    const char *message;
};

#define HK_ERRNO_ENTRY(code, message) {code, #code, message},
static const struct hk_errno_entry hk_errno_table[] = {HK_ERRNO_TABLE(HK_ERRNO_ENTRY)};
#undef HK_ERRNO_ENTRY

static const struct hk_errno_entry *hk_errno_find(int err)
{
    if (err == INT_MIN)
        return NULL; /* -INT_MIN overflows, and no errno is that large */
    if (err < 0)
        err = -err;
    for (size_t i = 0; i < sizeof hk_errno_table / sizeof hk_errno_table[0]; i++) {
        if (hk_errno_table[i].code == err)
            return &hk_errno_table[i];
    }
    return NULL;
}

const char *hk_strerror(int err)
{
    const struct hk_errno_entry *e = hk_errno_find(err);
    return e ? e->message : "unknown error";
}

const char *hk_err_name(int err)
{
    const struct hk_errno_entry *e = hk_errno_find(err);
    return e ? e->name : "UNKNOWN";
}
