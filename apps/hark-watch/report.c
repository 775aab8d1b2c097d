/*
 * Alert lines. An alert must let an operator act without another tool: who
 * (pid, executable, user), how much (sockets, entries, epoll sets, fds), the
 * yardstick (baseline mean, sd, samples, k and the threshold) and where the
 * sockets go (the top remote endpoints). Lines go through hark/log.h, whose
 * writer escapes every value, so an executable path chosen by an attacker
 * (quotes, newlines) cannot forge or break a line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hark/log.h"
#include "report.h"

struct ep_count {
    char name[80];
    unsigned n;
};

static int by_count(const void *a, const void *b)
{
    const struct ep_count *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return strcmp(x->name, y->name);
}

void report_endpoints(const scan_t *sc, const proc_rec_t *p, char *out, size_t cap)
{
    enum { MAX_DISTINCT = 64, TOP = 3 };
    struct ep_count *eps = calloc(MAX_DISTINCT, sizeof *eps);
    size_t n = 0;
    unsigned other = 0;
    out[0] = '\0';
    if (!eps)
        return;
    for (uint32_t i = 0; i < p->sock_n; i++) {
        const net_sock_t *s = netinfo_find(&sc->net, sc->inodes[p->sock_off + i]);
        char name[80];
        netinfo_format(&sc->net, s, name, sizeof name);
        size_t j = 0;
        while (j < n && strcmp(eps[j].name, name))
            j++;
        if (j == n) {
            if (n == MAX_DISTINCT) {
                other++;
                continue;
            }
            snprintf(eps[n++].name, sizeof eps[0].name, "%s", name);
        }
        eps[j].n++;
    }
    qsort(eps, n, sizeof *eps, by_count);
    size_t len = 0;
    for (size_t j = 0; j < n && j < TOP && len < cap; j++)
        len +=
            (size_t)snprintf(out + len, cap - len, "%s%s*%u", j ? "," : "", eps[j].name, eps[j].n);
    for (size_t j = TOP; j < n; j++)
        other += eps[j].n;
    if (other && len < cap)
        snprintf(out + len, cap - len, "%sother*%u", len ? "," : "", other);
    free(eps);
}

void report_alert(const scan_t *sc, const proc_rec_t *p, int cls, const verdict_t *v,
                  const baseline_t *b, char *line, size_t cap)
{
    char top[512];
    report_endpoints(sc, p, top, sizeof top);
    const char *cname = cls == CLASS_NET ? "network" : "non-network";
    hk_log(HK_LOG_WARN, "epoll interest list above baseline",
           "event=alert pid=%d exe=%s user=%s uid=%u class=%s sockets=%u entries=%u epolls=%u "
           "fds=%u listening=%u mean=%.3f sd=%.3f samples=%llu k=%.3f alpha=%g floor=%g "
           "threshold=%.3f top=%s",
           (int)p->pid, scan_exe(sc, p), scan_user(sc, p), (unsigned)p->uid, cname,
           p->kinds[WK_SOCKET], p->entries, p->epolls, p->fds, p->listening, v->mean, v->sd,
           (unsigned long long)v->samples, b->k, b->alpha, b->floor, v->threshold, top);
    if (line)
        snprintf(line, cap,
                 "hark-watch: alert pid=%d exe=%s user=%s sockets=%u entries=%u mean=%.2f "
                 "sd=%.2f k=%.2f top=%s",
                 (int)p->pid, scan_exe(sc, p), scan_user(sc, p), p->kinds[WK_SOCKET], p->entries,
                 v->mean, v->sd, b->k, top);
}

void report_proc(const scan_t *sc, const proc_rec_t *p, int cls, const verdict_t *v)
{
    hk_log(HK_LOG_DEBUG, "process",
           "event=process pid=%d exe=%s user=%s class=%s fds=%u epolls=%u entries=%u "
           "sockets=%u pipes=%u eventfds=%u timerfds=%u files=%u other=%u warming=%d mean=%.3f "
           "sd=%.3f",
           (int)p->pid, scan_exe(sc, p), scan_user(sc, p),
           cls == CLASS_NET ? "network" : "non-network", p->fds, p->epolls, p->entries,
           p->kinds[WK_SOCKET], p->kinds[WK_PIPE], p->kinds[WK_EVENTFD], p->kinds[WK_TIMERFD],
           p->kinds[WK_FILE],
           p->kinds[WK_OTHER] + p->kinds[WK_SIGNALFD] + p->kinds[WK_EPOLL] + p->kinds[WK_INOTIFY] +
               p->kinds[WK_GONE],
           v->warming, v->mean, v->sd);
}
