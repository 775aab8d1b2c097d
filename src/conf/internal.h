/* Module-private parts of hark/conf.h: the tokenizer, the arena and message helpers. */
#ifndef HK_CONF_INTERNAL_H
#define HK_CONF_INTERNAL_H

#include "hark/conf.h"

#include <errno.h>

typedef enum hk__tok_kind {
    HK__TOK_WORD,
    HK__TOK_STRING,
    HK__TOK_SEMI,
    HK__TOK_OPEN,
    HK__TOK_CLOSE,
    HK__TOK_EOF,
} hk__tok_kind_t;

typedef struct hk__token {
    hk__tok_kind_t kind;
    hk_conf_pos_t pos;
    const char *str; /* WORD, STRING: the lexer's scratch buffer, valid until the next token */
    size_t len;
} hk__token_t;

typedef struct hk__lexer {
    const char *p, *end;
    hk_conf_pos_t at; /* position of *p */
    size_t max_token;
    char *scratch; /* max_token + 1 bytes */
    char *err;
    size_t errlen;
} hk__lexer_t;

/* Reads the next token. Returns 0, or -EINVAL / -E2BIG with the message written. */
int hk__lex_next(hk__lexer_t *lx, hk__token_t *t);

/* How a token is named after "got": a quoted copy, ";" ... or end of file. */
const char *hk__tok_describe(const hk__token_t *t, char *buf, size_t buflen);

/* A bump allocator: the whole tree is freed at once. */
typedef struct hk__arena hk__arena_t;

/* n bytes aligned for any type, or NULL. */
void *hk__arena_alloc(hk__arena_t **a, size_t n);

/* A NUL-terminated copy of s[0 .. len), or NULL. */
char *hk__arena_strndup(hk__arena_t **a, const char *s, size_t len);

void hk__arena_free(hk__arena_t *a);

#endif
