/*
 * The tokenizer of hark/conf.h.
 *
 * Why so strict: configuration files come from people, and from attackers
 * when a deployment tool writes them from user data. Every byte is either
 * accepted on purpose or rejected with its position: NUL and control bytes
 * (except tab, CR and LF) are errors, a quote inside a word is an error
 * rather than the start of a second argument, a string may not run past the
 * end of its line (so a missing quote is reported where the string starts,
 * not at the end of the file), and only \" and \\ are escapes. A token
 * longer than the limit is refused as soon as it crosses it: the scratch
 * buffer never grows, whatever the input.
 */
#include <stdio.h>
#include <string.h>

#include "conf/internal.h"

static void advance(hk__lexer_t *lx)
{
    if (*lx->p == '\n') {
        lx->at.line++;
        lx->at.col = 1;
    } else {
        lx->at.col++;
    }
    lx->p++;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_control(char c)
{
    unsigned char u = (unsigned char)c;
    return (u < 0x20 && !is_space(c)) || u == 0x7f;
}

/* Ends a word: white space, the three punctuation tokens, or the end of the input. */
static bool ends_word(const hk__lexer_t *lx)
{
    if (lx->p == lx->end)
        return true;
    char c = *lx->p;
    return is_space(c) || c == ';' || c == '{' || c == '}';
}

static int control_error(hk__lexer_t *lx)
{
    return hk_conf_errorf(lx->err, lx->errlen, &lx->at, "expected text, got byte 0x%02x",
                          (unsigned char)*lx->p);
}

static int too_long(hk__lexer_t *lx, const hk__token_t *t, const char *what)
{
    char q[HK_CONF_QUOTE_MAX];
    hk_conf_quote(lx->scratch, t->len, q, sizeof q);
    /* The quote ends in "..." when it cut; say that the token goes on in any case. */
    size_t n = strlen(q);
    const char *more = n >= 4 && strcmp(q + n - 4, "\"...") == 0 ? "" : "...";
    hk_conf_errorf(lx->err, lx->errlen, &t->pos, "expected a %s of at most %zu bytes, got %s%s",
                   what, lx->max_token, q, more);
    return -E2BIG;
}

static int lex_word(hk__lexer_t *lx, hk__token_t *t)
{
    t->kind = HK__TOK_WORD;
    while (!ends_word(lx)) {
        char c = *lx->p;
        if (is_control(c))
            return control_error(lx);
        if (c == '"')
            return hk_conf_errorf(lx->err, lx->errlen, &lx->at,
                                  "expected a word without quotes (quote all of it), got \"\\\"\"");
        if (t->len == lx->max_token)
            return too_long(lx, t, "word");
        lx->scratch[t->len++] = c;
        advance(lx);
    }
    return 0;
}

static int lex_string(hk__lexer_t *lx, hk__token_t *t)
{
    t->kind = HK__TOK_STRING;
    advance(lx); /* the opening quote */
    for (;;) {
        if (lx->p == lx->end)
            return hk_conf_errorf(lx->err, lx->errlen, &t->pos,
                                  "expected a closing quote for this string, got end of file");
        char c = *lx->p;
        if (c == '"')
            break;
        if (c == '\n')
            return hk_conf_errorf(lx->err, lx->errlen, &t->pos,
                                  "expected a closing quote on the same line, got end of line");
        if (is_control(c))
            return control_error(lx);
        if (c == '\\') {
            hk_conf_pos_t bs = lx->at;
            advance(lx);
            if (lx->p == lx->end || (*lx->p != '"' && *lx->p != '\\')) {
                char q[HK_CONF_QUOTE_MAX];
                size_t n = lx->p == lx->end || *lx->p == '\n' ? 1 : 2;
                hk_conf_quote(lx->p - 1, n, q, sizeof q);
                return hk_conf_errorf(lx->err, lx->errlen, &bs,
                                      "expected \\\" or \\\\ after a backslash, got %s", q);
            }
            c = *lx->p;
        }
        if (t->len == lx->max_token)
            return too_long(lx, t, "string");
        lx->scratch[t->len++] = c;
        advance(lx);
    }
    advance(lx); /* the closing quote */
    if (!ends_word(lx)) {
        char q[HK_CONF_QUOTE_MAX];
        return hk_conf_errorf(lx->err, lx->errlen, &lx->at,
                              "expected a space, \";\" or \"{\" after a string, got %s",
                              hk_conf_quote(lx->p, 1, q, sizeof q));
    }
    return 0;
}

/* Skips white space and comments; stops at the next token or the end. */
static int skip_blank(hk__lexer_t *lx)
{
    while (lx->p < lx->end) {
        char c = *lx->p;
        if (c == '#') {
            while (lx->p < lx->end && *lx->p != '\n')
                advance(lx);
        } else if (is_space(c)) {
            advance(lx);
        } else if (is_control(c)) {
            return control_error(lx);
        } else {
            break;
        }
    }
    return 0;
}

int hk__lex_next(hk__lexer_t *lx, hk__token_t *t)
{
    int rc = skip_blank(lx);
    if (rc < 0)
        return rc;
    t->pos = lx->at;
    t->str = lx->scratch;
    t->len = 0;
    if (lx->p == lx->end) {
        t->kind = HK__TOK_EOF;
        return 0;
    }
    switch (*lx->p) {
    case ';':
        t->kind = HK__TOK_SEMI;
        break;
    case '{':
        t->kind = HK__TOK_OPEN;
        break;
    case '}':
        t->kind = HK__TOK_CLOSE;
        break;
    case '"':
        rc = lex_string(lx, t);
        lx->scratch[t->len] = '\0';
        return rc;
    default:
        rc = lex_word(lx, t);
        lx->scratch[t->len] = '\0';
        return rc;
    }
    advance(lx);
    return 0;
}

const char *hk__tok_describe(const hk__token_t *t, char *buf, size_t buflen)
{
    switch (t->kind) {
    case HK__TOK_WORD:
    case HK__TOK_STRING:
        return hk_conf_quote(t->str, t->len, buf, buflen);
    case HK__TOK_SEMI:
        return "\";\"";
    case HK__TOK_OPEN:
        return "\"{\"";
    case HK__TOK_CLOSE:
        return "\"}\"";
    case HK__TOK_EOF:
        break;
    }
    return "end of file";
}
