/*
 * The config parser: the tree of valid files (names, arguments, quoting,
 * blocks, positions), and every syntax error and limit with the exact
 * file:line:col of its message.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hark/conf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];

static hk_conf_t *ok(const char *text)
{
    hk_conf_t *c = NULL;
    int rc = hk_conf_parse_buffer("t.conf", text, strlen(text), NULL, &c, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_not_null(c);
    return c;
}

/* Parses text expecting failure rc and exactly the message want. */
static void bad_lim(const char *text, size_t len, const hk_conf_limits_t *lim, int rc,
                    const char *want)
{
    hk_conf_t *c = (hk_conf_t *)1;
    int got = hk_conf_parse_buffer("t.conf", text, len, lim, &c, err, sizeof err);
    cr_assert_eq(got, rc, "rc %d for %s (%s)", got, text, err);
    cr_assert_null(c);
    cr_assert_str_eq(err, want);
}

static void bad(const char *text, const char *want)
{
    bad_lim(text, strlen(text), NULL, -EINVAL, want);
}

static void pos_is(const hk_conf_pos_t *p, unsigned line, unsigned col)
{
    cr_assert_str_eq(p->file, "t.conf");
    cr_assert_eq(p->line, line, "line %u, want %u", p->line, line);
    cr_assert_eq(p->col, col, "col %u, want %u", p->col, col);
}

Test(conf_parse, directives_arguments_blocks_and_positions)
{
    hk_conf_t *c = ok("# head comment\n"
                      "threads 1;\n"
                      "listen 127.0.0.1:8443 {\n"
                      "    tls on;   # trailing\n"
                      "    sni example.org { cert /p/ex.pem; key \"/p/my key\"; }\n"
                      "}\n"
                      "empty {}\n");
    cr_assert_str_eq(c->file, "t.conf");
    cr_assert_eq(c->root.nchildren, 3);
    const hk_conf_node_t *th = &c->root.children[0];
    cr_assert_str_eq(th->name, "threads");
    pos_is(&th->pos, 2, 1);
    cr_assert_eq(th->nargs, 1);
    cr_assert_str_eq(th->args[0].str, "1");
    cr_assert_eq(th->args[0].len, 1);
    cr_assert(!th->args[0].quoted);
    pos_is(&th->args[0].pos, 2, 9);
    cr_assert(!th->block);
    cr_assert(th->end.end);
    cr_assert_str_eq(th->end.str, ";");
    pos_is(&th->end.pos, 2, 10);

    const hk_conf_node_t *l = &c->root.children[1];
    cr_assert_str_eq(l->name, "listen");
    cr_assert(l->block);
    cr_assert_str_eq(l->end.str, "{");
    pos_is(&l->end.pos, 3, 23);
    pos_is(&l->block_close, 6, 1);
    cr_assert_eq(l->nchildren, 2);
    cr_assert_str_eq(l->children[0].name, "tls");
    pos_is(&l->children[0].pos, 4, 5);
    const hk_conf_node_t *sni = &l->children[1];
    cr_assert_eq(sni->nchildren, 2);
    cr_assert_str_eq(sni->args[0].str, "example.org");
    const hk_conf_node_t *key = &sni->children[1];
    cr_assert_str_eq(key->args[0].str, "/p/my key");
    cr_assert(key->args[0].quoted);
    pos_is(&key->args[0].pos, 5, 43);
    pos_is(&key->end.pos, 5, 54);

    const hk_conf_node_t *e = &c->root.children[2];
    cr_assert(e->block);
    cr_assert_eq(e->nchildren, 0);
    cr_assert_null(e->children);
    cr_assert(c->root.end.end);
    cr_assert_str_eq(c->root.end.str, "");
    pos_is(&c->root.end.pos, 8, 1);
    hk_conf_free(c);
}

