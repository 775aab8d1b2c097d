/*
 * Upstream state per worker: generations, balancing, passive health, names.
 *
 * Why per worker and per generation: the request path must take no lock,
 * so each worker thread keeps its own copy of every upstream's counters,
 * health and pools; and a reload hands out new httpd_upstream_t structs, so
 * the state of a generation lives as long as a request of that generation
 * does, then closes (its idle connections too).
 *
 * Why a tick: active health checks, re-resolution when a name's TTL (capped
 * by resolve_interval) runs out, the idle-connection sweep and noticing a
 * worker drain all need a clock; one timer per worker, once a second, does
 * them all at O(servers) per second, and nothing runs per request.
 *
 * Until httpd_worker_t has a field for it, the worker's state is found
 * through a thread-local pointer (one worker per thread), checked against
 * the worker.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

#define UPS_TICK_NS 1000000000ull
#define UPS_IDLE_NS (60 * 1000000000ull)         /* an idle pooled connection closes after this */
#define UPS_RESOLVE_RETRY_NS (5 * 1000000000ull) /* after a failed lookup */

static _Thread_local httpd_upstreams_t *worker_state;

static void on_tick(hk_timer_t *t, uint64_t expirations);

static uint64_t now_ns(const httpd_upstreams_t *root)
{
    return hk_loop_now(root->loop);
}

static void root_maybe_free(httpd_upstreams_t *root)
{
    if (!root->draining || !root->tick_closed || root->sets)
        return;
    if (root->resolver)
        hk_resolver_free(root->resolver);
    if (worker_state == root)
        worker_state = NULL;
    free(root);
}

static httpd_upstreams_t *root_get(httpd_worker_t *w)
{
    httpd_upstreams_t *root = worker_state;
    if (root)
        return root->w == w ? root : NULL;
    root = calloc(1, sizeof(*root));
    if (!root)
        return NULL;
    root->w = w;
    root->loop = w->loop;
    if (w->draining) {
        root->draining = root->tick_closed = true;
    } else {
        hk_timer_init(w->loop, &root->tick);
        root->tick.base.data = root;
        hk_timer_start_in(&root->tick, on_tick, UPS_TICK_NS, UPS_TICK_NS);
    }
    worker_state = root;
    return root;
}

/* A literal address needs no lookup: fill it in once. */
static void server_numeric(httpd_userver_t *s)
{
    char host[64];
    const char *h = s->cfg->host;
    size_t len = strlen(h);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    if (len >= sizeof(host))
        return;
    memcpy(host, h, len);
    host[len] = '\0';
    hk_dns_addr_t *a = &s->addrs[0];
    uint16_t port = htons((uint16_t)s->cfg->port);
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, host, &a->in.sin_addr) == 1) {
        a->in.sin_family = AF_INET;
        a->in.sin_port = port;
    } else if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
        a->in6.sin6_family = AF_INET6;
        a->in6.sin6_port = port;
    } else {
        return;
    }
    s->numeric = true;
    s->naddrs = 1;
}

static void set_free(httpd_uset_t *set)
{
    for (size_t i = 0; set->ups && i < set->nups; i++)
        free(set->ups[i].servers);
    free(set->ups);
    if (set->gen)
        httpd_gen_unref(set->gen);
    free(set);
}

static httpd_uset_t *set_new(httpd_upstreams_t *root, httpd_gen_t *gen)
{
    const httpd_config_t *cfg = gen->cfg;
    httpd_uset_t *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    set->root = root;
    set->nups = cfg->nupstreams;
    set->ups = calloc(cfg->nupstreams, sizeof(*set->ups));
    if (!set->ups) {
        set_free(set);
        return NULL;
    }
    uint64_t now = now_ns(root);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        httpd_ups_t *ups = &set->ups[i];
        ups->cfg = &cfg->upstreams[i];
        ups->set = set;
        ups->nservers = ups->cfg->nservers;
        ups->servers = calloc(ups->nservers, sizeof(*ups->servers));
        if (!ups->servers) {
            set_free(set);
            return NULL;
        }
        for (size_t k = 0; k < ups->nservers; k++) {
            httpd_userver_t *s = &ups->servers[k];
            s->cfg = &ups->cfg->servers[k];
            s->ups = ups;
            s->index = (unsigned)k;
            s->dns.data = s;
            s->check_at = now;
            s->stat = httpd_ustats_slot(root->w->server, root->w->index, ups->cfg->name,
                                        s->cfg->host, s->cfg->port);
            if (!s->stat) {
                set_free(set);
                return NULL;
            }
            httpd_userver_health(s); /* a new generation starts with every server up */
            server_numeric(s);
        }
    }
    set->gen = httpd_gen_ref(gen);
    set->retired = root->draining;
    set->next = root->sets;
    root->sets = set;
    /* Names are looked up now, so that the first request rarely waits for them. */
    for (size_t i = 0; i < set->nups; i++) {
        for (size_t k = 0; k < set->ups[i].nservers; k++) {
            if (!set->ups[i].servers[k].numeric)
                (void)httpd_userver_resolve(&set->ups[i].servers[k]);
        }
    }
    return set;
}

