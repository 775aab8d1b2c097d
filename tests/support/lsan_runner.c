/*
 * LeakSanitizer in a Criterion test binary of the ASan build: leaks are
 * looked for in the workers, the processes BoxFort starts as
 * "boxfort-worker" and where every test, with its init and fini, runs; not
 * in the runner, the process that started them, where only Criterion's code
 * runs.
 *
 * Why: the runner itself leaks, now and then. For each test with a
 * .timeout, BoxFort (inside libcriterion) allocates a 48-byte timeout
 * request that its killer thread frees once the test has ended; when two
 * such tests run at once and the machine is loaded, one of those requests
 * is, now and then, still unfreed and unreferenced when the runner exits.
 * LSan then failed a binary whose tests had all passed (test_co_misuse,
 * whose nine tests all have a .timeout: "Direct leak of 48 byte(s)" from
 * libcriterion.so.3+0x1a332 under criterion_run_all_tests). LSan matches a
 * suppression against every frame of the allocation, and every test's own
 * allocations have libcriterion frames below them, so a suppression naming
 * libcriterion would hide hark's leaks too; turning LSan off in the runner
 * alone does not.
 */
#include <errno.h>
#include <string.h>

int __lsan_is_turned_off(void);

int __lsan_is_turned_off(void)
{
    return strcmp(program_invocation_short_name, "boxfort-worker") != 0;
}
