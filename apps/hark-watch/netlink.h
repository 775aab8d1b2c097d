/* netlink.h: the kernel's process connector (exec and exit events) on the loop. */
#ifndef HARK_WATCH_NETLINK_H
#define HARK_WATCH_NETLINK_H

#include <sys/types.h>

#include "hark/loop.h"

typedef struct procconn procconn_t;
typedef void (*procconn_fn)(void *arg, pid_t pid, int is_exec);

/*
 * Subscribes to exec and exit events. Errors: -EPERM/-EACCES (needs
 * CAP_NET_ADMIN), -EPROTONOSUPPORT (no connector), or another -errno.
 */
int procconn_start(hk_loop_t *loop, procconn_fn fn, void *arg, procconn_t **out);
void procconn_stop(procconn_t *pc);
unsigned long long procconn_events(const procconn_t *pc);

#endif
