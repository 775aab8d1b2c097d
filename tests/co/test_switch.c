/* Context switch: callee-saved registers, the FPU control state, and the guard page. */
#include <criterion/criterion.h>
#include <fenv.h>
#include <hark.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
struct regs {
    uint64_t in[4]; /* rbx, r13, r14, r15 */
    uint64_t out[4];
};

/*
 * Loads rbx and r12-r15 (r12 holds the struct address), calls hk_co_yield on
 * a 16-byte aligned stack, and stores what the registers hold afterwards.
 */
static void regs_across_yield(struct regs *r)
{
    int (*fn)(void) = hk_co_yield;
    __asm__ volatile("subq $128, %%rsp\n\t"
                     "pushq %%rbp\n\t"
                     "movq %%rsp, %%rbp\n\t"
                     "andq $-16, %%rsp\n\t"
                     "pushq %%r12\n\t"
                     "pushq %%r12\n\t"
                     "movq %[r], %%r12\n\t"
                     "movq 0(%%r12), %%rbx\n\t"
                     "movq 8(%%r12), %%r13\n\t"
                     "movq 16(%%r12), %%r14\n\t"
                     "movq 24(%%r12), %%r15\n\t"
                     "call *%%rax\n\t"
                     "movq %%rbx, 32(%%r12)\n\t"
                     "movq %%r13, 40(%%r12)\n\t"
                     "movq %%r14, 48(%%r12)\n\t"
                     "movq %%r15, 56(%%r12)\n\t"
                     "popq %%r12\n\t"
                     "popq %%r12\n\t"
                     "movq %%rbp, %%rsp\n\t"
                     "popq %%rbp\n\t"
                     "addq $128, %%rsp\n\t"
                     : "+a"(fn), [r] "+D"(r)
                     :
                     : "rbx", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "r13", "r14", "r15",
                       "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                       "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                       "xmm15");
}
#endif

static unsigned short x87_cw(void)
{
    unsigned short cw = 0;
#if defined(__x86_64__)
    __asm__ volatile("fnstcw %0" : "=m"(cw));
#endif
    return cw;
}

struct fpu_arg {
    int round;
    int ok;
    uint64_t seed;
};

static void *fpu_co(void *arg)
{
    struct fpu_arg *a = arg;
    fesetround(a->round);
    unsigned short cw = x87_cw();
    a->ok = 1;
    for (int i = 0; i < 200; i++) {
#if defined(__x86_64__)
        struct regs r;
        for (int k = 0; k < 4; k++)
            r.in[k] = a->seed * 0x0101010101010101ull + (uint64_t)k * 0x1000 + (uint64_t)i;
        regs_across_yield(&r);
        if (memcmp(r.in, r.out, sizeof r.in) != 0)
            a->ok = 0;
#else
        hk_co_yield();
#endif
        if (fegetround() != a->round || x87_cw() != cw)
            a->ok = 0;
    }
    return NULL;
}

static void *fpu_main(void *arg)
{
    (void)arg;
    static struct fpu_arg args[4] = {
        {FE_UPWARD, 0, 1}, {FE_DOWNWARD, 0, 2}, {FE_TOWARDZERO, 0, 3}, {FE_TONEAREST, 0, 4}};
    hk_co_t *cos[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(hk_co_spawn(NULL, fpu_co, &args[i], NULL, &cos[i]), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(hk_co_join(cos[i], NULL, HK_FOREVER), 0);
        cr_assert(args[i].ok, "coroutine %d lost a register or its rounding mode", i);
    }
    return NULL;
}

Test(switch, registers_and_fpu_control)
{
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 1};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    cr_assert_eq(hk_co_run(rt, fpu_main, NULL, NULL), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
}

Test(switch, registers_and_fpu_control_two_workers)
{
    hk_co_runtime_t *rt;
    hk_co_runtime_options_t o = {.workers = 2};
    cr_assert_eq(hk_co_runtime_new(&rt, &o), 0);
    cr_assert_eq(hk_co_run(rt, fpu_main, NULL, NULL), 0);
    cr_assert_eq(hk_co_runtime_free(rt), 0);
}

static volatile int sink;

__attribute__((noinline)) static int recurse(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    if (n == 0)
        return pad[0];
    return recurse(n - 1) + pad[0];
}

static void *deep_co(void *arg)
{
    (void)arg;
    sink = recurse(1 << 20);
    return NULL;
}

static void *deep_main(void *arg)
{
    (void)arg;
    hk_co_attr_t attr = {.name = "deep-diver", .stack_size = 32 * 1024};
    hk_co_t *co;
    hk_co_spawn(NULL, deep_co, NULL, &attr, &co);
    hk_co_join(co, NULL, HK_FOREVER);
    return NULL;
}

Test(switch, guard_page_reports_overflow)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        hk_co_runtime_t *rt;
        hk_co_runtime_options_t o = {.workers = 1};
        if (hk_co_runtime_new(&rt, &o) < 0)
            _exit(3);
        hk_co_run(rt, deep_main, NULL, NULL);
        _exit(0);
    }
    close(fds[1]);
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "child status %d, stderr: %s", status, buf);
    cr_assert_eq(WTERMSIG(status), SIGSEGV);
    cr_assert(strstr(buf, "coroutine 'deep-diver' overflowed its stack"), "stderr: %s", buf);
}
