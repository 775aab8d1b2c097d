/*
 * hk_stream_init_socket: a stream on an fd the caller vouches for (a
 * non-blocking socket) is the same stream as hk_stream_init makes, without
 * the two system calls that check it. The calls are counted by wrapping
 * fcntl and fstat in this executable (libhark is linked in statically, so
 * its calls land here first).
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <hark.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int counting, fcntl_calls, fstat_calls;

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    if (counting)
        fcntl_calls++;
    int (*real)(int, int, ...) = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
    return real(fd, cmd, arg);
}

int fstat(int fd, struct stat *st)
{
    if (counting)
        fstat_calls++;
    int (*real)(int, struct stat *) = (int (*)(int, struct stat *))dlsym(RTLD_NEXT, "fstat");
    return real(fd, st);
}

static char got[64];
static size_t got_len;

static void on_read(hk_stream_t *s, ssize_t n, const hk_buf_t *buf)
{
    (void)s;
    if (n > 0 && got_len + (size_t)n < sizeof got) {
        memcpy(got + got_len, buf->base, (size_t)n);
        got_len += (size_t)n;
    }
}

/* Wraps fds[0] with init (counting its fcntl and fstat calls), then reads "ping" through it. */
static void check(int (*init)(hk_loop_t *, hk_stream_t *, int), int want_calls)
{
    hk_loop_t *loop;
    cr_assert_eq(hk_loop_new(&loop, 0), 0);
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    hk_stream_t s;
    fcntl_calls = fstat_calls = 0;
    counting = 1;
    int r = init(loop, &s, fds[0]);
    counting = 0;
    cr_assert_eq(r, 0, "%s", hk_strerror(r));
    cr_assert_eq(fcntl_calls + fstat_calls, want_calls, "fcntl %d, fstat %d", fcntl_calls,
                 fstat_calls);
    got_len = 0;
    cr_assert_eq(hk_stream_read_start(&s, NULL, on_read), 0);
    cr_assert_eq(write(fds[1], "ping", 4), 4);
    for (int i = 0; i < 100 && got_len < 4; i++)
        hk_loop_run(loop, HK_RUN_ONCE);
    cr_assert_eq(got_len, 4);
    cr_assert_eq(memcmp(got, "ping", 4), 0);
    hk_stream_close(&s, NULL);
    close(fds[1]);
    hk_loop_run(loop, HK_RUN_DEFAULT);
    hk_loop_free(loop);
}

Test(stream_socket, init_checks_with_two_calls)
{
    check(hk_stream_init, 2);
}

Test(stream_socket, init_socket_makes_no_call)
{
    check(hk_stream_init_socket, 0);
}
