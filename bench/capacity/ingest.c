/*
 * capacity-ingest: a UDP telemetry ingest on hark's loop, instrumented to
 * measure what each packet costs (bench/capacity, docs/science-capacity.md).
 *
 * Why it is built this way: the capacity of one core is 1 / (CPU time per
 * packet), and the prediction is only as good as that cost's split. So every
 * recvmmsg call is timed (the kernel's share: dequeue, copy, the drop-counter
 * control message) and so is the parse-and-update of its batch (the user
 * share), and both are regressed on the packets the call returned: the
 * intercept is the per-call cost, the slope the per-packet cost. At saturation
 * every call returns a full batch, so the cost per packet there is
 * slope + intercept / batch, which a run below saturation can measure: with
 * "pause P" the loop stops reading for P us each time it has emptied the
 * queue, so the queue builds up and is drained in full batches, back to back
 * as at saturation, while the offered load stays well below capacity (no
 * loss). The CPU time of such a run (the process's CPU clock, exact; getrusage
 * only splits it into user and system, by sampling ticks) per packet is then
 * the whole cost of a packet at saturation, the loop's share included;
 * the pauses add only a timer and two epoll_ctl calls per drained backlog.
 *
 * Why a core share (-S): on loopback the kernel's receive path up to the
 * socket queue runs on the sending core, and costs more there than the
 * ingest's whole work costs here, so one sending core cannot offer a full
 * ingest core's capacity. With -S s the ingest gets time slices of its core:
 * in each period of -T us it reads only during the first s of it, like a
 * loop whose core is time-sliced with other work. A time slice and not a
 * budget of CPU time, because a budget is spent on whatever the loop does,
 * wake-ups per small burst included, while a slice that the loop cannot use
 * up is just idle: saturated, it drains a backlog in full batches for the
 * whole slice, and its capacity is s / (cost per packet in full batches).
 *
 * The watcher is level-triggered and each callback reads up to -B batches, or
 * until a batch comes back short (the queue is then empty, and a further call
 * would only return EAGAIN), so a flood cannot starve the command pipe.
 * Drops are the socket's own counter (SO_RXQ_OVFL, sent with each packet).
 * The receive buffer (-R, 512 KB asked, which the kernel doubles) holds about
 * a thousand packets: a calibration backlog or a slice's gap fits. A deeper
 * queue adds nothing below the knee, and past it only keeps each packet
 * longer, to be read colder from the cache.
 *
 * Commands, one per line on stdin (the driver, scripts/bench-capacity, holds
 * the pipe): "report LABEL" prints the counters since the last report and
 * resets them; "pause P" (microseconds after each drain; 0 = off); "share S"
 * (as -S; 1 = the whole core); "quit".
 * Usage: capacity-ingest [-p PORT] [-d DEVICES] [-b BATCH] [-B BATCHES] [-R RCVBUF]
 *                        [-c CPU] [-F FIFO] [-S SHARE] [-T PERIOD_US]
 * Prints "capacity_ingest_port port=N ..." first, then one line per report:
 *   capacity_ingest label= packets= bad= calls= eagain= callbacks= ... rxq_drops=
 */

#include "packet.h"
#include "place.h"

#include <hark.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CAP_MAX_BATCH 256

typedef struct cap_stats {
    uint64_t packets, bad, calls, eagain, callbacks, full_calls;
    uint64_t ns_recv, ns_user, ns_eagain;
    /* Sums for the regressions of a call's time on its packets n (calls with n >= 1). */
    double sn, snn, st_recv, snt_recv, st_user, snt_user;
    uint64_t t0, cpu0;
    struct rusage ru0;
    uint32_t drops0;
} cap_stats_t;

typedef struct cap_ingest {
    hk_loop_t *loop;
    hk_io_t udp, cmd;
    hk_timer_t resume_timer, period_timer, slice_timer;
    int fd, batch, batches, paused, throttled;
    uint64_t pause_ns;
    uint64_t slice_ns;  /* -S: reading time at the start of each period (0: no slicing) */
    uint64_t slice_end; /* -S: when the current slice ends (checked before every batch) */
    uint64_t last_full; /* -S: how long the last full batch took, to stop before the end */
    uint64_t period_ns;
    uint32_t ndevs, drops; /* drops: the last SO_RXQ_OVFL value seen */
    cap_device_t *devs;
    cap_stats_t st;
    unsigned char (*bufs)[CAP_PACKET + 1]; /* + 1: a longer datagram shows as too long */
    struct iovec iov[CAP_MAX_BATCH];
    struct mmsghdr msgs[CAP_MAX_BATCH];
    char ctl[CAP_MAX_BATCH][CMSG_SPACE(sizeof(uint32_t))];
    char line[256];
    size_t line_len;
} cap_ingest_t;