void httpd_uset_maybe_free(httpd_uset_t *set)
{
    if (!set->retired || set->inflight || set->handles)
        return;
    httpd_upstreams_t *root = set->root;
    httpd_uset_t **pp = &root->sets;
    while (*pp != set)
        pp = &(*pp)->next;
    *pp = set->next;
    set_free(set);
    root_maybe_free(root);
}

/* No more idle connections, checks or lookups; the set goes once its requests end. */
static void set_retire(httpd_uset_t *set)
{
    set->retired = true;
    set->inflight++; /* the cancellations below must not free the set under us */
    for (size_t i = 0; i < set->nups; i++) {
        for (size_t k = 0; k < set->ups[i].nservers; k++) {
            httpd_userver_t *s = &set->ups[i].servers[k];
            httpd_userver_close_idle(s, UINT64_MAX);
            httpd_ucheck_cancel(s);
            if (s->resolving && !s->waiting)
                (void)hk_dns_cancel(&s->dns);
        }
    }
    set->inflight--;
    httpd_uset_maybe_free(set);
}

httpd_ups_t *httpd_ups_enter(httpd_worker_t *w, httpd_gen_t *gen, const httpd_upstream_t *cfg)
{
    httpd_upstreams_t *root = root_get(w);
    if (!root)
        return NULL;
    size_t i = (size_t)(cfg - gen->cfg->upstreams);
    if (i >= gen->cfg->nupstreams)
        return NULL;
    httpd_uset_t *set = root->sets;
    while (set && set->gen != gen)
        set = set->next;
    if (!set && !(set = set_new(root, gen))) {
        root_maybe_free(root);
        return NULL;
    }
    set->inflight++;
    return &set->ups[i];
}

void httpd_ups_leave(httpd_ups_t *ups)
{
    httpd_uset_t *set = ups->set;
    set->inflight--;
    if (!set->retired && (set->gen != set->root->w->gen || set->root->draining))
        set_retire(set);
    else
        httpd_uset_maybe_free(set);
}

static bool server_down(const httpd_userver_t *s, uint64_t now)
{
    return s->check_down || s->down_until > now;
}

static bool server_skip(const httpd_userver_t *s, uint64_t tried, bool any, uint64_t now)
{
    if (s->index < 64 && (tried & (UINT64_C(1) << s->index)))
        return true;
    return !any && server_down(s, now);
}

/* nginx's smooth weighted round robin: the heaviest current weight wins and pays the total. */
static httpd_userver_t *pick_rr(httpd_ups_t *ups, uint64_t tried, bool any, uint64_t now)
{
    httpd_userver_t *best = NULL;
    int64_t total = 0;
    for (size_t i = 0; i < ups->nservers; i++) {
        httpd_userver_t *s = &ups->servers[i];
        if (server_skip(s, tried, any, now))
            continue;
        int64_t weight = s->cfg->weight ? s->cfg->weight : 1;
        s->cw += weight;
        total += weight;
        if (!best || s->cw > best->cw)
            best = s;
    }
    if (best)
        best->cw -= total;
    return best;
}

/* Fewest requests in flight per unit of weight; ties go round the servers. */
static httpd_userver_t *pick_least(httpd_ups_t *ups, uint64_t tried, bool any, uint64_t now)
{
    httpd_userver_t *best = NULL;
    size_t start = ups->rr++ % ups->nservers;
    for (size_t k = 0; k < ups->nservers; k++) {
        httpd_userver_t *s = &ups->servers[(start + k) % ups->nservers];
        if (server_skip(s, tried, any, now))
            continue;
        uint64_t ws = s->cfg->weight ? s->cfg->weight : 1;
        uint64_t wb = best && best->cfg->weight ? best->cfg->weight : 1;
        if (!best || (uint64_t)s->active * wb < (uint64_t)best->active * ws)
            best = s;
    }
    return best;
}

