/* Module-private parts of hark/net.h: socket helpers shared by the net files. */
#ifndef HK_NET_INTERNAL_H
#define HK_NET_INTERNAL_H

#include "hark/net.h"
#include "hark/error.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <sys/un.h>

/* Fills a sockaddr_un from a path ('@' = abstract). Errors: -EINVAL, -ENAMETOOLONG. */
int hk__unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len);

/*
 * socket + options + bind + listen, non-blocking and close-on-exec. reuseport
 * sets SO_REUSEPORT. Returns the fd or -errno (nothing left open on failure).
 */
int hk__listen_socket(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags);

/* The options HK_LISTEN_NODELAY / HK_LISTEN_KEEPALIVE on an accepted or connected socket. */
void hk__conn_options(int fd, int nodelay, int keepalive);

/*
 * hk_listener_open, for an owner that must know when a failed open's handles
 * are closed: if it fails after opening them, *closing is set and failed_cb
 * (may be NULL) runs from the loop once both are closed.
 */
int hk__listener_open(hk_loop_t *loop, hk_listener_t *l, int fd, unsigned flags, hk_listen_cb cb,
                      hk_listener_close_cb failed_cb, bool *closing);

/* Sets O_NONBLOCK. Returns 0 or -errno. */
int hk__set_nonblock(int fd);

/* Stream state bits (hk_stream_t._flags). */
#define HK__S_READING 0x001u   /* read_start called, not stopped */
#define HK__S_READ_DONE 0x002u /* EOF or an error was delivered: no more reads */
#define HK__S_ERR_SENT 0x004u  /* _error was delivered to the read callback */
#define HK__S_SHUT_WANT 0x008u /* shutdown requested, waiting for the queue */
#define HK__S_SHUT_DONE 0x010u /* shutdown done, callback pending */
#define HK__S_SHUT_SENT 0x020u /* shutdown callback ran */
#define HK__S_FULL 0x040u      /* reached the high watermark; drain callback pending */
#define HK__S_CLOSING 0x080u
#define HK__S_SOCKET 0x100u  /* sendmsg(MSG_NOSIGNAL) instead of writev */
#define HK__S_CORKED 0x200u  /* hk_stream_cork: writes wait for hk_stream_uncork */
#define HK__S_SIGPIPE 0x400u /* a pipe or fifo: writev raises SIGPIPE when the reader is gone */
#define HK__S_WROTE 0x800u   /* bytes were written since HK_STREAM_FULL was last returned */

/* stream_write.c */
void hk__stream_flush(hk_stream_t *s);
void hk__stream_fail_queue(hk_stream_t *s, int err);
void hk__stream_run_done(hk_stream_t *s);
void hk__stream_try_shutdown(hk_stream_t *s);
extern const hk_stream_transport_t hk__fd_transport;

/* stream.c */
void hk__stream_update(hk_stream_t *s);
void hk__stream_schedule(hk_stream_t *s);
void hk__stream_set_error(hk_stream_t *s, int err);

#endif
