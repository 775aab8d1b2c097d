/*
 * The server: generations (config + what is derived from it), listeners,
 * worker threads, reload and drain.
 *
 * Why a reload never drops a connection: listeners are created once and
 * stay (a reload that changes them is refused with a message: that needs a
 * restart); a new generation is built completely on the control thread (the
 * config parsed, root directories opened, certificates loaded) before it is
 * published, so a broken config is rejected with the old one still serving;
 * workers switch at their next loop iteration, and each connection switches
 * between two requests, never inside one.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accesslog.h"
#include "conn.h"

static void gen_free(httpd_gen_t *gen)
{
    const httpd_config_t *cfg = gen->cfg;
    if (gen->root_fds) {
        for (size_t i = 0; i < cfg->nlocations; i++)
            if (gen->root_fds[i] >= 0)
                close(gen->root_fds[i]);
    }
    if (gen->tls) {
        for (size_t i = 0; i < cfg->nlistens; i++)
            if (gen->tls[i])
                hk_tls_ctx_free(gen->tls[i]);
    }
    free(gen->root_fds);
    free(gen->tls);
    httpd_config_unref(gen->cfg);
    free(gen);
}

httpd_gen_t *httpd_gen_ref(httpd_gen_t *gen)
{
    if (gen)
        atomic_fetch_add_explicit(&gen->refs, 1, memory_order_relaxed);
    return gen;
}

void httpd_gen_unref(httpd_gen_t *gen)
{
    if (gen && atomic_fetch_sub_explicit(&gen->refs, 1, memory_order_acq_rel) == 1)
        gen_free(gen);
}

static int gen_tls(httpd_gen_t *gen, size_t i, char *err, size_t errlen)
{
    const httpd_listen_t *l = &gen->cfg->listens[i];
    hk_tls_cert_t *sni = calloc(l->ncerts ? l->ncerts : 1, sizeof(*sni));
    if (!sni)
        return -ENOMEM;
    for (size_t k = 1; k < l->ncerts; k++) {
        sni[k - 1].name = l->certs[k].host;
        sni[k - 1].cert_file = l->certs[k].cert;
        sni[k - 1].key_file = l->certs[k].key;
    }
    static const char *const alpn[] = {"http/1.1", NULL};
    hk_tls_ctx_options_t o = {.cert_file = l->certs[0].cert,
                              .key_file = l->certs[0].key,
                              .sni_certs = sni,
                              .sni_count = l->ncerts - 1,
                              .alpn = alpn};
    int r = hk_tls_ctx_new(&o, &gen->tls[i]);
    free(sni);
    if (r < 0 && l->line)
        snprintf(err, errlen, "%s:%u: listen %s: TLS: %s", gen->cfg->source ? gen->cfg->source : "",
                 l->line, l->addr, hk_tls_last_error());
    else if (r < 0)
        snprintf(err, errlen, "%s: listen %s: TLS: %s", gen->cfg->source ? gen->cfg->source : "",
                 l->addr, hk_tls_last_error());
    return r;
}

httpd_gen_t *httpd_gen_new(httpd_config_t *cfg, unsigned id, char *err, size_t errlen)
{
    httpd_gen_t *gen = calloc(1, sizeof(*gen));
    if (!gen) {
        snprintf(err, errlen, "out of memory");
        httpd_config_unref(cfg);
        return NULL;
    }
    atomic_init(&gen->refs, 1);
    gen->id = id;
    gen->cfg = cfg;
    gen->root_fds = malloc(sizeof(int) * (cfg->nlocations ? cfg->nlocations : 1));
    gen->tls = calloc(cfg->nlistens ? cfg->nlistens : 1, sizeof(*gen->tls));
    if (!gen->root_fds || !gen->tls) {
        snprintf(err, errlen, "out of memory");
        free(gen->root_fds);
        gen->root_fds = NULL;
        gen_free(gen);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nlocations; i++)
        gen->root_fds[i] = -1;
    for (size_t i = 0; i < cfg->nlocations; i++) {
        const char *root = cfg->locations[i].root;
        if (!root)
            continue;
        /* The control thread may block here (a cold disk at reload); workers never do. */
        gen->root_fds[i] = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (gen->root_fds[i] < 0) {
            snprintf(err, errlen, "%s: root %s: %s", cfg->source ? cfg->source : "--root", root,
                     strerror(errno));
            gen_free(gen);
            return NULL;
        }
    }
    for (size_t i = 0; i < cfg->nlistens; i++) {
        if (cfg->listens[i].tls && gen_tls(gen, i, err, errlen) < 0) {
            gen_free(gen);
            return NULL;
        }
    }
    return gen;
}