httpd_userver_t *httpd_ups_pick(httpd_ups_t *ups, uint64_t tried)
{
    uint64_t now = now_ns(ups->set->root);
    for (int any = 0; any < 2; any++) {
        httpd_userver_t *s = ups->cfg->balance == HTTPD_BALANCE_LEAST_CONN
                                 ? pick_least(ups, tried, any, now)
                                 : pick_rr(ups, tried, any, now);
        if (s)
            return s;
    }
    return NULL;
}

void httpd_userver_report(httpd_userver_t *s, bool ok, uint64_t started)
{
    const httpd_upstream_t *cfg = s->ups->cfg;
    uint64_t now = now_ns(s->ups->set->root);
    /*
     * A good answer to a request sent before the last failure says nothing
     * about the server since: a slow request in flight used to clear the
     * mark of a server that had just failed (as nginx, only an exchange
     * begun after the failure counts).
     */
    if (ok && s->last_fail > started)
        return;
    if (ok) {
        s->fails = 0;
        s->down_until = 0;
        httpd_userver_health(s);
        return;
    }
    httpd_count(&s->stat->failures, 1);
    s->last_fail = now;
    if (cfg->max_fails == 0)
        return;
    if (s->fails == 0 || now - s->fail_start > cfg->fail_window) {
        s->fails = 0;
        s->fail_start = now;
    }
    if (++s->fails >= cfg->max_fails) {
        s->down_until = now + cfg->fail_timeout;
        s->fails = 0;
        httpd_count(&s->stat->downs, 1);
        httpd_userver_health(s);
    }
}

void httpd_userver_health(httpd_userver_t *s)
{
    __atomic_store_n(&s->stat->down_until, s->check_down ? UINT64_MAX : s->down_until,
                     __ATOMIC_RELAXED);
}

/* ---- Names ------------------------------------------------------------------------------- */

static bool addr_in(const hk_dns_addr_t *a, const hk_dns_addr_t *set, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (memcmp(a, &set[i], sizeof(*a)) == 0)
            return true;
    }
    return false;
}

/*
 * Whether two answers name the same addresses, in any order: DNS servers
 * rotate the records of an answer (round-robin DNS), and the same addresses
 * in another order must not count as a move, which closes the idle pool.
 * O(n * m) on a handful of addresses, once per TTL.
 */
static bool addrs_same_set(const hk_dns_addr_t *a, unsigned na, const hk_dns_addr_t *b, unsigned nb)
{
    for (unsigned i = 0; i < na; i++) {
        if (!addr_in(&a[i], b, nb))
            return false;
    }
    for (unsigned i = 0; i < nb; i++) {
        if (!addr_in(&b[i], a, na))
            return false;
    }
    return true;
}

static void on_resolved(hk_dns_req_t *req)
{
    httpd_userver_t *s = req->data;
    httpd_uset_t *set = s->ups->set;
    uint64_t now = now_ns(set->root), interval = s->ups->cfg->resolve_interval;
    s->resolving = false;
    set->handles--;
    if (req->result == 0 && req->naddrs > 0) {
        for (unsigned i = 0; i < req->naddrs; i++) /* the port: same offset in both families */
            req->addrs[i].in.sin_port = htons((uint16_t)s->cfg->port);
        bool same = addrs_same_set(s->addrs, s->naddrs, req->addrs, req->naddrs);
        for (unsigned i = 0; i < req->naddrs; i++)
            s->addrs[i] = req->addrs[i];
        s->naddrs = req->naddrs;
        if (!same) /* the name moved: pooled connections go to where it was */
            httpd_userver_close_idle(s, UINT64_MAX);
        s->resolve_err = 0;
        uint64_t ttl = req->ttl_s ? (uint64_t)req->ttl_s * 1000000000ull : interval;
        if (ttl > interval)
            ttl = interval;
        s->resolve_at = now + (ttl < UPS_TICK_NS ? UPS_TICK_NS : ttl);
    } else {
        /* Keep the addresses we had: a stale answer beats none. No address is a failure too. */
        s->resolve_err = req->result < 0 ? req->result : -ENODATA;
        s->resolve_at = now + (interval < UPS_RESOLVE_RETRY_NS ? interval : UPS_RESOLVE_RETRY_NS);
    }
    set->inflight++;
    httpd_userver_resolved(s);
    set->inflight--;
    httpd_uset_maybe_free(set);
}

