/*
 * A c-ares channel driven by the loop.
 *
 * c-ares can run without owning a poller: it reports each socket it opens,
 * and the events it wants on it, through the socket-state callback, and
 * expects ares_process_fd() when one is ready, plus a call when
 * ares_timeout() says a retry or a timeout is due. So the resolver keeps one
 * io watcher per c-ares socket (a handful: one UDP socket per server in use,
 * and TCP ones for truncated answers), found by fd in a small array, and one
 * timer re-armed from ares_timeout() after every call into c-ares. That
 * timer is what makes lookups against a dead server end: without it, a lost
 * UDP datagram would leave the lookup waiting forever.
 *
 * c-ares closes a socket right after reporting it with no events. The
 * watcher is stopped at once and closed (the loop drops events already
 * fetched for it by generation tag), and a new socket that reuses the fd
 * number gets a new watcher, so the two are never confused.
 *
 * Every handle here is unreferenced: an idle resolver (c-ares may keep a
 * socket open) must not keep hk_loop_run going. Requests in flight keep the
 * loop alive instead, as pool work does (hk__loop_req_start).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>

#include "dns/internal.h"
#include "loop/ext.h"

#define HK_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status;

/* ares_library_init is not thread-safe and only matters on Windows; once per process is enough. */
static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void maybe_free(hk_resolver_t *r)
{
    if (r->closing && r->handles == 0) {
        free(r->socks);
        free(r);
    }
}

void hk__dns_handle_closed(hk_resolver_t *r)
{
    r->handles--;
    maybe_free(r);
}

static void on_timer_closed(hk_handle_t *h)
{
    hk__dns_handle_closed(h->data);
}

static void on_sock_closed(hk_handle_t *h)
{
    struct hk__dns_sock *s = HK_CONTAINER(h, struct hk__dns_sock, io);
    hk_resolver_t *r = s->r;
    free(s);
    hk__dns_handle_closed(r);
}

static void on_ares_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    hk_resolver_t *r = t->base.data;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    hk__dns_ares_rearm(r);
}

void hk__dns_ares_rearm(hk_resolver_t *r)
{
    if (r->closing)
        return;
    struct timeval tv;
    hk_timer_stop(&r->ares_timer);
    if (!ares_timeout(r->channel, NULL, &tv))
        return;
    /*
     * ares_timeout rounds down to the millisecond; firing before c-ares's
     * own deadline would find nothing due and re-arm at "now", spinning.
     */
    uint64_t ns = (uint64_t)tv.tv_sec * HK__NS_PER_S + (uint64_t)tv.tv_usec * 1000 + 1000000;
    hk_timer_start(&r->ares_timer, on_ares_timer, hk_time_now() + ns, 0);
}

/* ------------------------------------------------------------------------ */
/* Socket watchers                                                          */
/* ------------------------------------------------------------------------ */

static void on_sock(hk_io_t *io, unsigned revents)
{
    struct hk__dns_sock *s = HK_CONTAINER(io, struct hk__dns_sock, io);
    hk_resolver_t *r = s->r;
    /*
     * An error or hang-up is handed over as readable: c-ares's read gets the
     * error (an ICMP "port unreachable" on UDP) and moves to the next server.
     */
    ares_socket_t rfd = (revents & (HK_READABLE | HK_ERROR | HK_HANGUP)) ? io->fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (revents & HK_WRITABLE) ? io->fd : ARES_SOCKET_BAD;
    /* s may be closed (not freed) by this call: use only r afterwards. */
    ares_process_fd(r->channel, rfd, wfd);
    hk__dns_ares_rearm(r);
}

static int sock_find(const hk_resolver_t *r, int fd)
{
    for (unsigned i = 0; i < r->nsocks; i++)
        if (r->socks[i]->io.fd == fd)
            return (int)i;
    return -1;
}

static void sock_close(hk_resolver_t *r, unsigned i)
{
    struct hk__dns_sock *s = r->socks[i];
    r->socks[i] = r->socks[--r->nsocks];
    hk_io_stop(&s->io);
    hk_close(&s->io.base, on_sock_closed);
}