static void publish_free(void *version, void *arg)
{
    (void)arg;
    httpd_gen_unref(version);
}

static int address_free(const char *addr);

int httpd_server_start(httpd_t *srv, httpd_gen_t *gen)
{
    const httpd_config_t *cfg = gen->cfg;
    srv->started_ns = hk_time_now();
    srv->nworkers = cfg->threads ? cfg->threads : 1;
    pthread_mutex_init(&srv->ustats_lock, NULL);
    srv->nlisteners = (unsigned)cfg->nlistens;
    atomic_store(&srv->gen_id, gen->id);
    srv->listen_cfg = httpd_config_ref(gen->cfg);
    srv->drain_timeout = gen->cfg->drain_timeout;
    srv->initial = httpd_gen_ref(gen);
    int r = hk_publish_new(&srv->publish, publish_free, NULL);
    if (r < 0)
        return r;
    r = hk_publish_set(srv->publish, gen); /* the publication owns the caller's reference */
    if (r < 0)
        return r;
    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    srv->groups = calloc(srv->nlisteners, sizeof(*srv->groups));
    srv->members = calloc(srv->nlisteners, sizeof(*srv->members));
    if (!srv->workers || !srv->groups || !srv->members)
        return -ENOMEM;
    for (unsigned l = 0; l < srv->nlisteners; l++) {
        srv->members[l] = calloc(srv->nworkers, sizeof(**srv->members));
        if (!srv->members[l])
            return -ENOMEM;
        r = address_free(cfg->listens[l].addr);
        if (r < 0) {
            fprintf(stderr, "hark-httpd: listen %s: %s%s\n", cfg->listens[l].addr, hk_strerror(r),
                    r == -EADDRINUSE ? " (another process listens there)" : "");
            return r;
        }
        r = hk_accept_group_open(&srv->groups[l], HK_ACCEPT_DEFAULT, cfg->listens[l].addr, 4096,
                                 HK_LISTEN_NODELAY, srv->members[l], srv->nworkers);
        if (r < 0) {
            fprintf(stderr, "hark-httpd: listen %s: %s\n", cfg->listens[l].addr, hk_strerror(r));
            return r;
        }
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        httpd_worker_t *w = &srv->workers[i];
        w->server = srv;
        w->index = i;
        pthread_mutex_init(&w->snap_lock, NULL);
        pthread_mutex_init(&w->stop_lock, NULL);
        if (pthread_create(&w->thread, NULL, httpd_worker_main, w) != 0)
            return -EAGAIN;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        int s;
        while ((s = __atomic_load_n(&srv->workers[i].started, __ATOMIC_ACQUIRE)) == 0)
            usleep(1000);
        if (s < 0)
            return s;
    }
    return 0;
}

/*
 * The workers' listeners use SO_REUSEPORT, so a second hark-httpd on the same
 * address would bind too and take half the connections. A plain socket (no
 * SO_REUSEPORT; SO_REUSEADDR so that TIME_WAIT does not count) finds out
 * first whether anything listens there already. Port 0 is always free.
 */
