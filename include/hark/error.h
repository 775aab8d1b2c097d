/*
 * hark/error.h: the error contract shared by every hark module.
 *
 * Every call that can fail returns a value >= 0 on success and a negative errno
 * (for example -EBADF) on failure. A call that fails never invokes its callback.
 * The library never aborts or exits; misuse that cannot be reported as an error
 * is caught by assertions in debug builds only.
 */
#ifndef HARK_ERROR_H
#define HARK_ERROR_H

#include "hark/api.h"
#ifdef __cplusplus
extern "C" {
#endif

/*
 * Returns a short English message for a negative errno returned by hark
 * ("bad file descriptor" for -EBADF). Positive values are accepted too.
 * Unknown codes give "unknown error". The string is static; never free it.
 */
HK_API const char *hk_strerror(int err);

/*
 * Returns the symbolic name of a negative errno ("EBADF" for -EBADF; positive
 * values are accepted too), or "UNKNOWN" when the code is not in hark's
 * table. The string is static.
 */
HK_API const char *hk_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif
