/*
 * The parser of hark/conf.h: tokens to a tree of directives.
 *
 * Why recursion is safe here: a block's children are parsed by a nested
 * call, and the depth is checked before each '{' is entered, so a hostile
 * "{{{{..." stops at max_depth (16 by default) frames, each small. Arrays of
 * arguments and children are collected in temporary vectors and copied into
 * the arena once complete, so the tree holds no slack and an error half-way
 * frees exactly what was allocated. Every limit is checked before the work
 * it bounds: the input size before reading on, a token's length byte by
 * byte, the directive count before a node is added.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/internal.h"
#include "hark/error.h"

typedef struct parser {
    hk__lexer_t lx;
    hk__arena_t *arena;
    hk_conf_limits_t lim;
    size_t ndirectives;
    char *err;
    size_t errlen;
} parser_t;

/* A growable array of elements of one size, on the heap until copied into the arena. */
typedef struct vec {
    void *items;
    size_t n, cap, size;
} vec_t;

static void *vec_push(vec_t *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        void *items = realloc(v->items, cap * v->size);
        if (!items)
            return NULL;
        v->items = items;
        v->cap = cap;
    }
    void *slot = (char *)v->items + v->n++ * v->size;
    memset(slot, 0, v->size);
    return slot;
}

/* Moves the items into the arena (NULL when empty); frees the vector either way. */
static int vec_finish(parser_t *ps, vec_t *v, void **out)
{
    *out = NULL;
    int rc = 0;
    if (v->n) {
        *out = hk__arena_alloc(&ps->arena, v->n * v->size);
        if (*out)
            memcpy(*out, v->items, v->n * v->size);
        else
            rc = -ENOMEM;
    }
    free(v->items);
    v->items = NULL;
    return rc;
}

static int oom(parser_t *ps)
{
    if (ps->err && ps->errlen)
        snprintf(ps->err, ps->errlen, "%s: out of memory", ps->lx.at.file);
    return -ENOMEM;
}

static int unexpected(parser_t *ps, const hk__token_t *t, const char *what)
{
    char q[HK_CONF_QUOTE_MAX];
    return hk_conf_errorf(ps->err, ps->errlen, &t->pos, "expected %s, got %s", what,
                          hk__tok_describe(t, q, sizeof q));
}

static int parse_block(parser_t *ps, hk_conf_node_t *parent, unsigned depth);

/* Reads the arguments up to ';' or '{' and, for '{', the block. */
static int parse_directive(parser_t *ps, hk_conf_node_t *d, unsigned depth)
{
    vec_t args = {.size = sizeof(hk_conf_arg_t)};
    hk__token_t t;
    int rc;
    for (;;) {
        rc = hk__lex_next(&ps->lx, &t);
        if (rc < 0)
            goto out;
        if (t.kind != HK__TOK_WORD && t.kind != HK__TOK_STRING)
            break;
        if (args.n == ps->lim.max_args) {
            char q[HK_CONF_QUOTE_MAX];
            hk_conf_errorf(ps->err, ps->errlen, &t.pos,
                           "expected at most %zu arguments to \"%s\", got %s", ps->lim.max_args,
                           d->name, hk__tok_describe(&t, q, sizeof q));
            rc = -E2BIG;
            goto out;
        }
        hk_conf_arg_t *a = vec_push(&args);
        if (!a || !(a->str = hk__arena_strndup(&ps->arena, t.str, t.len))) {
            rc = oom(ps);
            goto out;
        }
        a->len = t.len;
        a->quoted = t.kind == HK__TOK_STRING;
        a->pos = t.pos;
    }
    if (t.kind != HK__TOK_SEMI && t.kind != HK__TOK_OPEN) {
        char what[96];
        snprintf(what, sizeof what, "\";\" or \"{\" to end \"%.40s\"", d->name);
        rc = unexpected(ps, &t, what);
        goto out;
    }
    d->end.str = t.kind == HK__TOK_SEMI ? ";" : "{";
    d->end.len = 1;
    d->end.end = true;
    d->end.pos = t.pos;
    rc = vec_finish(ps, &args, (void **)&d->args);
    if (rc < 0)
        return oom(ps);
    d->nargs = args.n;
    if (t.kind == HK__TOK_SEMI)
        return 0;
    if (depth + 1 > ps->lim.max_depth) {
        hk_conf_errorf(ps->err, ps->errlen, &t.pos,
                       "expected at most %u nested blocks, got one more", ps->lim.max_depth);
        return -E2BIG;
    }
    d->block = true;
    return parse_block(ps, d, depth + 1);
out:
    free(args.items);
    return rc;
}

/*
 * Reads directives into parent until its '}' (depth > 0) or the end of the
 * input (depth 0, the root).
 */
static int parse_block(parser_t *ps, hk_conf_node_t *parent, unsigned depth)
{
    vec_t kids = {.size = sizeof(hk_conf_node_t)};
    hk__token_t t;
    int rc;
    for (;;) {
        rc = hk__lex_next(&ps->lx, &t);
        if (rc < 0)
            goto out;
        if (t.kind == HK__TOK_EOF && depth == 0) {
            parent->end = (hk_conf_arg_t){.str = "", .end = true, .pos = t.pos};
            parent->block_close = t.pos;
            break;
        }
        if (t.kind == HK__TOK_EOF) {
            rc = hk_conf_errorf(ps->err, ps->errlen, &parent->end.pos,
                                "expected \"}\" to close this block, got end of file");
            goto out;
        }
        if (t.kind == HK__TOK_CLOSE && depth > 0) {
            parent->block_close = t.pos;
            break;
        }
        if (t.kind != HK__TOK_WORD) {
            rc = unexpected(ps, &t,
                            t.kind == HK__TOK_STRING ? "a directive name (never quoted)"
                                                     : "a directive");
            goto out;
        }
        if (ps->ndirectives == ps->lim.max_directives) {
            hk_conf_errorf(ps->err, ps->errlen, &t.pos,
                           "expected at most %zu directives, got one more", ps->lim.max_directives);
            rc = -E2BIG;
            goto out;
        }
        ps->ndirectives++;
        hk_conf_node_t *d = vec_push(&kids);
        if (!d || !(d->name = hk__arena_strndup(&ps->arena, t.str, t.len))) {
            rc = oom(ps);
            goto out;
        }
        d->pos = t.pos;
        rc = parse_directive(ps, d, depth);
        if (rc < 0)
            goto out;
    }
    rc = vec_finish(ps, &kids, (void **)&parent->children);
    if (rc < 0)
        return oom(ps);
    parent->nchildren = kids.n;
    return 0;
out:
    free(kids.items);
    return rc;
}

