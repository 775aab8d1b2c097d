/*
 * Syslog without blocking. syslog(3) writes to /dev/log with a blocking
 * send; when journald or rsyslogd stalls, the caller stalls with it, and our
 * caller is the loop thread. So we keep our own non-blocking datagram socket
 * connected to /dev/log and send RFC 3164 lines with MSG_DONTWAIT: a line the
 * daemon cannot take now is dropped (the JSON output still has it).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "watch.h"

void watch_syslog(int *fd, const char *line)
{
    if (*fd < 0) {
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0)
            return;
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "/dev/log");
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
            close(s);
            return;
        }
        *fd = s;
    }
    char msg[1200];
    /* <facility*8 + severity>: LOG_AUTH (4) and LOG_WARNING (4). */
    int n = snprintf(msg, sizeof msg, "<%d>hark-watch[%d]: %s", 4 * 8 + 4, (int)getpid(), line);
    if (n > 0 &&
        send(*fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1,
             MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
        errno != EAGAIN) {
        close(*fd);
        *fd = -1; /* reconnect next time (the daemon restarted) */
    }
}