Test(conf_parse, quoting_escapes_and_odd_but_valid_text)
{
    hk_conf_t *c = ok("a \"x \\\"y\\\" \\\\z\" \"\" w#not-a-comment \"{;}\";\r\n"
                      "\tb\t\"\xc3\xa9t\xc3\xa9\"{c;}d;");
    cr_assert_eq(c->root.nchildren, 3);
    const hk_conf_node_t *a = &c->root.children[0];
    cr_assert_eq(a->nargs, 4);
    cr_assert_str_eq(a->args[0].str, "x \"y\" \\z");
    cr_assert_eq(a->args[0].len, 8);
    cr_assert_str_eq(a->args[1].str, "");
    cr_assert(a->args[1].quoted);
    cr_assert_str_eq(a->args[2].str, "w#not-a-comment");
    cr_assert_str_eq(a->args[3].str, "{;}");
    const hk_conf_node_t *b = &c->root.children[1];
    pos_is(&b->pos, 2, 2);
    cr_assert_str_eq(b->args[0].str, "\xc3\xa9t\xc3\xa9");
    cr_assert_eq(b->nchildren, 1);
    cr_assert_str_eq(c->root.children[2].name, "d");
    hk_conf_free(c);
}

Test(conf_parse, empty_and_comment_only_files)
{
    hk_conf_t *c = ok("");
    cr_assert_eq(c->root.nchildren, 0);
    pos_is(&c->root.end.pos, 1, 1);
    hk_conf_free(c);
    c = ok("# only a comment, no newline");
    cr_assert_eq(c->root.nchildren, 0);
    hk_conf_free(c);
    hk_conf_free(NULL);
}

Test(conf_parse, unterminated_strings)
{
    bad("a \"abc", "t.conf:1:3: expected a closing quote for this string, got end of file");
    bad("x;\na \"abc\nb;",
        "t.conf:2:3: expected a closing quote on the same line, got end of line");
    bad("a \"x\\qy\";", "t.conf:1:5: expected \\\" or \\\\ after a backslash, got \"\\\\q\"");
    bad("a \"x\\", "t.conf:1:5: expected \\\" or \\\\ after a backslash, got \"\\\\\"");
}

Test(conf_parse, missing_semicolon)
{
    bad("threads 1", "t.conf:1:10: expected \";\" or \"{\" to end \"threads\", got end of file");
    bad("a {\n  b 1\n}", "t.conf:3:1: expected \";\" or \"{\" to end \"b\", got \"}\"");
}

Test(conf_parse, unbalanced_braces)
{
    bad("a;\n}", "t.conf:2:1: expected a directive, got \"}\"");
    bad("a {\n  b;\n", "t.conf:1:3: expected \"}\" to close this block, got end of file");
    bad("a { b { }", "t.conf:1:3: expected \"}\" to close this block, got end of file");
    bad("a { b { c;", "t.conf:1:7: expected \"}\" to close this block, got end of file");
    bad("{ a; }", "t.conf:1:1: expected a directive, got \"{\"");
    bad("a;;", "t.conf:1:3: expected a directive, got \";\"");
}

Test(conf_parse, quotes_where_they_do_not_belong)
{
    bad("a b\"c\";", "t.conf:1:4: expected a word without quotes (quote all of it), got \"\\\"\"");
    bad("a \"b\"c;", "t.conf:1:6: expected a space, \";\" or \"{\" after a string, got \"c\"");
    bad("\"a\" b;", "t.conf:1:1: expected a directive name (never quoted), got \"a\"");
}

Test(conf_parse, control_bytes)
{
    bad_lim("a b\0c;", 6, NULL, -EINVAL, "t.conf:1:4: expected text, got byte 0x00");
    bad("a;\n \x01", "t.conf:2:2: expected text, got byte 0x01");
    bad("a \"b\x7f\";", "t.conf:1:5: expected text, got byte 0x7f");
}

Test(conf_parse, too_deep)
{
    char text[256] = "";
    for (int i = 0; i < 17; i++)
        strcat(text, "a{");
    for (int i = 0; i < 17; i++)
        strcat(text, "}");
    bad_lim(text, strlen(text), NULL, -E2BIG,
            "t.conf:1:34: expected at most 16 nested blocks, got one more");
    text[32] = '\0'; /* 16 levels */
    for (int i = 0; i < 16; i++)
        strcat(text, "}");
    hk_conf_t *c = ok(text);
    hk_conf_free(c);
    hk_conf_limits_t lim = {.max_depth = 2};
    bad_lim("a { b { c { } } }", 17, &lim, -E2BIG,
            "t.conf:1:11: expected at most 2 nested blocks, got one more");
}