/*
 * The resolver's servers: the top-level "resolver" directive, else
 * HARK_HTTPD_RESOLVER ("127.0.0.1:5353", c-ares CSV syntax), read when the
 * worker first needs a lookup; neither means resolv.conf.
 */
static int resolver_new(httpd_upstreams_t *root)
{
    hk_resolver_options_t o = {0};
    o.servers =
        root->w->gen->cfg->resolver ? root->w->gen->cfg->resolver : getenv("HARK_HTTPD_RESOLVER");
    o.order = HK_DNS_ORDER_IPV4_FIRST;
    return hk_resolver_new(root->loop, &o, &root->resolver);
}

int httpd_userver_resolve(httpd_userver_t *s)
{
    httpd_uset_t *set = s->ups->set;
    httpd_upstreams_t *root = set->root;
    if (s->numeric || s->resolving)
        return 0;
    int r = root->resolver ? 0 : resolver_new(root);
    uint64_t timeout = s->ups->cfg->connect_timeout;
    if (r == 0)
        r = hk_dns_resolve(root->resolver, &s->dns, s->cfg->host, AF_UNSPEC,
                           now_ns(root) + (timeout ? timeout : UPS_TICK_NS), on_resolved);
    if (r < 0) {
        s->resolve_err = r;
        s->resolve_at = now_ns(root) + UPS_RESOLVE_RETRY_NS;
        return r;
    }
    s->resolving = true;
    set->handles++;
    return 0;
}

/* ---- The tick and the drain -------------------------------------------------------------- */

static void server_tick(httpd_userver_t *s, uint64_t now)
{
    if (now > UPS_IDLE_NS)
        httpd_userver_close_idle(s, now - UPS_IDLE_NS);
    if (!s->numeric && !s->resolving && now >= s->resolve_at)
        (void)httpd_userver_resolve(s);
    if (s->checking)
        httpd_ucheck_stop(s, now);
    else if (s->ups->cfg->health_path && now >= s->check_at) {
        s->check_at = now + s->ups->cfg->health_interval;
        httpd_ucheck_start(s);
    }
}

void httpd_upstreams_start(httpd_worker_t *w)
{
    httpd_gen_t *gen = w->gen;
    if (!gen || gen->cfg->nupstreams == 0 || w->draining)
        return;
    httpd_upstreams_t *root = root_get(w);
    if (!root)
        return;
    httpd_uset_t *set = root->sets;
    while (set && set->gen != gen)
        set = set->next;
    if (!set)
        (void)set_new(root, gen);
}

static void on_tick(hk_timer_t *t, uint64_t expirations)
{
    (void)expirations;
    httpd_upstreams_t *root = t->base.data;
    if (root->w->draining) {
        httpd_upstreams_drain(root->w);
        return;
    }
    httpd_upstreams_start(root->w); /* a reload's upstreams: checks and names without waiting */
    uint64_t now = now_ns(root);
    httpd_uset_t *set = root->sets;
    while (set) {
        httpd_uset_t *next = set->next;
        if (set->gen != root->w->gen) {
            if (!set->retired)
                set_retire(set);
        } else {
            for (size_t i = 0; i < set->nups; i++) {
                for (size_t k = 0; k < set->ups[i].nservers; k++)
                    server_tick(&set->ups[i].servers[k], now);
            }
        }
        set = next;
    }
}

static void on_tick_closed(hk_handle_t *h)
{
    httpd_upstreams_t *root = h->data;
    root->tick_closed = true;
    root_maybe_free(root);
}

void httpd_upstreams_drain(httpd_worker_t *w)
{
    httpd_upstreams_t *root = worker_state;
    if (!root || root->w != w || root->draining)
        return;
    root->draining = true;
    hk_close(&root->tick.base, on_tick_closed);
    httpd_uset_t *set = root->sets;
    while (set) {
        httpd_uset_t *next = set->next;
        if (!set->retired)
            set_retire(set);
        set = next;
    }
}
