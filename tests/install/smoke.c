/* Built against an installed libhark: creates a loop and runs a timer. */
#include <hark.h>

#include <stdio.h>

static int fired;

static void on_timer(hk_timer_t *t, uint64_t expirations)
{
    (void)t;
    fired += (int)expirations;
}

int main(void)
{
    hk_loop_t *loop;
    hk_timer_t t;
    int r = hk_loop_new(&loop, 0);
    if (r != 0) {
        fprintf(stderr, "hk_loop_new: %s\n", hk_strerror(r));
        return 1;
    }
    if (hk_timer_init(loop, &t) != 0 || hk_timer_start_in(&t, on_timer, 1000000, 0) != 0)
        return 2;
    r = hk_loop_run(loop, HK_RUN_DEFAULT);
    if (r != 0 || fired != 1) {
        fprintf(stderr, "run returned %d, fired %d\n", r, fired);
        return 3;
    }
    hk_close(&t.base, NULL);
    hk_loop_run(loop, HK_RUN_NOWAIT);
    if (hk_loop_free(loop) != 0)
        return 4;
    printf("hark smoke ok (%s)\n", hk_err_name(-9));
    return 0;
}