static uint64_t cpu_ns(const struct rusage *a, const struct rusage *b, int sys)
{
    const struct timeval *x = sys ? &a->ru_stime : &a->ru_utime;
    const struct timeval *y = sys ? &b->ru_stime : &b->ru_utime;
    return (uint64_t)((y->tv_sec - x->tv_sec) * 1000000000LL + (y->tv_usec - x->tv_usec) * 1000LL);
}

/* The process's CPU time in ns: exact (the scheduler's runtime), unlike getrusage's ticks. */
static uint64_t cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void stats_reset(cap_ingest_t *c)
{
    memset(&c->st, 0, sizeof c->st);
    c->st.t0 = hk_time_now();
    c->st.cpu0 = cpu_now();
    getrusage(RUSAGE_SELF, &c->st.ru0);
    c->st.drops0 = c->drops;
}

/* Least squares of t on n: *slope per packet, *icpt per call; "-" when n never varied. */
static void regress(double k, double sn, double snn, double st, double snt, char *slope, char *icpt,
                    size_t size)
{
    double d = k * snn - sn * sn;
    if (k < 2 || d <= 1e-9 * k * snn) {
        snprintf(slope, size, "-");
        snprintf(icpt, size, "-");
        return;
    }
    double b = (k * snt - sn * st) / d;
    snprintf(slope, size, "%.1f", b);
    snprintf(icpt, size, "%.1f", (st - b * sn) / k);
}

static void report(cap_ingest_t *c, const char *label)
{
    cap_stats_t *s = &c->st;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t wall = hk_time_now() - s->t0, cpu = cpu_now() - s->cpu0;
    double k = (double)(s->calls - s->eagain);
    char rp[32], rc[32], up[32], uc[32];
    regress(k, s->sn, s->snn, s->st_recv, s->snt_recv, rp, rc, sizeof rp);
    regress(k, s->sn, s->snn, s->st_user, s->snt_user, up, uc, sizeof up);
    printf("capacity_ingest label=%s packets=%llu bad=%llu calls=%llu eagain=%llu full_calls=%llu "
           "callbacks=%llu ns_recv=%llu ns_user=%llu ns_eagain=%llu cpu_ns=%llu cpu_user_ns=%llu "
           "cpu_sys_ns=%llu wall_ns=%llu recv_pkt_ns=%s recv_call_ns=%s user_pkt_ns=%s "
           "user_call_ns=%s rxq_drops=%u batch=%d batches=%d devices=%u\n",
           label[0] ? label : "-", (unsigned long long)s->packets, (unsigned long long)s->bad,
           (unsigned long long)s->calls, (unsigned long long)s->eagain,
           (unsigned long long)s->full_calls, (unsigned long long)s->callbacks,
           (unsigned long long)s->ns_recv, (unsigned long long)s->ns_user,
           (unsigned long long)s->ns_eagain, (unsigned long long)cpu,
           (unsigned long long)cpu_ns(&s->ru0, &ru, 0), (unsigned long long)cpu_ns(&s->ru0, &ru, 1),
           (unsigned long long)wall, rp, rc, up, uc, c->drops - s->drops0, c->batch, c->batches,
           c->ndevs);
    fflush(stdout);
    stats_reset(c);
}

static void on_udp(hk_io_t *io, unsigned revents);

/* -S: the slice is over; the rest of the period belongs to "other work". */
static void on_slice_end(hk_timer_t *t, uint64_t expirations)
{
    cap_ingest_t *c = t->base.data;
    (void)expirations;
    if (!c->throttled) {
        c->throttled = 1;
        (void)hk_io_stop(&c->udp);
    }
}

/* -S: a new period starts with the ingest's slice. */
static void on_period(hk_timer_t *t, uint64_t expirations)
{
    cap_ingest_t *c = t->base.data;
    (void)expirations;
    if (c->throttled) {
        c->throttled = 0;
        (void)hk_io_start(&c->udp, HK_READABLE, on_udp);
    }
    if (c->slice_ns > 0) {
        c->slice_end = hk_time_now() + c->slice_ns;
        (void)hk_timer_stop(&c->slice_timer);
        (void)hk_timer_start_in(&c->slice_timer, on_slice_end, (int64_t)c->slice_ns, 0);
    }
}

