/*
 * hark/conf.h: configuration files in an nginx-like syntax.
 *
 *     # a comment, to the end of the line
 *     threads 2;
 *     listen 127.0.0.1:8443 {
 *         cert "/etc/hark/my cert.pem";
 *     }
 *
 * A file is a list of directives. A directive is a name, zero or more
 * arguments, and either ';' or a block of child directives in braces.
 * Arguments are words (any run of characters other than white space, ';',
 * '{', '}' and '"'), or double-quoted strings where \" and \\ are the only
 * escapes. '#' starts a comment where a token could start.
 *
 * Parsing builds a tree that records where everything starts (file, line,
 * column; both count from 1, columns in bytes) so that the program reading it
 * can report its own errors as precisely as the parser does. Every message
 * has the form
 *
 *     <file>:<line>:<col>: expected <what>, got <what was found>
 *
 * for example `hark.conf:12:16: expected a duration such as 10s, got "ten"`.
 * Only failures to read the file itself have no position ("hark.conf:
 * expected a readable file, got No such file or directory").
 *
 * Input is treated as hostile: file size, token length, nesting depth, the
 * number of directives and of arguments are bounded (hk_conf_limits_t), and
 * NUL or control bytes are rejected. The parser is fuzzed (fuzz/conf.c).
 *
 * Thread safety: functions are reentrant; a tree is immutable once parsed
 * and may be read from any thread. Parsing a file reads it with blocking
 * calls: do it at start-up or on a pool worker, never on a loop thread.
 */
#ifndef HARK_CONF_H
#define HARK_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hark/api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a token starts. file points into the tree (hk_conf_t.file). */
typedef struct hk_conf_pos {
    const char *file;
    unsigned line; /* from 1 */
    unsigned col;  /* from 1, in bytes */
} hk_conf_pos_t;

/*
 * One argument. str is NUL-terminated with escapes resolved (it cannot
 * contain a NUL byte). The end marker of a directive (hk_conf_node_t.end)
 * has the same shape with end set: str is ";" or "{" (or "" at the end of
 * the file, for the root) and pos is where that terminator is.
 */
typedef struct hk_conf_arg {
    const char *str;
    size_t len;
    bool quoted; /* written as "..." */
    bool end;    /* the terminator, not an argument */
    hk_conf_pos_t pos;
} hk_conf_arg_t;

typedef struct hk_conf_node hk_conf_node_t;

/* One directive. */
struct hk_conf_node {
    const char *name; /* NUL-terminated, never quoted */
    hk_conf_pos_t pos;
    hk_conf_arg_t *args;
    size_t nargs;
    hk_conf_arg_t end;        /* the ';' or '{' after the arguments */
    bool block;               /* has a { ... } block, possibly empty */
    hk_conf_node_t *children; /* the directives in the block, in file order */
    size_t nchildren;
    hk_conf_pos_t block_close; /* the '}' (block only) */
};

/* A parsed file. root has no name or arguments; its children are the top level. */
typedef struct hk_conf {
    char *file; /* the name given to the parser */
    hk_conf_node_t root;
    void *_arena; /* every string and array of the tree */
} hk_conf_t;

/* Bounds against hostile input. Zero fields (or a NULL pointer) take the defaults. */
typedef struct hk_conf_limits {
    size_t max_bytes;      /* of the whole input; default 1 MiB */
    size_t max_token;      /* bytes of one word or string (after escapes); default 4096 */
    unsigned max_depth;    /* nested blocks; default 16 */
    size_t max_directives; /* in the whole file; default 10000 */
    size_t max_args;       /* of one directive; default 64 */
} hk_conf_limits_t;

#define HK_CONF_MAX_BYTES_DEFAULT (1u << 20)
#define HK_CONF_MAX_TOKEN_DEFAULT 4096u
#define HK_CONF_MAX_DEPTH_DEFAULT 16u
#define HK_CONF_MAX_DIRECTIVES_DEFAULT 10000u
#define HK_CONF_MAX_ARGS_DEFAULT 64u

/*
 * Parses buf[0 .. len) (not necessarily NUL-terminated); name is the file
 * name used in positions and messages. On success stores a tree in *out
 * (free it with hk_conf_free) and returns 0. On failure *out is NULL, a
 * message is written to err (truncated to errlen, always terminated when
 * errlen > 0; err may be NULL) and the result is -EINVAL (syntax), -E2BIG (a
 * limit other than the size), -EFBIG (input over max_bytes) or -ENOMEM.
 */
HK_API int hk_conf_parse_buffer(const char *name, const char *buf, size_t len,
                                const hk_conf_limits_t *limits, hk_conf_t **out, char *err,
                                size_t errlen);