static void resolve_limits(hk_conf_limits_t *lim, const hk_conf_limits_t *given)
{
    *lim = given ? *given : (hk_conf_limits_t){0};
    if (!lim->max_bytes)
        lim->max_bytes = HK_CONF_MAX_BYTES_DEFAULT;
    if (lim->max_bytes > SIZE_MAX / 2)
        lim->max_bytes = SIZE_MAX / 2; /* read_all adds one */
    if (!lim->max_token)
        lim->max_token = HK_CONF_MAX_TOKEN_DEFAULT;
    if (!lim->max_depth)
        lim->max_depth = HK_CONF_MAX_DEPTH_DEFAULT;
    if (!lim->max_directives)
        lim->max_directives = HK_CONF_MAX_DIRECTIVES_DEFAULT;
    if (!lim->max_args)
        lim->max_args = HK_CONF_MAX_ARGS_DEFAULT;
}

int hk_conf_parse_buffer(const char *name, const char *buf, size_t len,
                         const hk_conf_limits_t *limits, hk_conf_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!name)
        name = "(config)";
    parser_t ps = {.err = err, .errlen = errlen};
    resolve_limits(&ps.lim, limits);
    if (ps.lim.max_token > len)
        ps.lim.max_token = len; /* no token is longer than the input: bounds the scratch */
    hk_conf_t *conf = calloc(1, sizeof *conf);
    char *scratch = malloc(ps.lim.max_token + 1);
    if (!conf || !scratch || !(conf->file = strdup(name))) {
        free(scratch);
        free(conf);
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", name);
        return -ENOMEM;
    }
    conf->root.name = "";
    conf->root.pos = (hk_conf_pos_t){conf->file, 1, 1};
    conf->root.end.pos = conf->root.pos; /* where an unclosed root would be reported */
    int rc;
    if (len > ps.lim.max_bytes) {
        hk_conf_errorf(err, errlen, &conf->root.pos, "expected at most %zu bytes, got %zu bytes",
                       ps.lim.max_bytes, len);
        rc = -EFBIG;
    } else {
        ps.lx = (hk__lexer_t){.p = buf,
                              .end = buf + len,
                              .at = conf->root.pos,
                              .max_token = ps.lim.max_token,
                              .scratch = scratch,
                              .err = err,
                              .errlen = errlen};
        rc = parse_block(&ps, &conf->root, 0);
    }
    free(scratch);
    conf->_arena = ps.arena;
    if (rc < 0) {
        hk_conf_free(conf);
        return rc;
    }
    *out = conf;
    return 0;
}

/*
 * Reads at most max + 1 bytes, so that "too large" is known without reading
 * the rest (a hostile path may name an endless device).
 */
static int read_all(int fd, size_t max, char **buf, size_t *len, uint64_t *file_size)
{
    struct stat st;
    size_t cap = 4096, n = 0;
    *file_size = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        *file_size = (uint64_t)st.st_size;
    if (*file_size)
        cap = *file_size < max ? (size_t)*file_size + 1 : max + 1;
    char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    while (n <= max) {
        if (n == cap) {
            cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            char *q = realloc(p, cap);
            if (!q) {
                free(p);
                return -ENOMEM;
            }
            p = q;
        }
        ssize_t r = read(fd, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            free(p);
            return e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *buf = p;
    *len = n; /* max + 1 at most */
    return 0;
}

int hk_conf_parse_file(const char *path, const hk_conf_limits_t *limits, hk_conf_t **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    hk_conf_limits_t lim;
    resolve_limits(&lim, limits);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        if (err && errlen)
            snprintf(err, errlen, "%s: expected a readable file, got %s", path, hk_strerror(e));
        return e;
    }
    char *buf = NULL;
    size_t len = 0;
    uint64_t size;
    int rc = read_all(fd, lim.max_bytes, &buf, &len, &size);
    close(fd);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: expected a readable file, got %s", path, hk_strerror(rc));
        return rc;
    }
    if (len > lim.max_bytes) {
        /*
         * Only max + 1 bytes were read: the message gives the file's size when
         * it has one (a file of exactly max + 1 bytes has one too).
         */
        hk_conf_pos_t start = {path, 1, 1};
        char got[32] = "more";
        if (size >= len)
            snprintf(got, sizeof got, "%llu bytes", (unsigned long long)size);
        hk_conf_errorf(err, errlen, &start, "expected at most %zu bytes, got %s", lim.max_bytes,
                       got);
        free(buf);
        return -EFBIG;
    }
    rc = hk_conf_parse_buffer(path, buf, len, &lim, out, err, errlen);
    free(buf);
    return rc;
}

void hk_conf_free(hk_conf_t *conf)
{
    if (!conf)
        return;
    hk__arena_free(conf->_arena);
    free(conf->file);
    free(conf);
}
