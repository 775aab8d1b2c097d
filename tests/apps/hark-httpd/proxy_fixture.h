/*
 * Real upstreams for the proxy tests: nginx (static files, an access log
 * that records the connection number and the forwarded headers), the small
 * Python upstream proxy_upstream.py in its modes, and hark-httpd itself.
 * Every child asks for SIGKILL should the test process die first
 * (PR_SET_PDEATHSIG); proc_stop kills and reaps it.
 */
#ifndef PROXY_FIXTURE_H
#define PROXY_FIXTURE_H

#include <sys/prctl.h>

#include "httpd_util.h"

typedef struct proc {
    pid_t pid;
    int port;
} proc_t;

/* A TCP port free right now on 127.0.0.1 (the server binds it a moment later). */
static inline int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline bool port_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Forks and execs argv with stdout to out_fd (-1: /dev/null), dying with the test. */
static inline pid_t spawn(char *const argv[], int out_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        dup2(null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static inline void proc_stop(proc_t *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    for (int i = 0; waitpid(p->pid, NULL, WNOHANG) == 0; i++) {
        if (i == 200)
            kill(p->pid, SIGKILL);
        usleep(10000);
    }
    p->pid = 0;
}

/* Starts proxy_upstream.py in mode (arg may be NULL) and reads the port it prints. */
static inline void helper_start(proc_t *h, const char *mode, const char *arg)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    char *argv[] = {"/usr/bin/env", "python3", PROXY_HELPER, (char *)mode, (char *)arg, NULL};
    h->pid = spawn(argv, p[1]);
    close(p[1]);
    char buf[64] = {0};
    size_t len = 0;
    while (len < sizeof(buf) - 1 && !strchr(buf, '\n')) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        cr_assert_gt(poll(&pfd, 1, 10000), 0, "the upstream helper did not start");
        ssize_t n = read(p[0], buf + len, sizeof(buf) - 1 - len);
        cr_assert_gt(n, 0, "the upstream helper exited");
        len += (size_t)n;
    }
    close(p[0]);
    cr_assert_eq(sscanf(buf, "port %d", &h->port), 1);
}

/* nginx serving dir/www on a free port; its access log is dir/access.log. */
static inline void nginx_start(proc_t *n, const char *dir)
{
    char conf[512], err[512];
    snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
    snprintf(err, sizeof(err), "%s/nginx-error.log", dir);
    for (int attempt = 0; attempt < 8; attempt++) {
        n->port = free_tcp_port();
        FILE *f = fopen(conf, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "error_log %s/nginx-error.log;\npid %s/nginx.pid;\n"
                "events { worker_connections 256; }\n"
                "http {\n"
                "  client_body_temp_path %s/nt; proxy_temp_path %s/nt;\n"
                "  fastcgi_temp_path %s/nt; uwsgi_temp_path %s/nt; scgi_temp_path %s/nt;\n"
                "  keepalive_timeout 60s; keepalive_requests 10000;\n"
                "  log_format px '$connection|$request_uri|$http_x_forwarded_for|"
                "$http_x_forwarded_proto|$http_via|$http_connection|$http_te|$http_keep_alive|"
                "$http_x_hop|$http_upgrade|$http_proxy_connection|$http_host';\n"
                "  server {\n"
                "    listen 127.0.0.1:%d;\n"
                "    root %s/www;\n"
                "    access_log %s/access.log px;\n"
                "  }\n"
                "}\n",
                dir, dir, dir, dir, dir, dir, dir, n->port, dir, dir);
        fclose(f);
        char *argv[] = {"/usr/sbin/nginx",
                        "-p",
                        (char *)dir,
                        "-e",
                        err,
                        "-c",
                        conf,
                        "-g",
                        "daemon off; master_process off;",
                        NULL};
        n->pid = spawn(argv, -1);
        for (int i = 0; i < 200; i++) {
            if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
                n->pid = 0; /* the port was taken meanwhile: another one */
                break;
            }
            if (port_answers(n->port))
                return;
            usleep(10000);
        }
        proc_stop(n);
    }
    cr_assert_fail("nginx did not start (see %s)", err);
}

/* Lines of dir/name containing needle, and the distinct first fields ($connection) among them. */
static inline int log_lines(const char *dir, const char *name, const char *needle, int *distinct)
{
    char path[512], line[4096];
    long seen[256];
    int nseen = 0, count = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, needle))
            continue;
        count++;
        long conn = strtol(line, NULL, 10);
        bool known = false;
        for (int i = 0; i < nseen; i++)
            known |= seen[i] == conn;
        if (!known && nseen < 256)
            seen[nseen++] = conn;
    }
    fclose(f);
    if (distinct)
        *distinct = nseen;
    return count;
}

/* The last line of dir/name containing needle, into out. */
static inline bool log_last(const char *dir, const char *name, const char *needle, char *out,
                            size_t cap)
{
    char path[512], line[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    bool found = false;
    if (!f)
        return false;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, needle)) {
            snprintf(out, cap, "%s", line);
            found = true;
        }
    }
    fclose(f);
    return found;
}

#endif