static int address_free(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int r = hk_addr_parse(addr, &ss, &len);
    if (r < 0)
        return r;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    r = bind(fd, (struct sockaddr *)&ss, len) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Listeners cannot change on reload: the sockets stay, so nothing in flight is lost. */
static int same_listeners(const httpd_config_t *a, const httpd_config_t *b)
{
    if (a->nlistens != b->nlistens || a->threads != b->threads)
        return 0;
    for (size_t i = 0; i < a->nlistens; i++)
        if (strcmp(a->listens[i].addr, b->listens[i].addr) != 0 ||
            a->listens[i].tls != b->listens[i].tls)
            return 0;
    return 1;
}

/*
 * The reason goes in one field, whole: the log writer quotes and escapes a value itself, and a
 * space in the fields format starts another field ("error=\"access_log %s: %s\"" was written
 * error="\"access_log" _=/p/a.log: _="no such file or directory\"").
 */
static void reload_rejected(const char *err)
{
    hk_log(HK_LOG_ERROR, "reload rejected, the old configuration stays", "error=%s", err);
}

int httpd_server_reload(httpd_t *srv, const char *path)
{
    char err[512] = "";
    httpd_config_t *cfg = httpd_config_load(path, err, sizeof(err));
    if (!cfg) {
        reload_rejected(err);
        return -EINVAL;
    }
    httpd_gen_t *gen = httpd_gen_new(cfg, atomic_load(&srv->gen_id) + 1, err, sizeof(err));
    if (!gen) {
        reload_rejected(err);
        return -EINVAL;
    }
    if (!same_listeners(srv->listen_cfg, cfg)) {
        hk_log(HK_LOG_ERROR, "reload rejected: listen addresses and threads need a restart",
               "file=%s", path);
        httpd_gen_unref(gen);
        return -EINVAL;
    }
    int ar = httpd_access_reload(cfg);
    if (ar == -ENOTSUP) {
        hk_log(HK_LOG_WARN, "access_log change not applied (needs a restart)", "file=%s", path);
    } else if (ar < 0) {
        snprintf(err, sizeof(err), "access_log %s: %s", cfg->access_log, hk_strerror(ar));
        reload_rejected(err);
        httpd_gen_unref(gen);
        return -EINVAL;
    }
    const char *el0 = srv->listen_cfg->error_log ? srv->listen_cfg->error_log : "-";
    if (strcmp(el0, cfg->error_log ? cfg->error_log : "-") != 0)
        hk_log(HK_LOG_WARN, "error_log change not applied (needs a restart)", "file=%s", path);
    /* Each worker sizes its open-file cache and makes its resolver once. */
    if (cfg->open_file_cache != srv->listen_cfg->open_file_cache)
        hk_log(HK_LOG_WARN, "open_file_cache change not applied (needs a restart)", "file=%s",
               path);
    const char *rs0 = srv->listen_cfg->resolver ? srv->listen_cfg->resolver : "";
    if (strcmp(rs0, cfg->resolver ? cfg->resolver : "") != 0)
        hk_log(HK_LOG_WARN, "resolver change not applied (needs a restart)", "file=%s", path);
    srv->drain_timeout = cfg->drain_timeout;
    atomic_fetch_add(&srv->gen_id, 1);
    int r = hk_publish_set(srv->publish, gen);
    if (r < 0) {
        httpd_gen_unref(gen);
        return r;
    }
    hk_log(HK_LOG_INFO, "configuration reloaded", "file=%s generation=%u", path, gen->id);
    return 0;
}

/*
 * First call: drain (stop accepting, finish requests). Second call: close what
 * is left. A worker whose connections are all gone has ended its loop and
 * freed it: it gets nothing (a send there wrote to freed memory).
 */
void httpd_server_drain(httpd_t *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        httpd_worker_t *w = &srv->workers[i];
        pthread_mutex_lock(&w->stop_lock);
        if (!w->exited)
            hk_async_send(&w->stop_async);
        pthread_mutex_unlock(&w->stop_lock);
    }
}

void httpd_server_unlisten(httpd_t *srv)
{
    if (srv->unlistened || atomic_load(&srv->members_closed) < srv->nlisteners * srv->nworkers)
        return;
    for (unsigned l = 0; l < srv->nlisteners; l++)
        hk_accept_group_stop_listening(&srv->groups[l]);
    srv->unlistened = true;
}

/* Connections still open on every worker (relaxed reads of the workers' counters). */
uint64_t httpd_server_open_conns(httpd_t *srv)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < srv->nworkers; i++)
        n += httpd_read(&srv->workers[i].counters.conns_open);
    return n;
}

void httpd_server_stop(httpd_t *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    for (unsigned l = 0; l < srv->nlisteners; l++) {
        hk_accept_group_close(&srv->groups[l]);
        free(srv->members[l]);
    }
    httpd_gen_unref(srv->initial);
    hk_publish_free(srv->publish);
    hk_publish_barrier();
    httpd_config_unref(srv->listen_cfg);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        pthread_mutex_destroy(&srv->workers[i].snap_lock);
        pthread_mutex_destroy(&srv->workers[i].stop_lock);
    }
    free(srv->workers);
    free(srv->groups);
    free(srv->members);
    httpd_ustats_free(srv);
    pthread_mutex_destroy(&srv->ustats_lock);
}
