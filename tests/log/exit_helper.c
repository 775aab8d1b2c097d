/*
 * Helper for test_log_sink: logs far more than its pipe sink holds (nobody
 * reads the pipe) and returns from main without closing the logger. The exit
 * handler must give up after exit_timeout_ns instead of hanging.
 */
#include <hark.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    hk_log_options_t o = {0};
    o.fd = atoi(argv[1]);
    o.exit_timeout_ns = 200u * 1000 * 1000;
    if (hk_log_open(&o) != 0)
        return 3;
    for (int i = 0; i < 50000; i++)
        HK_LOGI("stuck", "i=%d pad=%s", i, "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww");
    return 0;
}