static void on_resume(hk_timer_t *t, uint64_t expirations)
{
    cap_ingest_t *c = t->base.data;
    (void)expirations;
    if (c->paused) {
        c->paused = 0;
        if (!c->throttled) {
            (void)hk_io_start(&c->udp, HK_READABLE, on_udp);
        }
    }
}

static void on_udp(hk_io_t *io, unsigned revents)
{
    cap_ingest_t *c = io->base.data;
    (void)revents;
    c->st.callbacks++;
    for (int b = 0; b < c->batches; b++) {
        for (int i = 0; i < c->batch; i++) {
            c->msgs[i].msg_hdr.msg_controllen = sizeof c->ctl[i];
        }
        uint64_t t0 = hk_time_now();
        int n = recvmmsg(c->fd, c->msgs, (unsigned)c->batch, MSG_DONTWAIT, NULL);
        uint64_t t1 = hk_time_now();
        c->st.calls++;
        if (n <= 0) {
            c->st.eagain++;
            c->st.ns_eagain += t1 - t0;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (cap_ingest(c->devs, c->ndevs, c->bufs[i], c->msgs[i].msg_len) < 0) {
                c->st.bad++;
            }
        }
        /* The drop counter rides on every packet; the last one has the newest value. */
        struct msghdr *h = &c->msgs[n - 1].msg_hdr;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm != NULL; cm = CMSG_NXTHDR(h, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
                memcpy(&c->drops, CMSG_DATA(cm), sizeof c->drops);
            }
        }
        uint64_t t2 = hk_time_now();
        double dn = n, dr = (double)(t1 - t0), du = (double)(t2 - t1);
        c->st.packets += (uint64_t)n;
        c->st.ns_recv += t1 - t0;
        c->st.ns_user += t2 - t1;
        c->st.sn += dn;
        c->st.snn += dn * dn;
        c->st.st_recv += dr;
        c->st.snt_recv += dn * dr;
        c->st.st_user += du;
        c->st.snt_user += dn * du;
        if (n == c->batch) {
            c->last_full = t2 - t0;
        }
        /* -S: no batch that would run past the slice's end (the overrun would be a gift). */
        if (c->slice_ns > 0 && t2 + c->last_full >= c->slice_end) {
            on_slice_end(&c->slice_timer, 1);
            break;
        }
        if (n < c->batch) {
            if (c->pause_ns > 0) {
                /* Calibration: let a backlog build up, to drain it in full batches. */
                c->paused = 1;
                (void)hk_io_stop(&c->udp);
                (void)hk_timer_start_in(&c->resume_timer, on_resume, (int64_t)c->pause_ns, 0);
            }
            break;
        }
        c->st.full_calls++;
    }
}

/* Gives the ingest share (0, 1] of its core from now on (1: all of it). */
static int set_share(cap_ingest_t *c, double share)
{
    (void)hk_timer_stop(&c->period_timer);
    (void)hk_timer_stop(&c->slice_timer);
    c->slice_ns = share < 1 ? (uint64_t)(share * (double)c->period_ns) : 0;
    on_period(&c->period_timer, 1);
    if (share >= 1) {
        return 0;
    }
    return hk_timer_start_in(&c->period_timer, on_period, (int64_t)c->period_ns,
                             (int64_t)c->period_ns);
}

static void command(cap_ingest_t *c, char *line)
{
    double share;
    unsigned long p;
    char label[128] = "";
    if (strncmp(line, "report", 6) == 0) {
        (void)sscanf(line + 6, " %127s", label);
        report(c, label);
    } else if (sscanf(line, "pause %lu", &p) == 1) {
        (void)hk_timer_stop(&c->resume_timer);
        on_resume(&c->resume_timer, 1);
        c->pause_ns = p * 1000;
        printf("capacity_ingest_pause pause_us=%lu\n", p);
        fflush(stdout);
    } else if (sscanf(line, "share %lf", &share) == 1 && share > 0 && share <= 1) {
        int err = set_share(c, share);
        printf("capacity_ingest_share share=%.3f err=%d\n", share, err);
        fflush(stdout);
    } else if (strncmp(line, "quit", 4) == 0) {
        hk_loop_stop(c->loop);
    } else if (line[0] != '\0') {
        fprintf(stderr, "capacity-ingest: unknown command: %s\n", line);
    }
}

