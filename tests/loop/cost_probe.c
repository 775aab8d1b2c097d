/*
 * cost_probe N RING WRITES: the workload test_cost runs under callgrind.
 *
 * N socketpairs are watched (level-triggered HK_READABLE), RING of them,
 * spread evenly over the N, pass bytes on: each callback reads its byte and,
 * while writes remain, sends one to the next socketpair of the ring. RING / 2
 * bytes are in flight. Only probe_run (the loop running the round) is meant to
 * be counted (--toggle-collect=probe_run); set-up and teardown are not. Prints
 * `events=E iterations=I`.
 */
#include <hark.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct probe {
    hk_loop_t *loop;
    hk_io_t *ios;
    int *fds;     /* 2n: [2i] watched, [2i + 1] write end */
    int *next_wr; /* n: write end of the next ring member, or -1 off the ring */
    long count, writes_left, expected;
} probe_t;

static void probe_cb(hk_io_t *io, unsigned revents)
{
    (void)revents;
    probe_t *p = io->base.data;
    unsigned char ch;
    if (recv(io->fd, &ch, 1, 0) != 1) {
        fprintf(stderr, "cost_probe: recv failed\n");
        exit(1);
    }
    p->count++;
    if (p->writes_left > 0) {
        p->writes_left--;
        int i = (int)(io - p->ios);
        if (send(p->next_wr[i], "x", 1, 0) != 1) {
            fprintf(stderr, "cost_probe: send failed\n");
            exit(1);
        }
    }
    if (p->count == p->expected)
        hk_loop_stop(p->loop);
}

__attribute__((noinline, used)) void probe_run(probe_t *p);
__attribute__((noinline, used)) void probe_run(probe_t *p)
{
    (void)hk_loop_run(p->loop, HK_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cost_probe N RING WRITES\n");
        return 2;
    }
    int n = atoi(argv[1]), ring = atoi(argv[2]);
    long writes = atol(argv[3]);
    if (n < 2 || ring < 2 || ring > n || writes < 1) {
        fprintf(stderr, "cost_probe: need 2 <= RING <= N and WRITES >= 1\n");
        return 2;
    }
    probe_t p = {0};
    p.ios = calloc((size_t)n, sizeof *p.ios);
    p.fds = calloc((size_t)n * 2, sizeof *p.fds);
    p.next_wr = calloc((size_t)n, sizeof *p.next_wr);
    if (!p.ios || !p.fds || !p.next_wr || hk_loop_new(&p.loop, 0) < 0)
        return 1;
    for (int i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, &p.fds[2 * i]) < 0) {
            perror("cost_probe: socketpair");
            return 1;
        }
        p.next_wr[i] = -1;
    }
    int step = n / ring;
    for (int k = 0; k < ring; k++)
        p.next_wr[k * step] = p.fds[2 * (((k + 1) % ring) * step) + 1];
    for (int i = 0; i < n; i++) {
        if (hk_io_init(p.loop, &p.ios[i], p.fds[2 * i]) < 0)
            return 1;
        p.ios[i].base.data = &p;
        if (hk_io_start(&p.ios[i], HK_READABLE, probe_cb) < 0)
            return 1;
    }
    (void)hk_loop_run(p.loop, HK_RUN_NOWAIT); /* first-iteration work, uncounted */
    int active = ring / 2;
    p.writes_left = writes;
    p.expected = active + writes;
    for (int k = 0; k < active; k++)
        if (send(p.fds[2 * (2 * k * step) + 1], "x", 1, 0) != 1)
            return 1;
    probe_run(&p);
    hk_loop_stats_t st;
    if (hk_loop_stats(p.loop, &st) < 0)
        return 1;
    printf("events=%ld iterations=%llu\n", p.count, (unsigned long long)st.iterations);
    for (int i = 0; i < n; i++) {
        hk_close(&p.ios[i].base, NULL);
    }
    (void)hk_loop_run(p.loop, HK_RUN_NOWAIT);
    (void)hk_loop_free(p.loop);
    for (int i = 0; i < 2 * n; i++)
        close(p.fds[i]);
    free(p.ios);
    free(p.fds);
    free(p.next_wr);
    return p.count == p.expected ? 0 : 1;
}
