/*
 * libFuzzer driver for the config parser and typed getters (hark/conf.h).
 *
 * Properties checked beyond "no crash, no sanitizer report":
 *  - a failure returns -EINVAL, -E2BIG or -EFBIG, no tree, and a message of
 *    the form "fuzz.conf:<line>:<col>: expected ..., got ..." whose position
 *    lies inside the input;
 *  - a tree respects every limit (depth, directives, arguments, token
 *    length), its strings hold no NUL, and positions only grow in file order;
 *  - every typed getter, on every argument and end marker, either succeeds
 *    with a value that matches the text or fails with such a message;
 *  - printing the tree back as text (every argument quoted) and parsing that
 *    gives the same tree.
 * The first input byte picks the limits (small ones reach every limit), the
 * rest is the file. Built with -fsanitize=fuzzer under HK_FUZZ=ON
 * (fuzz/CMakeLists.txt), and run as a plain function over the seed corpus by
 * tests/conf/test_conf_corpus.c.
 */
#include <errno.h>
#include <hark/conf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NAME "fuzz.conf"

struct walk {
    const hk_conf_limits_t *lim;
    unsigned lines;     /* lines of the input */
    hk_conf_pos_t last; /* the previous position in file order */
    size_t ndirectives;
};

static void fail(const char *why)
{
    fprintf(stderr, "fuzz-conf: %s\n", why);
    abort();
}

static void check_message(const char *err, unsigned lines)
{
    unsigned line, col;
    int n = 0;
    if (sscanf(err, FUZZ_NAME ":%u:%u: expected %n", &line, &col, &n) != 2 || n == 0)
        fail(err);
    if (line < 1 || line > lines || col < 1 || !strstr(err, ", got "))
        fail(err);
}

static void check_pos(struct walk *w, const hk_conf_pos_t *p)
{
    if (strcmp(p->file, FUZZ_NAME) != 0 || p->line < 1 || p->line > w->lines || p->col < 1)
        fail("position outside the input");
    if (p->line < w->last.line || (p->line == w->last.line && p->col < w->last.col))
        fail("positions out of file order");
    w->last = *p;
}

static void check_getters(struct walk *w, const hk_conf_arg_t *a)
{
    char err[256];
    uint64_t v;
    bool b;
    int rc = hk_conf_duration(a, &v, err, sizeof err);
    if (rc < 0)
        check_message(err, w->lines);
    else if (a->end || a->str[0] < '0' || a->str[0] > '9')
        fail("duration accepted without digits");
    rc = hk_conf_size(a, &v, err, sizeof err);
    if (rc < 0)
        check_message(err, w->lines);
    rc = hk_conf_uint(a, 1, 1000, &v, err, sizeof err);
    if (rc < 0)
        check_message(err, w->lines);
    else if (v < 1 || v > 1000)
        fail("integer out of range accepted");
    rc = hk_conf_bool(a, &b, err, sizeof err);
    if (rc < 0)
        check_message(err, w->lines);
    else if (strcmp(a->str, b ? "on" : "off") != 0)
        fail("boolean does not match its text");
    if (hk_conf_string(a, "a string", err, sizeof err) < 0)
        check_message(err, w->lines);
    hk_conf_arg_t kv;
    if (hk_conf_kv(a, "w", &kv) == 1) {
        if (kv.len + 2 != a->len || strncmp(a->str, "w=", 2) != 0)
            fail("key=value split wrong");
        if (hk_conf_uint(&kv, 0, 9, &v, err, sizeof err) < 0)
            check_message(err, w->lines);
    }
}

static void walk_node(struct walk *w, const hk_conf_node_t *d, unsigned depth)
{
    char err[256];
    if (depth > w->lim->max_depth)
        fail("deeper than max_depth");
    if (++w->ndirectives > w->lim->max_directives)
        fail("more directives than max_directives");
    if (d->name[0] == '\0' || strlen(d->name) > w->lim->max_token)
        fail("bad directive name");
    check_pos(w, &d->pos);
    if (d->nargs > w->lim->max_args)
        fail("more arguments than max_args");
    for (size_t i = 0; i < d->nargs; i++) {
        const hk_conf_arg_t *a = &d->args[i];
        if (strlen(a->str) != a->len || a->len > w->lim->max_token || a->end)
            fail("bad argument");
        check_pos(w, &a->pos);
        check_getters(w, a);
    }
    check_pos(w, &d->end.pos);
    check_getters(w, &d->end);
    if (hk_conf_expect(d, 1, 2, HK_CONF_BLOCK_OPTIONAL, err, sizeof err) < 0)
        check_message(err, w->lines);
    if (hk_conf_expect(d, 0, 0, d->block ? HK_CONF_NO_BLOCK : HK_CONF_BLOCK, err, sizeof err) == 0)
        fail("a block mismatch was accepted");
    check_message(err, w->lines);
    for (size_t i = 0; i < d->nchildren; i++)
        walk_node(w, &d->children[i], depth + 1);
    if (d->block)
        check_pos(w, &d->block_close);
}

