/*
 * A read after a short read of a stream socket waits for the next edge
 * instead of paying a read that returns EAGAIN (src/co/poll.c). What must
 * hold whatever the timing: data written between the two reads is still
 * read; data written later wakes the reader; EOF is seen, also when it came
 * with the data; and fds where a
 * short read proves nothing (datagrams, pipes) never skip their read.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hark.h>

#include "co_check.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int pair(int type, int fds[2])
{
    return socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
}

/* Registers fds[0] with the netpoller: a read that has to wait once. */
static int register_fd(int fd)
{
    char b;
    return hk_co_read(fd, &b, 1, hk_time_now() + MS) == -ETIMEDOUT;
}

/* Joins the writer (which must have succeeded) and closes both ends. */
static int finish(hk_co_t *writer, int fds[2])
{
    void *res;
    int ok = hk_co_join(writer, &res, HK_FOREVER) == 0 && res == (void *)1;
    ok &= hk_co_close(fds[0]) == 0;
    ok &= close(fds[1]) == 0;
    return ok;
}

static void *between_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(pair(SOCK_STREAM, fds) == 0);
    CHECK(register_fd(fds[0]));
    char buf[64];
    for (int round = 0; round < 200; round++) {
        CHECK(write(fds[1], "abc", 3) == 3);
        CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 3); /* short */
        /* Written after the short read and before the next one: must not be missed. */
        CHECK(write(fds[1], "defg", 4) == 4);
        ssize_t n = hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS);
        CHECK(n == 4 && memcmp(buf, "defg", 4) == 0);
    }
    /* A full read (len bytes) proves nothing: the next read must find what is left. */
    char big[200];
    memset(big, 'x', sizeof big);
    CHECK(write(fds[1], big, sizeof big) == (ssize_t)sizeof big);
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 64);
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 64);
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 64);
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 8);
    /* After a short read, EOF (an edge too) ends the next read with 0. */
    CHECK(close(fds[1]) == 0);
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 0);
    CHECK(hk_co_close(fds[0]) == 0);
    return (void *)1;
}

Test(read_drained, data_between_two_reads_is_read)
{
    co_run(between_main, 1, NULL);
}

typedef struct later {
    int fd;
} later_t;

static void *writer(void *arg)
{
    later_t *l = arg;
    for (int i = 0; i < 100; i++) {
        if (hk_co_sleep_until(hk_time_now() + MS / 10) < 0)
            return NULL;
        if (write(l->fd, "x", 1) != 1)
            return NULL;
    }
    return (void *)1;
}

/* A reader parked after its short read is woken by data written later, from another worker. */
static void *later_main(void *arg)
{
    hk_co_runtime_t *rt = arg;
    (void)rt;
    int fds[2];
    CHECK(pair(SOCK_STREAM, fds) == 0);
    CHECK(register_fd(fds[0]));
    later_t l = {.fd = fds[1]};
    hk_co_t *w;
    CHECK(hk_co_spawn(NULL, writer, &l, NULL, &w) == 0);
    int got = 0;
    char buf[64];
    while (got < 100) {
        ssize_t n = hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS);
        CHECK(n > 0);
        got += (int)n;
    }
    CHECK(finish(w, fds));
    return (void *)1;
}

Test(read_drained, data_written_later_wakes_the_reader)
{
    co_run(later_main, 2, NULL);
}

static void *two_datagrams(void *arg)
{
    later_t *l = arg;
    if (hk_co_sleep_until(hk_time_now() + 5 * MS) < 0)
        return NULL;
    /* Back to back: the parked reader's one wake-up covers both. */
    if (write(l->fd, "one", 3) != 3 || write(l->fd, "two", 3) != 3)
        return NULL;
    return (void *)1;
}

/*
 * Datagrams: a short read leaves the next datagram queued and no new edge
 * will come, so the read after it must not wait for one. The reader parks
 * first, so the edge of the two datagrams is consumed by its wake-up.
 */
static void *dgram_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(pair(SOCK_DGRAM, fds) == 0);
    CHECK(register_fd(fds[0]));
    later_t l = {.fd = fds[1]};
    hk_co_t *w;
    CHECK(hk_co_spawn(NULL, two_datagrams, &l, NULL, &w) == 0);
    char buf[64];
    CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 3);
    CHECK(memcmp(buf, "one", 3) == 0);
    ssize_t n = hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 2000 * MS);
    CHECK(n == 3 && memcmp(buf, "two", 3) == 0);
    CHECK(finish(w, fds));
    return (void *)1;
}

static void *data_then_fin(void *arg)
{
    later_t *l = arg;
    if (hk_co_sleep_until(hk_time_now() + 5 * MS) < 0)
        return NULL;
    /* Back to back: the data and the FIN raise one edge for the parked reader. */
    if (write(l->fd, "last", 4) != 4 || shutdown(l->fd, SHUT_WR) != 0)
        return NULL;
    return (void *)1;
}

/* A short read stops before a FIN that came with the data: the next read must see EOF. */
static void *fin_main(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        int fds[2];
        CHECK(pair(SOCK_STREAM, fds) == 0);
        CHECK(register_fd(fds[0]));
        later_t l = {.fd = fds[1]};
        hk_co_t *w;
        CHECK(hk_co_spawn(NULL, data_then_fin, &l, NULL, &w) == 0);
        char buf[64];
        CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 4);
        CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 2000 * MS) == 0);
        CHECK(finish(w, fds));
    }
    return (void *)1;
}

Test(read_drained, fin_with_the_data_is_seen)
{
    co_run(fin_main, 1, NULL);
}

Test(read_drained, datagrams_never_skip)
{
    co_run(dgram_main, 1, NULL);
}

/*
 * A deadline that has already passed still tries the read once, as 0 does:
 * after a short read, data queued since then is returned, not -ETIMEDOUT.
 * One worker that never idles between the write and the read, so no netpoller
 * pass can turn the new data into a ready bit first.
 */
static void *past_deadline_main(void *arg)
{
    (void)arg;
    int fds[2];
    CHECK(pair(SOCK_STREAM, fds) == 0);
    CHECK(register_fd(fds[0]));
    char buf[64];
    int timeouts = 0;
    for (int round = 0; round < 50; round++) {
        CHECK(write(fds[1], "abc", 3) == 3);
        CHECK(hk_co_read(fds[0], buf, sizeof buf, hk_time_now() + 5000 * MS) == 3); /* short */
        CHECK(write(fds[1], "defg", 4) == 4);
        ssize_t n = hk_co_read(fds[0], buf, sizeof buf, hk_time_now() - 1);
        if (n == -ETIMEDOUT) {
            timeouts++;
            n = hk_co_read(fds[0], buf, sizeof buf, 0); /* the bytes were there all along */
        }
        CHECK(n == 4 && memcmp(buf, "defg", 4) == 0);
    }
    if (timeouts)
        fprintf(stderr,
                "a read with a passed deadline gave -ETIMEDOUT with 4 bytes queued, "
                "%d times in 50\n",
                timeouts);
    CHECK(timeouts == 0);
    CHECK(hk_co_close(fds[0]) == 0);
    CHECK(close(fds[1]) == 0);
    return (void *)1;
}

Test(read_drained, passed_deadline_still_tries_the_read)
{
    co_run(past_deadline_main, 1, NULL);
}
