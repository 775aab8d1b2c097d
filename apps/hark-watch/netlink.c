/*
 * The netlink process connector: the kernel multicasts fork, exec and exit
 * events to listeners of NETLINK_CONNECTOR group CN_IDX_PROC.
 *
 * Why: a periodic scan sees a process only at the next tick; exec events let
 * hark-watch look at a new program as soon as it has set itself up (watch.c
 * waits 100 ms). Why it may fail: subscribing needs CAP_NET_ADMIN in the
 * initial user namespace; containers and sandboxes refuse it (EPERM), and a
 * kernel without CONFIG_PROC_EVENTS has no connector (EPROTONOSUPPORT, or
 * silence). Either way the caller falls back to polling and says so once.
 * Events can be lost (ENOBUFS when the socket buffer overflows); we then ask
 * for a full scan rather than guess.
 */
#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netlink.h"

struct procconn {
    hk_io_t io;
    procconn_fn fn;
    void *arg;
    unsigned long long events;
};

static void on_readable(hk_io_t *io, unsigned revents)
{
    (void)revents;
    procconn_t *pc = io->base.data;
    for (int round = 0; round < 64; round++) {
        _Alignas(struct nlmsghdr) char buf[8192];
        ssize_t n = recv(io->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ENOBUFS) /* events were lost: a full scan will cover them */
                pc->fn(pc->arg, 0, 1);
            if (errno == EINTR || errno == ENOBUFS)
                continue;
            return;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != NLMSG_DONE)
                continue;
            struct cn_msg *cn = NLMSG_DATA(h);
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof *cn + sizeof(struct proc_event)) ||
                cn->id.idx != CN_IDX_PROC)
                continue;
            /* The event sits at offset 36 of the datagram: copy it out to align it. */
            struct proc_event ev;
            memcpy(&ev, cn->data, sizeof ev);
            pc->events++;
            if (ev.what == PROC_EVENT_EXEC)
                pc->fn(pc->arg, ev.event_data.exec.process_tgid, 1);
            else if (ev.what == PROC_EVENT_EXIT &&
                     ev.event_data.exit.process_pid == ev.event_data.exit.process_tgid)
                pc->fn(pc->arg, ev.event_data.exit.process_tgid, 0);
        }
    }
}

int procconn_start(hk_loop_t *loop, procconn_fn fn, void *arg, procconn_t **out)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0)
        return -errno;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    struct {
        struct nlmsghdr h;
        struct cn_msg cn;
        enum proc_cn_mcast_op op;
    } __attribute__((packed)) req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = NLMSG_DONE;
    req.h.nlmsg_pid = (uint32_t)getpid();
    req.cn.id.idx = CN_IDX_PROC;
    req.cn.id.val = CN_VAL_PROC;
    req.cn.len = sizeof req.op;
    req.op = PROC_CN_MCAST_LISTEN;
    if (send(fd, &req, sizeof req, 0) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    procconn_t *pc = calloc(1, sizeof *pc);
    if (!pc) {
        close(fd);
        return -ENOMEM;
    }
    pc->fn = fn;
    pc->arg = arg;
    hk_io_init(loop, &pc->io, fd);
    pc->io.base.data = pc;
    int r = hk_io_start(&pc->io, HK_READABLE, on_readable);
    if (r < 0) {
        close(fd);
        free(pc);
        return r;
    }
    hk_unref(&pc->io.base); /* events alone do not keep the daemon alive */
    *out = pc;
    return 0;
}

static void closed(hk_handle_t *h)
{
    free(h->data);
}

void procconn_stop(procconn_t *pc)
{
    close(pc->io.fd);
    hk_close(&pc->io.base, closed);
}

unsigned long long procconn_events(const procconn_t *pc)
{
    return pc->events;
}