Test(conf_parse, overlong_tokens)
{
    hk_conf_limits_t lim = {.max_token = 8};
    bad_lim("a abcdefghij;", 13, &lim, -E2BIG,
            "t.conf:1:3: expected a word of at most 8 bytes, got \"abcdefgh\"...");
    bad_lim("a;\n  \"abc\\\"defgh\";", 18, &lim, -E2BIG,
            "t.conf:2:3: expected a string of at most 8 bytes, got \"abc\\\"defg\"...");
    /* Exactly the limit is fine, escapes count once. */
    hk_conf_t *c = NULL;
    cr_assert_eq(
        hk_conf_parse_buffer("t.conf", "abcdefgh \"a\\\"cdefgh\";", 21, &lim, &c, err, sizeof err),
        0, "%s", err);
    hk_conf_free(c);
    /* With the default, a 5000-byte word; the message cuts the quote. */
    char *text = malloc(5003);
    memset(text, 'x', 5000);
    memcpy(text, "a ", 2);
    memcpy(text + 5000, ";", 2);
    bad_lim(text, 5001, NULL, -E2BIG,
            "t.conf:1:3: expected a word of at most 4096 bytes, got "
            "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"...");
    free(text);
}

Test(conf_parse, too_many_directives_arguments_and_bytes)
{
    hk_conf_limits_t lim = {.max_directives = 3, .max_args = 2};
    bad_lim("a;\nb { c; d; }", 14, &lim, -E2BIG,
            "t.conf:2:8: expected at most 3 directives, got one more");
    bad_lim("a 1 2 3;", 8, &lim, -E2BIG,
            "t.conf:1:7: expected at most 2 arguments to \"a\", got \"3\"");
    lim = (hk_conf_limits_t){.max_bytes = 10};
    bad_lim("threads 10;", 11, &lim, -EFBIG, "t.conf:1:1: expected at most 10 bytes, got 11 bytes");
    hk_conf_t *c = NULL;
    cr_assert_eq(hk_conf_parse_buffer("t.conf", "threads 1;", 10, &lim, &c, err, sizeof err), 0);
    hk_conf_free(c);
}

Test(conf_parse, files)
{
    char path[] = "/tmp/hk-conf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *text = "threads 2;\nbad\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    hk_conf_t *c = (hk_conf_t *)1;
    cr_assert_eq(hk_conf_parse_file(path, NULL, &c, err, sizeof err), -EINVAL);
    cr_assert_null(c);
    char want[256];
    snprintf(want, sizeof want, "%s:3:1: expected \";\" or \"{\" to end \"bad\", got end of file",
             path);
    cr_assert_str_eq(err, want);

    hk_conf_limits_t lim = {.max_bytes = 12};
    cr_assert_eq(hk_conf_parse_file(path, &lim, &c, err, sizeof err), -EFBIG);
    snprintf(want, sizeof want, "%s:1:1: expected at most 12 bytes, got 15 bytes", path);
    cr_assert_str_eq(err, want);

    /* One byte over the limit: the file's size is known, and it is what the message says. */
    lim.max_bytes = 14;
    cr_assert_eq(hk_conf_parse_file(path, &lim, &c, err, sizeof err), -EFBIG);
    snprintf(want, sizeof want, "%s:1:1: expected at most 14 bytes, got 15 bytes", path);
    cr_assert_str_eq(err, want);

    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "threads 2;\n", 11), 11);
    close(fd);
    cr_assert_eq(hk_conf_parse_file(path, NULL, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c->file, path);
    cr_assert_str_eq(c->root.children[0].pos.file, path);
    hk_conf_free(c);
    unlink(path);

    cr_assert_eq(hk_conf_parse_file("/nonexistent/hark.conf", NULL, &c, err, sizeof err), -ENOENT);
    cr_assert_str_eq(err, "/nonexistent/hark.conf: expected a readable file, got no such file or "
                          "directory");
    cr_assert_eq(hk_conf_parse_file("/tmp", NULL, &c, err, sizeof err), -EISDIR);
    /* A tiny or NULL error buffer is fine. */
    cr_assert_eq(hk_conf_parse_buffer("t", "}", 1, NULL, &c, NULL, 0), -EINVAL);
    char small[8];
    cr_assert_eq(hk_conf_parse_buffer("t.conf", "}", 1, NULL, &c, small, sizeof small), -EINVAL);
    cr_assert_str_eq(small, "t.conf:");
}