static int sock_open(hk_resolver_t *r, int fd, unsigned events)
{
    if (r->nsocks == r->socks_cap) {
        unsigned cap = r->socks_cap ? 2 * r->socks_cap : 4;
        struct hk__dns_sock **a = realloc(r->socks, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        r->socks = a;
        r->socks_cap = cap;
    }
    struct hk__dns_sock *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->r = r;
    int rc = hk_io_init(r->loop, &s->io, fd);
    if (rc < 0) {
        free(s);
        return rc;
    }
    r->handles++;
    hk_unref(&s->io.base);
    rc = hk_io_start(&s->io, events, on_sock);
    if (rc < 0) {
        hk_close(&s->io.base, on_sock_closed);
        return rc;
    }
    r->socks[r->nsocks++] = s;
    return 0;
}

/*
 * c-ares's socket-state callback: runs inside c-ares calls (ares_getaddrinfo,
 * ares_process_fd, ares_destroy), so it only changes watchers, never calls
 * back into c-ares or into the caller's code.
 */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    hk_resolver_t *r = data;
    int i = sock_find(r, fd);
    if (!readable && !writable) {
        if (i >= 0)
            sock_close(r, (unsigned)i);
        return;
    }
    unsigned events = (readable ? HK_READABLE : 0u) | (writable ? HK_WRITABLE : 0u);
    int rc = i >= 0 ? hk_io_modify(&r->socks[i]->io, events) : sock_open(r, fd, events);
    /* The lookups on this socket can then only time out; count it so it shows. */
    if (rc < 0)
        r->stats.watch_errors++;
}

/* c-ares 1.18 opens its sockets without close-on-exec. */
static int sock_configure(ares_socket_t fd, int type, void *data)
{
    (void)type;
    (void)data;
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Life of the resolver                                                     */
/* ------------------------------------------------------------------------ */

static int check_options(const hk_resolver_options_t *o)
{
    if (o->flags & ~(HK_RESOLVER_NO_CACHE | HK_RESOLVER_NO_HOSTS | HK_RESOLVER_NO_SEARCH))
        return -EINVAL;
    if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6)
        return -EINVAL;
    if (o->order != HK_DNS_ORDER_RFC6724 && o->order != HK_DNS_ORDER_IPV4_FIRST &&
        o->order != HK_DNS_ORDER_IPV6_FIRST)
        return -EINVAL;
    return 0;
}