/* Text being printed; len counts every byte, even past cap (the first pass only measures). */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, char c)
{
    if (o->len < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

/* Prints directives back as text, every argument quoted. */
static void print_nodes(const hk_conf_node_t *kids, size_t n, struct out *o)
{
    for (size_t k = 0; k < n; k++) {
        const hk_conf_node_t *d = &kids[k];
        for (const char *p = d->name; *p; p++)
            put(o, *p);
        for (size_t i = 0; i < d->nargs; i++) {
            put(o, ' ');
            put(o, '"');
            for (size_t j = 0; j < d->args[i].len; j++) {
                char c = d->args[i].str[j];
                if (c == '"' || c == '\\')
                    put(o, '\\');
                put(o, c);
            }
            put(o, '"');
        }
        if (d->block) {
            put(o, '{');
            print_nodes(d->children, d->nchildren, o);
            put(o, '}');
        } else {
            put(o, ';');
        }
        put(o, '\n');
    }
}

static void same_tree(const hk_conf_node_t *a, const hk_conf_node_t *b)
{
    if (strcmp(a->name, b->name) != 0 || a->nargs != b->nargs || a->block != b->block ||
        a->nchildren != b->nchildren)
        fail("printed tree parses differently");
    for (size_t i = 0; i < a->nargs; i++) {
        if (a->args[i].len != b->args[i].len ||
            memcmp(a->args[i].str, b->args[i].str, a->args[i].len) != 0 || !b->args[i].quoted)
            fail("printed argument parses differently");
    }
    for (size_t i = 0; i < a->nchildren; i++)
        same_tree(&a->children[i], &b->children[i]);
}

static void round_trip(const hk_conf_t *conf, const hk_conf_limits_t *lim)
{
    struct out o = {0};
    print_nodes(conf->root.children, conf->root.nchildren, &o);
    size_t len = o.len;
    char *text = malloc(len + 1);
    if (!text)
        return;
    o = (struct out){text, len, 0};
    print_nodes(conf->root.children, conf->root.nchildren, &o);
    hk_conf_limits_t big = *lim;
    big.max_bytes = len + 1;
    hk_conf_t *again;
    char err[256];
    if (hk_conf_parse_buffer(FUZZ_NAME, text, len, &big, &again, err, sizeof err) != 0)
        fail(err);
    same_tree(&conf->root, &again->root);
    hk_conf_free(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pick = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    hk_conf_limits_t lim = {0};
    if (pick & 0x80) {
        lim.max_depth = 1 + (pick & 3);
        lim.max_token = 4u << ((pick >> 2) & 3);
        lim.max_directives = 1 + ((pick >> 4) & 7) * 3;
        lim.max_args = 1 + (pick & 7);
        lim.max_bytes = (pick & 0x40) ? 64 : 0;
    }
    hk_conf_limits_t eff = {
        .max_bytes = lim.max_bytes ? lim.max_bytes : HK_CONF_MAX_BYTES_DEFAULT,
        .max_token = lim.max_token ? lim.max_token : HK_CONF_MAX_TOKEN_DEFAULT,
        .max_depth = lim.max_depth ? lim.max_depth : HK_CONF_MAX_DEPTH_DEFAULT,
        .max_directives = lim.max_directives ? lim.max_directives : HK_CONF_MAX_DIRECTIVES_DEFAULT,
        .max_args = lim.max_args ? lim.max_args : HK_CONF_MAX_ARGS_DEFAULT,
    };
    unsigned lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';

    hk_conf_t *conf = (hk_conf_t *)1;
    char err[256];
    int rc = hk_conf_parse_buffer(FUZZ_NAME, text, len, &lim, &conf, err, sizeof err);
    if (rc < 0) {
        if (conf != NULL || (rc != -EINVAL && rc != -E2BIG && rc != -EFBIG))
            fail("failure without its contract");
        check_message(err, lines);
        return 0;
    }
    struct walk w = {.lim = &eff, .lines = lines, .last = {FUZZ_NAME, 1, 1}};
    for (size_t i = 0; i < conf->root.nchildren; i++)
        walk_node(&w, &conf->root.children[i], 0);
    check_pos(&w, &conf->root.end.pos);
    round_trip(conf, &eff);
    hk_conf_free(conf);
    return 0;
}
