/*
 * capacity-send: the load generator of bench/capacity, a separate process on
 * its own core, so that its CPU never counts against the ingest's.
 *
 * Why paced sendmmsg: the question is where loss begins as the offered load
 * crosses the ingest's capacity, so the offered load must be a steady rate,
 * not bursts. Batches of b packets (one sendmmsg each) leave on a schedule,
 * batch k at start + k * b / rate; the sender sleeps until a batch is due
 * (with 1 us of timer slack). A sender that falls more than 2 ms behind
 * (preempted by other work on a shared machine) drops the missed slots
 * instead of bursting them out; the sent count, not the requested rate, is
 * the offered load. The socket is connected, so the kernel looks the route
 * up once.
 *
 * Why UDP GSO (-g G): on loopback the sender's core runs the whole receive
 * path up to the ingest's socket queue (the softirq runs where the packet was
 * sent) and wakes the ingest, a microsecond or more a packet on a VM. With
 * UDP_SEGMENT each send carries G packets that the kernel cuts into G
 * separate 64-byte datagrams just before the ingest's socket queue (the
 * ingest has no UDP_GRO, so it sees and pays for every datagram, as from
 * G separate sends), and the IP path and the wake-up are paid once per G.
 *
 * Packets cycle through the devices with a stride coprime to their number,
 * so that consecutive packets hit distant records and each device's sequence
 * numbers increase (from the start time, in microseconds, so that runs one
 * after another keep increasing).
 *
 * Usage: capacity-send -p PORT [-r RATE (0: as fast as it can)] [-s SECONDS] [-b BATCH]
 *                      [-g SEGMENTS] [-d DEVICES] [-c CPU] [-F FIFO]
 * A batch is b sends of g packets each (one sendmmsg).
 * Output: capacity_send rate= seconds= sent= achieved_pps= errors= late_resets= batch= cpu_ns=
 */

#include "packet.h"
#include "place.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CAP_SEND_MAX_BATCH 256
#define CAP_SEND_MAX_SEGS 64 /* the kernel's UDP_MAX_SEGMENTS is 64 or more */
#define CAP_STRIDE 7919u     /* a prime: coprime to any device count it does not divide */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Sleeps until due (timer slack set to 1 us), without spinning: a sender that
 * spins at SCHED_FIFO would use all of its core and be throttled by the
 * kernel's real-time limit for 50 ms of every second. A wake-up that comes
 * late makes the next batch leave at once, so the rate holds on average.
 */
static void wait_until(uint64_t due)
{
    if (now_ns() < due) {
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                              .tv_nsec = (long)(due % 1000000000u)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
}

int main(int argc, char **argv)
{
    int port = 0, batch = 32, segs = 1, cpu = -1, fifo = 0;
    uint32_t ndevs = 10000;
    double rate = 0, seconds = 2;
    int opt;
    while ((opt = getopt(argc, argv, "p:r:s:b:g:d:c:F:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'b':
            batch = atoi(optarg);
            break;
        case 'g':
            segs = atoi(optarg);
            break;
        case 'd':
            ndevs = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            cpu = atoi(optarg);
            break;
        case 'F':
            fifo = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: capacity-send -p PORT [-r RATE] [-s SECONDS] [-b BATCH] "
                            "[-g SEGMENTS] [-d DEVICES] [-c CPU] [-F FIFO]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || batch < 1 || batch > CAP_SEND_MAX_BATCH || segs < 1 ||
        segs > CAP_SEND_MAX_SEGS || ndevs == 0 || ndevs % CAP_STRIDE == 0 || rate < 0 ||
        seconds <= 0) {
        fprintf(stderr, "capacity-send: bad arguments\n");
        return 2;
    }
    cap_place("capacity-send", cpu, fifo);
    (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int gso = CAP_PACKET;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        (segs > 1 && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &gso, sizeof gso) != 0)) {
        fprintf(stderr, "capacity-send: %s\n", strerror(errno));
        return 1;
    }

    static unsigned char buf[CAP_SEND_MAX_BATCH * CAP_SEND_MAX_SEGS][CAP_PACKET];
    static struct iovec iov[CAP_SEND_MAX_BATCH];
    static struct mmsghdr msgs[CAP_SEND_MAX_BATCH];
    for (int i = 0; i < batch; i++) {
        iov[i] = (struct iovec){.iov_base = buf[i * segs], .iov_len = (size_t)CAP_PACKET * segs};
        msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int per_batch = batch * segs;

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    uint64_t seq0 = start / 1000, i = 0, sent = 0, errors = 0, resets = 0, k = 0;
    double gap = rate > 0 ? per_batch * 1e9 / rate : 0; /* ns between batches */
    uint64_t sched = start;                             /* the schedule's origin after a reset */
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) {
            break;
        }
        if (rate > 0) {
            uint64_t due = sched + (uint64_t)(k * gap);
            if (t > due + 2000000) {
                resets++;
                sched = t;
                k = 0;
                due = t;
            }
            wait_until(due);
            k++;
        }
        uint64_t ts = now_ns();
        for (int j = 0; j < per_batch; j++, i++) {
            uint32_t dev = (uint32_t)((i * CAP_STRIDE) % ndevs);
            cap_encode(buf[j], dev, seq0 + i / ndevs, ts);
        }
        int done = 0;
        while (done < batch) {
            int n = sendmmsg(fd, msgs + done, (unsigned)(batch - done), 0);
            if (n < 0) {
                errors++;
                if (errno != EINTR && errno != ENOBUFS && errno != EAGAIN) {
                    fprintf(stderr, "capacity-send: sendmmsg: %s\n", strerror(errno));
                    return 1;
                }
                /* ENOBUFS: the packet is lost at the sender; it counts as not sent. */
                break;
            }
            done += n;
        }
        sent += (uint64_t)done * (uint64_t)segs;
    }
    uint64_t elapsed = now_ns() - start;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_ns =
        (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) *
            1e9 +
        (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
         ru0.ru_stime.tv_usec) *
            1e3;
    printf("capacity_send rate=%.0f seconds=%.3f sent=%llu achieved_pps=%.0f errors=%llu "
           "late_resets=%llu batch=%d segments=%d cpu_ns_per_packet=%.1f\n",
           rate, elapsed / 1e9, (unsigned long long)sent, sent * 1e9 / elapsed,
           (unsigned long long)errors, (unsigned long long)resets, batch, segs,
           sent ? cpu_ns / sent : 0.0);
    close(fd);
    return 0;
}