/*
 * Reads the file at path (blocking) and parses it as above, path being the
 * name in messages. Read failures return their -errno (-ENOENT, -EACCES,
 * -EISDIR, ...) with a message without a position.
 */
HK_API int hk_conf_parse_file(const char *path, const hk_conf_limits_t *limits, hk_conf_t **out,
                              char *err, size_t errlen);

/* Frees a tree and everything in it (every pointer into it). NULL is ignored. */
HK_API void hk_conf_free(hk_conf_t *conf);

/*
 * Argument i of d, or d's end marker (&d->end) when i >= d->nargs, so that a
 * missing argument is reported where it should have been, as "got ";"".
 */
HK_API const hk_conf_arg_t *hk_conf_arg(const hk_conf_node_t *d, size_t i);

typedef enum hk_conf_block {
    HK_CONF_NO_BLOCK,       /* the directive ends with ';' */
    HK_CONF_BLOCK,          /* the directive has a { ... } block */
    HK_CONF_BLOCK_OPTIONAL, /* either */
} hk_conf_block_t;

/*
 * Checks the shape of a directive: between min_args and max_args arguments
 * and a block or not. Returns 0, or -EINVAL with a message such as
 * `expected ";" after 1 argument of "threads", got "listen"` (a forgotten
 * ';' makes the next directive's words extra arguments).
 */
HK_API int hk_conf_expect(const hk_conf_node_t *d, size_t min_args, size_t max_args,
                          hk_conf_block_t block, char *err, size_t errlen);

/*
 * Typed values. Each returns 0 and stores the value, or returns -EINVAL
 * (-ERANGE when the value does not fit) with a message naming the argument's
 * position; an end marker gives `..., got ";"`. Quoted and unquoted
 * arguments are read the same way.
 */

/*
 * "10s": an unsigned integer and a unit ns, us, ms, s, m or h; no unit =
 * seconds. At most HK_CONF_DURATION_MAX (-ERANGE beyond), so that a deadline
 * made by adding it to a clock reading cannot wrap.
 */
#define HK_CONF_DURATION_MAX (UINT64_C(1) << 62)
HK_API int hk_conf_duration(const hk_conf_arg_t *a, uint64_t *ns, char *err, size_t errlen);

/* "32k": an unsigned integer and an optional k, m or g (either case; 1024-based). */
HK_API int hk_conf_size(const hk_conf_arg_t *a, uint64_t *bytes, char *err, size_t errlen);

/* "on" or "off". */
HK_API int hk_conf_bool(const hk_conf_arg_t *a, bool *v, char *err, size_t errlen);

/* A decimal integer in [min, max] without sign ("expected an integer from 1 to 256"). */
HK_API int hk_conf_uint(const hk_conf_arg_t *a, uint64_t min, uint64_t max, uint64_t *v, char *err,
                        size_t errlen);

/*
 * A non-empty string; what names it in the message ("a path" gives
 * `expected a path, got ";"`).
 */
HK_API int hk_conf_string(const hk_conf_arg_t *a, const char *what, char *err, size_t errlen);

/*
 * "key=value" arguments: returns 1 when a is key=... and fills *value as an
 * argument of its own (pointing into a's string, positioned after the '='
 * when a is not quoted, so typed getters report the value's column), 0 when
 * a is not of that key (or is an end marker). Never fails.
 */
HK_API int hk_conf_kv(const hk_conf_arg_t *a, const char *key, hk_conf_arg_t *value);

/*
 * Writes "<file>:<line>:<col>: " and then the printf-style message to err
 * (truncated, terminated when errlen > 0; err may be NULL). Returns -EINVAL,
 * so that `return hk_conf_errorf(...)` reports and fails in one line.
 */
HK_API int hk_conf_errorf(char *err, size_t errlen, const hk_conf_pos_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * `<pos of a>: expected <what>, got <a as found>`, the common case of
 * hk_conf_errorf. Returns -EINVAL.
 */
HK_API int hk_conf_error_arg(char *err, size_t errlen, const hk_conf_arg_t *a, const char *what);

/* A buffer this large always holds hk_conf_quote's output whole. */
#define HK_CONF_QUOTE_MAX 176

/*
 * Writes s[0 .. len) as a double-quoted string into buf for a message:
 * '"' and '\' escaped, other bytes outside printable ASCII as \xNN, and
 * inputs over 40 bytes cut with "..." after the closing quote. An end
 * marker is written by hk_conf_error_arg as its character (";") or as
 * "end of file". Returns buf (always terminated when buflen > 0).
 */
HK_API const char *hk_conf_quote(const char *s, size_t len, char *buf, size_t buflen);

#ifdef __cplusplus
}
#endif

#endif
