/*
 * hk_co_resolve and hk_co_tcp_connect: names and connections for coroutines.
 *
 * Why the bridge loop: a resolver (hark/dns.h) belongs to one hark loop, and
 * coroutines run on any worker. The runtime's blocking bridge already keeps
 * a loop on its own thread (blocking.c), so the resolver lives there,
 * created on first use. A coroutine queues a lookup (on its stack), pokes
 * the loop with hk_async_send and parks; the DNS callback wakes it.
 *
 * What goes wrong with cancellation: a cancelled coroutine wakes while its
 * request is still in the resolver, and returning would free it under the
 * loop's feet. So it queues a cancel request and parks again, this time
 * immune to cancellation, until the loop has finished with the request.
 * Both the DNS callback and the cancel request run on the loop thread, and
 * whichever comes last wakes the coroutine: a small lock on the request
 * (done, cancel_pending) decides which, the wake happens under it, and the
 * woken coroutine takes that lock once before returning, so it cannot leave
 * while the loop still touches its request.
 */
#include "co/internal.h"
#include "hark/co_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct hk__dnsop {
    hk_dns_req_t req;
    hk_co_t *co;
    const char *host;
    int family;
    uint64_t deadline;
    int lock;           /* spin: the three fields below */
    uint64_t seq;       /* the wait the loop side ends */
    int done;           /* the DNS callback has run (or the lookup never started) */
    int cancel_pending; /* a cancel request is queued: it wakes the coroutine */
    struct hk__dnsop *next, *cnext;
} hk__dnsop_t;

/* The lookup is over for the loop: wake the coroutine unless a cancel request will. */
static void hk__dns_done(hk_dns_req_t *req)
{
    hk__dnsop_t *op = req->data;
    hk__spin_lock(&op->lock);
    op->done = 1;
    if (!op->cancel_pending)
        hk__co_wake(op->co, op->seq, 0);
    hk__spin_unlock(&op->lock);
}

/*
 * The loop wakes us while it holds op->lock, and its unlock is its last
 * touch of op: taking the lock once more makes sure it has let go before op
 * (on our stack) is reused.
 */
static void hk__dns_quiesce(hk__dnsop_t *op)
{
    hk__spin_lock(&op->lock);
    hk__spin_unlock(&op->lock);
}

static int hk__dns_resolver(hk_co_runtime_t *rt)
{
    if (rt->resolver)
        return 0;
    /* dns_used was set before this lookup was queued: the options no longer change. */
    pthread_mutex_lock(&rt->block);
    const hk_resolver_options_t *opts = rt->dns_opts;
    pthread_mutex_unlock(&rt->block);
    return hk_resolver_new(rt->bloop, opts, &rt->resolver);
}

void hk__dns_bridge_run(hk_co_runtime_t *rt, struct hk__dnsop *start, struct hk__dnsop *cancel,
                        int stop)
{
    while (start) {
        hk__dnsop_t *op = start;
        start = op->next;
        int r = stop ? -ESHUTDOWN : hk__dns_resolver(rt);
        if (r == 0)
            r = hk_dns_resolve(rt->resolver, &op->req, op->host, op->family, op->deadline,
                               hk__dns_done);
        if (r < 0) {
            op->req.result = r;
            hk__dns_done(&op->req);
        }
    }
    while (cancel) {
        hk__dnsop_t *op = cancel;
        cancel = op->cnext;
        hk__spin_lock(&op->lock);
        op->cancel_pending = 0;
        int done = op->done;
        if (done)
            hk__co_wake(op->co, op->seq, 0);
        hk__spin_unlock(&op->lock);
        /*
         * Not done: the callback can only run later on this thread, so op is
         * still valid here, and the callback (now that no cancel is pending)
         * wakes the coroutine.
         */
        if (!done && hk_dns_cancel(&op->req) < 0) {
            op->req.result = -ECANCELED;
            hk__dns_done(&op->req);
        }
    }
}

void hk__dns_bridge_stop(hk_co_runtime_t *rt)
{
    if (rt->resolver) {
        hk_resolver_free(rt->resolver);
        rt->resolver = NULL;
    }
}

void hk__dns_bridge_fini(hk_co_runtime_t *rt)
{
    if (rt->dns_opts) {
        free((char *)rt->dns_opts->servers);
        free(rt->dns_opts);
        rt->dns_opts = NULL;
    }
}