static void on_cmd(hk_io_t *io, unsigned revents)
{
    cap_ingest_t *c = io->base.data;
    (void)revents;
    ssize_t n = read(io->fd, c->line + c->line_len, sizeof c->line - 1 - c->line_len);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN) {
            hk_loop_stop(c->loop); /* the driver went away */
        }
        return;
    }
    c->line_len += (size_t)n;
    c->line[c->line_len] = '\0';
    char *nl;
    while ((nl = strchr(c->line, '\n')) != NULL) {
        *nl = '\0';
        command(c, c->line);
        c->line_len -= (size_t)(nl + 1 - c->line);
        memmove(c->line, nl + 1, c->line_len + 1);
    }
    if (c->line_len == sizeof c->line - 1) {
        c->line_len = 0; /* an overlong line: dropped */
    }
}

static int open_socket(int port, int rcvbuf, int *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    if (fd < 0) {
        return -errno;
    }
    /* FORCE passes rmem_max when we may (root); otherwise the capped size is what we get. */
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *bound = ntohs(sin.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    static cap_ingest_t c;
    int port = 0, rcvbuf = 512 << 10, cpu = -1, fifo = 0, period_us = 1000, opt;
    double share = 1;
    c.ndevs = 10000;
    c.batch = 64;
    c.batches = 8;
    while ((opt = getopt(argc, argv, "p:d:b:B:R:c:F:S:T:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'd':
            c.ndevs = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            c.batch = atoi(optarg);
            break;
        case 'B':
            c.batches = atoi(optarg);
            break;
        case 'R':
            rcvbuf = atoi(optarg);
            break;
        case 'c':
            cpu = atoi(optarg);
            break;
        case 'F':
            fifo = atoi(optarg);
            break;
        case 'S':
            share = atof(optarg);
            break;
        case 'T':
            period_us = atoi(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: capacity-ingest [-p PORT] [-d DEVICES] [-b BATCH] "
                    "[-B BATCHES] [-R RCVBUF] [-c CPU] [-F FIFO] [-S SHARE] [-T PERIOD_US]\n");
            return 2;
        }
    }
    if (c.batch < 1 || c.batch > CAP_MAX_BATCH || c.batches < 1 || c.ndevs == 0 || share <= 0 ||
        share > 1 || period_us < 100) {
        fprintf(stderr, "capacity-ingest: bad arguments\n");
        return 2;
    }
    cap_place("capacity-ingest", cpu, fifo);
    c.devs = calloc(c.ndevs, sizeof *c.devs);
    c.bufs = calloc((size_t)c.batch, sizeof *c.bufs);
    if (c.devs == NULL || c.bufs == NULL) {
        return 1;
    }
    /* Touch every record once, so that the first packets do not pay the page faults. */
    memset(c.devs, 0, c.ndevs * sizeof *c.devs);
    for (int i = 0; i < c.batch; i++) {
        c.iov[i] = (struct iovec){.iov_base = c.bufs[i], .iov_len = sizeof c.bufs[i]};
        c.msgs[i].msg_hdr =
            (struct msghdr){.msg_iov = &c.iov[i], .msg_iovlen = 1, .msg_control = c.ctl[i]};
    }
    c.fd = open_socket(port, rcvbuf, &port);
    int err = c.fd < 0 ? c.fd : hk_loop_new(&c.loop, 0);
    if (err < 0) {
        fprintf(stderr, "capacity-ingest: %s\n", hk_strerror(err));
        return 1;
    }
    int got = 0;
    socklen_t gl = sizeof got;
    (void)getsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &got, &gl);
    hk_io_init(c.loop, &c.udp, c.fd);
    hk_io_init(c.loop, &c.cmd, STDIN_FILENO);
    hk_timer_init(c.loop, &c.resume_timer);
    hk_timer_init(c.loop, &c.period_timer);
    hk_timer_init(c.loop, &c.slice_timer);
    c.udp.base.data = c.cmd.base.data = &c;
    c.resume_timer.base.data = c.period_timer.base.data = c.slice_timer.base.data = &c;
    c.period_ns = (uint64_t)period_us * 1000;
    err = set_share(&c, share);
    if (err >= 0) {
        err = hk_io_start(&c.udp, HK_READABLE, on_udp);
    }
    if (err >= 0) {
        err = hk_io_start(&c.cmd, HK_READABLE, on_cmd);
    }
    if (err < 0) {
        fprintf(stderr, "capacity-ingest: %s\n", hk_strerror(err));
        return 1;
    }
    printf("capacity_ingest_port port=%d rcvbuf=%d record_bytes=%d share=%.3f period_us=%d\n", port,
           got, CAP_RECORD, share, period_us);
    fflush(stdout);
    stats_reset(&c);
    (void)hk_loop_run(c.loop, HK_RUN_DEFAULT);
    close(c.fd);
    free(c.devs);
    free(c.bufs);
    return 0;
}
