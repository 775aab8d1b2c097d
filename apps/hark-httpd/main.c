/*
 * hark-httpd: command line, logging, and the control loop that turns
 * signals into reload (SIGHUP), drain (SIGTERM, SIGINT) and log reopening
 * (SIGUSR1). The workers do all the serving (server.c, worker.c).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accesslog.h"
#include "httpd.h"

#define EXIT_CONFIG 2
#define EXIT_START 3

static void usage(FILE *f)
{
    fputs("usage: hark-httpd [options]\n"
          "  -c, --config FILE    configuration file (docs/httpd-config.md)\n"
          "  -t, --test           check the configuration, then exit (0 ok, 2 bad)\n"
          "  -r, --root DIR       serve DIR (default: the current directory)\n"
          "  -l, --listen ADDR    listen on ADDR:PORT (default 127.0.0.1:8080)\n"
          "  -n, --threads N      worker threads (default 1)\n"
          "                       (-r, -l and -n are for running without -c: a configuration\n"
          "                       file sets root, listen and threads itself)\n"
          "  -h, --help           this text\n"
          "  -V, --version        the version\n"
          "Signals: HUP reloads the configuration file, TERM or INT drains and exits (a\n"
          "second one closes the connections left at once), USR1 reopens the logs.\n"
          "Status page /_hark/status, metrics /metrics.\n"
          "Exit codes: 0 ok, 1 usage, 2 configuration error, 3 could not start.\n",
          f);
}

typedef struct control {
    httpd_t *srv;
    const char *config_path;
    hk_loop_t *loop;
    hk_signal_t hup, term, intr, usr1;
    hk_timer_t drain_deadline, drain_poll;
    bool draining;
} control_t;

static void control_done(control_t *ctl)
{
    /*
     * Closing a signal's last watcher unblocks it, and its default action is
     * back: a TERM or HUP that came during the teardown (or was pending) would
     * kill the process before the last log lines and the exit status. Ignoring
     * them also discards one that is pending.
     */
    int nums[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 4; i++)
        signal(nums[i], SIG_IGN);
    hk_close(&ctl->hup.base, NULL);
    hk_close(&ctl->term.base, NULL);
    hk_close(&ctl->intr.base, NULL);
    hk_close(&ctl->usr1.base, NULL);
    hk_close(&ctl->drain_deadline.base, NULL);
    hk_close(&ctl->drain_poll.base, NULL);
}

static void on_drain_poll(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    control_t *ctl = t->base.data;
    /* Stop listening as soon as every worker stopped accepting: later clients are refused. */
    httpd_server_unlisten(ctl->srv);
    if (httpd_server_open_conns(ctl->srv) == 0)
        control_done(ctl);
}

static void on_drain_deadline(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    control_t *ctl = t->base.data;
    hk_log(HK_LOG_WARN, "drain deadline passed: closing the remaining connections", "open=%llu",
           (unsigned long long)httpd_server_open_conns(ctl->srv));
    httpd_server_drain(ctl->srv);
    control_done(ctl);
}

static void on_signal(hk_signal_t *sig, int signum)
{
    control_t *ctl = sig->base.data;
    if (signum == SIGHUP) {
        if (!ctl->config_path) {
            hk_log(HK_LOG_WARN, "SIGHUP ignored: no configuration file (-c) to reload", NULL);
            return;
        }
        httpd_server_reload(ctl->srv, ctl->config_path);
    } else if (signum == SIGUSR1) {
        hk_log_reopen(NULL);
    } else if (!ctl->draining) {
        ctl->draining = true;
        hk_log(HK_LOG_INFO, "draining: no new connections, finishing requests in flight",
               "signal=%d", signum);
        httpd_server_drain(ctl->srv);
        hk_timer_start_in(&ctl->drain_deadline, on_drain_deadline, (int64_t)ctl->srv->drain_timeout,
                          0); /* the current config's */
        hk_timer_start_in(&ctl->drain_poll, on_drain_poll, 20000000, 20000000);
    } else {
        /* A second TERM or INT (Ctrl-C twice): no more waiting. */
        hk_log(HK_LOG_WARN, "second signal: closing the remaining connections",
               "signal=%d open=%llu", signum,
               (unsigned long long)httpd_server_open_conns(ctl->srv));
        httpd_server_drain(ctl->srv);
        control_done(ctl);
    }
}

static int control_init(control_t *ctl)
{
    int r = hk_loop_new(&ctl->loop, 0);
    if (r < 0)
        return r;
    hk_signal_t *sigs[] = {&ctl->hup, &ctl->term, &ctl->intr, &ctl->usr1};
    int nums[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        hk_signal_init(ctl->loop, sigs[i]);
        sigs[i]->base.data = ctl;
        if ((r = hk_signal_start(sigs[i], on_signal, nums[i])) < 0)
            return r;
    }
    hk_timer_init(ctl->loop, &ctl->drain_deadline);
    hk_timer_init(ctl->loop, &ctl->drain_poll);
    ctl->drain_deadline.base.data = ctl;
    ctl->drain_poll.base.data = ctl;
    return 0;
}

