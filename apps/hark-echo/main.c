/*
 * hark-echo: a small demo of the loop (`make run-echo`). An echo server on
 * 127.0.0.1:7000 that prints its own loop metrics every second.
 * Exit codes: 0 after SIGINT/SIGTERM, 1 on a start-up error, 2 on bad usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hark/net.h>

#include "echo.h"

struct echo_app {
    echo_server_t *server;
    hk_timer_t metrics;
    hk_signal_t sigint, sigterm;
    int quiet;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: hark-echo [--listen ADDR:PORT] [--quiet] [--help]\n"
               "\n"
               "An echo server on the hark loop that prints its loop metrics every second.\n"
               "  --listen ADDR:PORT  numeric address and port, IPv6 in brackets ([::1]:7000)\n"
               "                      (default 127.0.0.1:7000; port 0 picks a free one and\n"
               "                      prints it)\n"
               "  --quiet             do not print metrics\n"
               "Stop it with Ctrl-C (SIGINT) or SIGTERM.\n");
}

static void on_metrics(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    struct echo_app *app = t->base.data;
    hk_loop_stats_t st;
    hk_loop_stats(t->base.loop, &st);
    printf("hark-echo: conns=%u bytes=%llu iterations=%llu events=%llu callbacks=%llu "
           "awake_ms=%.1f asleep_ms=%.1f lag_p50_us=%.1f lag_p99_us=%.1f lag_max_us=%.1f\n",
           echo_server_connections(app->server), echo_server_bytes(app->server),
           (unsigned long long)st.iterations, (unsigned long long)st.events,
           (unsigned long long)st.callbacks, st.ns_in_callbacks / 1e6, st.ns_asleep / 1e6,
           hk_loop_stats_lag_quantile(&st, 0.5) / 1e3, hk_loop_stats_lag_quantile(&st, 0.99) / 1e3,
           st.lag_max_ns / 1e3);
    fflush(stdout);
}

static void on_signal(hk_signal_t *sig, int signum)
{
    struct echo_app *app = sig->base.data;
    fprintf(stderr, "hark-echo: %s, shutting down\n", strsignal(signum));
    echo_server_stop(app->server);
    hk_close(&app->metrics.base, NULL);
    hk_close(&app->sigint.base, NULL);
    hk_close(&app->sigterm.base, NULL);
}

static int parse_listen(const char *arg, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || (size_t)(colon - arg) >= hostlen)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return -1;
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    *port = (int)p;
    /* A bad address (numeric IPv4 or [IPv6] only) is a usage error too, not a start-up one. */
    struct sockaddr_storage ss;
    socklen_t sslen;
    return hk_addr_parse(arg, &ss, &sslen) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    char host[64] = "127.0.0.1";
    int port = 7000;
    struct echo_app app = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quiet")) {
            app.quiet = 1;
        } else if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
            if (parse_listen(argv[++i], host, sizeof host, &port) < 0) {
                fprintf(stderr, "hark-echo: --listen wants ADDR:PORT, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "hark-echo: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    /* A peer or a log reader that goes away must be an error code, not a crash. */
    signal(SIGPIPE, SIG_IGN);

    hk_loop_t *loop;
    int r = hk_loop_new(&loop, 0);
    if (r < 0) {
        fprintf(stderr, "hark-echo: cannot create loop: %s\n", hk_strerror(r));
        return 1;
    }
    r = echo_server_start(loop, host, port, &app.server);
    if (r < 0) {
        fprintf(stderr, "hark-echo: cannot listen on %s:%d: %s\n", host, port, hk_strerror(r));
        hk_loop_free(loop);
        return 1;
    }
    printf("hark-echo: listening on %s:%d\n", host, echo_server_port(app.server));
    fflush(stdout);

    hk_timer_init(loop, &app.metrics);
    app.metrics.base.data = &app;
    if (!app.quiet)
        hk_timer_start_in(&app.metrics, on_metrics, 1000000000, 1000000000);
    hk_unref(&app.metrics.base);
    hk_signal_init(loop, &app.sigint);
    hk_signal_init(loop, &app.sigterm);
    app.sigint.base.data = app.sigterm.base.data = &app;
    hk_signal_start(&app.sigint, on_signal, SIGINT);
    hk_signal_start(&app.sigterm, on_signal, SIGTERM);

    r = hk_loop_run(loop, HK_RUN_DEFAULT);
    if (r < 0) {
        fprintf(stderr, "hark-echo: loop failed: %s\n", hk_strerror(r));
        return 1;
    }
    r = hk_loop_free(loop);
    if (r < 0) {
        fprintf(stderr, "hark-echo: loop still busy at exit: %s\n", hk_strerror(r));
        return 1;
    }
    return 0;
}
