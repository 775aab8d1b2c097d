/* Accessors of src/tls/ctx_access.h (the context stays opaque outside src/tls). */
#include "tls/ctx_access.h"
#include "tls/internal.h"

SSL_CTX *hk__tls_ctx_ssl(hk_tls_ctx_t *ctx)
{
    return ctx->ssl_ctx;
}

unsigned hk__tls_ctx_flags(const hk_tls_ctx_t *ctx)
{
    return ctx->flags;
}