/* Command-line listen addresses are not parsed by a loader: check them like a file's. */
static int check_listens(const httpd_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nlistens; i++) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (hk_addr_parse(cfg->listens[i].addr, &ss, &len) < 0) {
            fprintf(stderr,
                    "hark-httpd: %s: listen %s: expected an address such as 127.0.0.1:8080\n",
                    cfg->source ? cfg->source : "(command line)", cfg->listens[i].addr);
            return -1;
        }
    }
    return 0;
}

/* -t: a log file must be creatable (its directory exists and is writable), as at start. */
static int check_log_paths(const httpd_config_t *cfg)
{
    const char *paths[] = {cfg->access_log, cfg->error_log};
    const char *names[] = {"access_log", "error_log"};
    for (size_t i = 0; i < 2; i++) {
        if (!paths[i] || strcmp(paths[i], "-") == 0)
            continue;
        /* A directory passes access(W_OK), and open(2) then fails with EISDIR. */
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            errno = EISDIR;
        } else if (access(paths[i], W_OK) == 0) {
            continue;
        }
        char *copy = strdup(paths[i]);
        int ok = copy && errno == ENOENT && access(dirname(copy), W_OK) == 0;
        int e = errno;
        free(copy);
        if (!ok) {
            fprintf(stderr, "hark-httpd: %s: %s %s: %s\n",
                    cfg->source ? cfg->source : "(command line)", names[i], paths[i],
                    strerror(e ? e : EACCES));
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"test", no_argument, NULL, 't'},
        {"root", required_argument, NULL, 'r'},    {"listen", required_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *root = NULL, *listen = NULL;
    unsigned threads = 1;
    const char *direct = NULL; /* the first of -r, -l, -n given */
    bool test = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:tr:l:n:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            test = true;
            break;
        case 'r':
            root = optarg;
            direct = direct ? direct : "--root";
            break;
        case 'l':
            listen = optarg;
            direct = direct ? direct : "--listen";
            break;
        case 'n': {
            direct = direct ? direct : "--threads";
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "hark-httpd: --threads: expected 1..256, got \"%s\"\n", optarg);
                return 1;
            }
            threads = (unsigned)n;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            puts("hark-httpd 0.1");
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hark-httpd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 1;
    }
    if (config_path && direct) {
        /* Silently ignoring one of them would serve something other than asked. */
        fprintf(stderr,
                "hark-httpd: %s cannot be combined with -c: set it in %s (root, listen, "
                "threads)\n",
                direct, config_path);
        return 1;
    }
    char err[1024] = "";
    httpd_config_t *cfg = config_path ? httpd_config_load(config_path, err, sizeof(err))
                                      : httpd_config_defaults(root ? root : ".", listen, threads);
    if (!cfg) {
        fprintf(stderr, "hark-httpd: %s\n", err[0] ? err : "out of memory");
        return EXIT_CONFIG;
    }
    if (check_listens(cfg) < 0 || (test && check_log_paths(cfg) < 0)) {
        httpd_config_unref(cfg);
        return EXIT_CONFIG;
    }
    httpd_gen_t *gen = httpd_gen_new(cfg, 1, err, sizeof(err));
    if (!gen) {
        fprintf(stderr, "hark-httpd: %s\n", err);
        return EXIT_CONFIG;
    }
    if (test) {
        printf("hark-httpd: configuration %s is valid\n",
               config_path ? config_path : "(command line)");
        httpd_gen_unref(gen);
        return 0;
    }
    /* sendfile(2) has no MSG_NOSIGNAL: a client that resets mid-body must give EPIPE, not a kill.
     */
    signal(SIGPIPE, SIG_IGN);
    /* Every connection is an fd: take the hard limit, as nginx's worker_rlimit_nofile does. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    hk_log_options_t lo = {.level = HK_LOG_INFO};
    int r0;
    if (gen->cfg->error_log && strcmp(gen->cfg->error_log, "-") != 0)
        lo.path = gen->cfg->error_log;
    if (hk_log_open(&lo) < 0)
        fprintf(stderr, "hark-httpd: cannot open the error log; logging to stderr\n");
    if ((r0 = httpd_access_open(gen->cfg)) < 0) {
        fprintf(stderr, "hark-httpd: access_log %s: %s\n", gen->cfg->access_log, hk_strerror(r0));
        return EXIT_START;
    }
    control_t ctl = {.config_path = config_path};
    static httpd_t srv;
    ctl.srv = &srv;
    /* Signals first: hk_signal_start blocks them here, and the workers inherit the mask. */
    int r = control_init(&ctl);
    if (r == 0)
        r = httpd_server_start(&srv, gen);
    if (r < 0) {
        fprintf(stderr, "hark-httpd: cannot start: %s\n", hk_strerror(r));
        return EXIT_START;
    }
    for (size_t i = 0; i < srv.listen_cfg->nlistens; i++)
        hk_log(HK_LOG_INFO, "listening", "addr=%s tls=%d port=%d threads=%u",
               srv.listen_cfg->listens[i].addr, srv.listen_cfg->listens[i].tls, srv.groups[i].port,
               srv.nworkers);
    fprintf(stderr, "hark-httpd: listening on %s (port %d)\n", srv.listen_cfg->listens[0].addr,
            srv.groups[0].port);
    hk_loop_run(ctl.loop, HK_RUN_DEFAULT);
    httpd_server_stop(&srv);
    hk_loop_free(ctl.loop);
    hk_log(HK_LOG_INFO, "stopped", NULL);
    hk_log_close(1000000000);
    return 0;
}