static int channel_new(hk_resolver_t *r, const hk_resolver_options_t *o)
{
    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    int mask = ARES_OPT_SOCK_STATE_CB;
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = r;
    if (o->timeout_ms) {
        ao.timeout = (int)(o->timeout_ms > INT32_MAX ? INT32_MAX : o->timeout_ms);
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (o->tries) {
        ao.tries = (int)(o->tries > 100 ? 100 : o->tries);
        mask |= ARES_OPT_TRIES;
    }
    if (o->flags & HK_RESOLVER_NO_SEARCH) {
        ao.flags = ARES_FLAG_NOSEARCH;
        mask |= ARES_OPT_FLAGS;
    }
    char lookups[] = "b";
    if (o->flags & HK_RESOLVER_NO_HOSTS) {
        ao.lookups = lookups;
        mask |= ARES_OPT_LOOKUPS;
    }
    int rc = ares_init_options(&r->channel, &ao, mask);
    if (rc != ARES_SUCCESS)
        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
    if (o->servers && o->servers[0]) {
        rc = ares_set_servers_ports_csv(r->channel, o->servers);
        if (rc != ARES_SUCCESS) {
            ares_destroy(r->channel);
            return rc == ARES_ENOMEM ? -ENOMEM : -EINVAL;
        }
    }
    ares_set_socket_configure_callback(r->channel, sock_configure, NULL);
    return 0;
}

int hk_resolver_new(hk_loop_t *loop, const hk_resolver_options_t *opts, hk_resolver_t **resolverp)
{
    static const hk_resolver_options_t defaults;
    const hk_resolver_options_t *o = opts ? opts : &defaults;
    if (!loop || !resolverp)
        return -EINVAL;
    int rc = check_options(o);
    if (rc < 0)
        return rc;
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS)
        return -EIO;
    hk_resolver_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->flags = o->flags;
    r->family = o->family;
    r->order = o->order;
    unsigned neg = o->negative_ttl_s ? o->negative_ttl_s : HK_DNS_NEGATIVE_TTL_DEFAULT;
    r->negative_ttl_ns = neg * HK__NS_PER_S;
    if (!(o->flags & HK_RESOLVER_NO_CACHE)) {
        unsigned entries = o->cache_entries ? o->cache_entries : HK_DNS_CACHE_ENTRIES_DEFAULT;
        unsigned ttl = o->cache_max_ttl_s ? o->cache_max_ttl_s : HK_DNS_CACHE_MAX_TTL_DEFAULT;
        r->cache = hk__dns_cache_new(entries, ttl * HK__NS_PER_S);
        if (!r->cache) {
            free(r);
            return -ENOMEM;
        }
    }
    rc = channel_new(r, o);
    if (rc < 0) {
        hk__dns_cache_free(r->cache);
        free(r);
        return rc;
    }
    hk_timer_init(loop, &r->ares_timer);
    hk_timer_init(loop, &r->deadline_timer);
    r->ares_timer.base.data = r;
    r->deadline_timer.base.data = r;
    hk_unref(&r->ares_timer.base);
    hk_unref(&r->deadline_timer.base);
    r->handles = 2;
    *resolverp = r;
    return 0;
}

/* Moves every request of src to the end of dst, as cancelled. */
static void take_all(hk_resolver_t *r, struct hk__dns_list *dst, struct hk__dns_list *src)
{
    while (src->head) {
        hk_dns_req_t *req = src->head;
        hk__dns_list_remove(src, req);
        if (req->_query)
            ((struct hk__dns_query *)req->_query)->req = NULL;
        req->_query = NULL;
        hk__dns_heap_remove(r, req);
        req->_state = HK__DNS_DONE;
        hk__dns_list_push(dst, req);
    }
}

int hk_resolver_free(hk_resolver_t *r)
{
    if (!r)
        return -EINVAL;
    if (r->closing)
        return -EALREADY;
    r->closing = 1;
    hk_defer_cancel(r->loop, &r->deliver);
    struct hk__dns_list all = {0};
    take_all(r, &all, &r->pending);
    take_all(r, &all, &r->delivering);
    take_all(r, &all, &r->done);
    while (all.head) {
        hk_dns_req_t *req = all.head;
        hk__dns_list_remove(&all, req);
        req->result = -ECANCELED;
        req->flags = 0;
        req->naddrs = req->total = 0;
        req->ttl_s = 0;
        req->_state = 0;
        r->stats.cancels++;
        hk__loop_req_done(r->loop);
        req->_cb(req);
    }
    /* Ends the orphaned lookups (their callbacks see r->closing) and closes c-ares's sockets. */
    ares_destroy(r->channel);
    while (r->nsocks)
        sock_close(r, r->nsocks - 1);
    hk__dns_cache_free(r->cache);
    r->cache = NULL;
    free(r->heap);
    r->heap = NULL;
    r->heap_len = 0;
    hk_close(&r->ares_timer.base, on_timer_closed);
    hk_close(&r->deadline_timer.base, on_timer_closed);
    return 0;
}

int hk_resolver_stats(const hk_resolver_t *r, hk_resolver_stats_t *out)
{
    if (!r || !out)
        return -EINVAL;
    *out = r->stats;
    out->cache_entries = hk__dns_cache_count(r->cache);
    out->sockets = r->nsocks;
    return 0;
}

void hk_resolver_cache_clear(hk_resolver_t *r)
{
    if (r && r->cache)
        hk__dns_cache_clear(r->cache);
}
