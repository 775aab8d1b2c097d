/*
 * Child processes through pidfd (Linux 5.3; waitid(P_PIDFD) 5.4).
 *
 * The classic way, a SIGCHLD handler calling waitpid(-1), reaps children
 * that belong to other parts of the program and needs a process-wide handler.
 * A pidfd becomes readable when its process exits; we put it in the epoll set
 * like any fd and reap exactly that child with waitid(P_PIDFD).
 */
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop/internal.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static void hk__child_on_pidfd(hk_io_t *io, unsigned revents)
{
    (void)revents;
    hk_child_t *child = HK_CONTAINER_OF(io, hk_child_t, _io);
    siginfo_t info = {0};
    int status = 0, termsig = 0;
    if (waitid((idtype_t)P_PIDFD, (id_t)io->fd, &info, WEXITED | WNOHANG) < 0) {
        status = -errno; /* ECHILD: somebody else reaped it */
    } else if (info.si_pid == 0) {
        return; /* not exited yet */
    } else if (info.si_code == CLD_EXITED) {
        status = info.si_status;
    } else {
        status = -1;
        termsig = info.si_status;
    }
    hk_child_stop(child);
    child->_cb(child, status, termsig);
}

int hk_child_init(hk_loop_t *loop, hk_child_t *child)
{
    if (!loop || !child)
        return -EINVAL;
    hk__handle_init(loop, &child->base, HK_HANDLE_CHILD);
    child->pid = 0;
    child->_cb = NULL;
    child->_io.fd = -1;
    child->_io.base._flags = 0;
    return 0;
}

int hk_child_start(hk_child_t *child, hk_child_cb cb, pid_t pid)
{
    if (!cb || pid <= 0)
        return -EINVAL;
    if (child->base._flags & HK__ACTIVE)
        return -EBUSY;
    if (child->base._flags & (HK__CLOSING | HK__CLOSED))
        return -EINVAL;
    hk_loop_t *loop = child->base.loop;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return -errno;
    /* The pidfd's watcher is the loop's business: it is not an open handle. */
    int r = hk__io_init_internal(loop, &child->_io, fd);
    if (r == 0)
        r = hk_io_start(&child->_io, HK_READABLE, hk__child_on_pidfd);
    if (r < 0) {
        close(fd);
        child->_io.fd = -1;
        return r;
    }
    child->pid = pid;
    child->_cb = cb;
    hk__handle_start(&child->base);
    return 0;
}

int hk_child_stop(hk_child_t *child)
{
    if (!(child->base._flags & HK__ACTIVE))
        return -EALREADY;
    hk__io_close(&child->_io);
    close(child->_io.fd);
    child->_io.fd = -1;
    hk__handle_stop(&child->base);
    return 0;
}