int hk_co_resolver_configure(hk_co_runtime_t *rt, const hk_resolver_options_t *opts)
{
    if (!rt || !opts)
        return -EINVAL;
    hk_resolver_options_t *copy = malloc(sizeof *copy);
    if (!copy)
        return -ENOMEM;
    *copy = *opts;
    if (opts->servers && !(copy->servers = strdup(opts->servers))) {
        free(copy);
        return -ENOMEM;
    }
    pthread_mutex_lock(&rt->block);
    int r = rt->dns_used ? -EBUSY : 0;
    if (r == 0) {
        hk_resolver_options_t *old = rt->dns_opts;
        rt->dns_opts = copy;
        copy = old;
    }
    pthread_mutex_unlock(&rt->block);
    if (copy) {
        free((char *)copy->servers);
        free(copy);
    }
    return r;
}

int hk_co_resolve(const char *host, int family, hk_dns_addr_t *addrs, size_t max, uint64_t deadline)
{
    hk_co_t *self = hk__co_current();
    if (!self)
        return -EPERM;
    if (!host || !addrs || max == 0 || !hk__deadline_ok(deadline) ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return -EINVAL;
    hk_co_runtime_t *rt = self->rt;
    hk__dnsop_t op;
    memset(&op, 0, sizeof op);
    op.req.data = &op;
    op.co = self;
    op.host = host;
    op.family = family;
    op.deadline = deadline;
    int r = hk__co_begin(self, 0);
    if (r < 0)
        return r;
    op.seq = self->seq;
    pthread_mutex_lock(&rt->block);
    int stop = rt->bstop;
    if (!stop) {
        rt->dns_used = 1;
        if (rt->dtail)
            rt->dtail->next = &op;
        else
            rt->dhead = &op;
        rt->dtail = &op;
    }
    pthread_mutex_unlock(&rt->block);
    if (stop)
        return -ESHUTDOWN;
    hk_async_send(&rt->basync);
    r = hk__co_park(self, HK_FOREVER);
    if (r == -ECANCELED) {
        hk__spin_lock(&op.lock);
        if (!op.done) {
            /* Parks again, immune to cancellation, until the loop lets go of op. */
            hk__co_begin(self, 1);
            op.seq = self->seq;
            op.cancel_pending = 1;
            hk__spin_unlock(&op.lock);
            pthread_mutex_lock(&rt->block);
            op.cnext = rt->dcancel;
            rt->dcancel = &op;
            pthread_mutex_unlock(&rt->block);
            hk_async_send(&rt->basync);
            hk__co_park(self, HK_FOREVER);
            hk__dns_quiesce(&op);
        } else {
            hk__spin_unlock(&op.lock);
        }
        return -ECANCELED;
    }
    hk__dns_quiesce(&op);
    if (op.req.result < 0)
        return op.req.result;
    size_t n = op.req.naddrs < max ? op.req.naddrs : max;
    memcpy(addrs, op.req.addrs, n * sizeof *addrs);
    return (int)n;
}

/* A literal IPv4 or IPv6 address: no lookup. */
static int hk__addr_literal(const char *host, hk_dns_addr_t *a)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, host, &a->in.sin_addr) == 1) {
        a->in.sin_family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
        a->in6.sin6_family = AF_INET6;
        return 1;
    }
    return 0;
}

int hk_co_tcp_connect(const char *host, uint16_t port, uint64_t deadline)
{
    if (!hk__co_current())
        return -EPERM;
    if (!host || port == 0 || !hk__deadline_ok(deadline))
        return -EINVAL;
    hk_dns_addr_t addrs[HK_DNS_MAX_ADDRS];
    int n = hk__addr_literal(host, &addrs[0]);
    if (n == 0)
        n = hk_co_resolve(host, AF_UNSPEC, addrs, HK_DNS_MAX_ADDRS, deadline);
    if (n < 0)
        return n;
    int err = -ECONNREFUSED;
    for (int i = 0; i < n; i++) {
        hk_dns_addr_t *a = &addrs[i];
        if (a->sa.sa_family == AF_INET)
            a->in.sin_port = htons(port);
        else
            a->in6.sin6_port = htons(port);
        int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = -errno; /* e.g. no IPv6 on this host: try the next address */
            continue;
        }
        err = hk_co_connect(fd, &a->sa, hk_dns_addr_len(a), deadline);
        if (err == 0)
            return fd;
        hk_co_close(fd);
        /* The deadline is the whole call's, and a cancelled coroutine stops here. */
        if (err == -ETIMEDOUT || err == -ECANCELED)
            break;
    }
    return err;
}
