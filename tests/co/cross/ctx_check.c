/*
 * A self-checking test of the assembly context switch, in plain C with its own
 * checks and exit status: there is no Criterion for aarch64, where it runs
 * under qemu-user (run-aarch64.sh, ctest co_ctx_aarch64_qemu), and the same
 * source runs natively against switch_x86_64.S (ctest co_ctx_native).
 *
 * It is linked with src/co/ctx.c and src/co/switch_<arch>.S only, so it tests
 * the real stack preparation (hk__ctx_make) and the real switch, on stacks it
 * maps itself. The register round trip calls hk__ctx_swap straight from
 * inline assembly that has loaded known patterns into every callee-saved
 * register: a compiled caller would save some of them itself and hide a
 * switch that forgets them. Nothing here tells the sanitizers about the raw
 * switches, so it is built without them.
 *
 * Checks: callee-saved general registers (and d8-d15 on aarch64) survive a
 * round trip in both directions; the floating-point control state (FPCR;
 * MXCSR and the x87 control word) is per context, and a fresh context starts
 * with the defaults; a fresh context runs its entry with its argument, with a
 * 16-byte aligned stack, and an unwinder stops at its boot frame, also from
 * a signal handler (hk__ctx_interrupted, used by the stall monitor, reads the
 * interrupted sp and pc right); a ping-pong of 1,000,000 switches ends with
 * the right counts.
 */
#include "co/internal.h"

#include <fenv.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <unwind.h>

#if defined(HK_CO_UCONTEXT) || !(defined(__x86_64__) || defined(__aarch64__))
#error "ctx_check tests the assembly switch of x86-64 or aarch64"
#endif

void hk__ctx_swap(void **save_sp, void *new_sp);
void hk__ctx_boot(void);

#define ROUNDS 100
#define PINGPONG 1000000L
#define STACK_SIZE ((size_t)64 * 1024)

static int checks, failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* ---- the callee-saved registers, loaded and read around a raw hk__ctx_swap ---- */

#if defined(__aarch64__)
#define NGPR 11 /* x19-x28, x29 */
#define NFPR 8  /* d8-d15 */
static const char *const gpr_names[NGPR] = {"x19", "x20", "x21", "x22", "x23", "x24",
                                            "x25", "x26", "x27", "x28", "x29"};
#else
#define NGPR 6 /* rbx, rbp, r12-r15 */
#define NFPR 0 /* SysV x86-64 has no callee-saved vector registers */
static const char *const gpr_names[NGPR] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
#endif

/* Offsets are spelled out in the assembly below: keep the layout as it is. */
struct regs {
    uint64_t gin[NGPR];
    uint64_t fin[NFPR + 1]; /* + 1: no zero-length array on x86-64 */
    uint64_t gout[NGPR];
    uint64_t fout[NFPR + 1];
};

/*
 * Loads r->gin (and r->fin) into the callee-saved registers, swaps from *save
 * to the context whose saved sp is `to`, and, once something swaps back,
 * stores what the registers hold into r->gout (r->fout). The frame pointer is
 * saved by hand: a compiler that uses it does not accept it as a clobber.
 */
static void regs_swap(struct regs *r, void **save, void *to)
{
#if defined(__aarch64__)
    register void **x0 __asm__("x0") = save;
    register void *x1 __asm__("x1") = to;
    register struct regs *x2 __asm__("x2") = r;
    __asm__ volatile("stp x29, x2, [sp, #-16]!\n\t"
                     "ldp x19, x20, [x2, #0]\n\t"
                     "ldp x21, x22, [x2, #16]\n\t"
                     "ldp x23, x24, [x2, #32]\n\t"
                     "ldp x25, x26, [x2, #48]\n\t"
                     "ldp x27, x28, [x2, #64]\n\t"
                     "ldr x29, [x2, #80]\n\t"
                     "ldp d8, d9, [x2, #88]\n\t"
                     "ldp d10, d11, [x2, #104]\n\t"
                     "ldp d12, d13, [x2, #120]\n\t"
                     "ldp d14, d15, [x2, #136]\n\t"
                     "bl hk__ctx_swap\n\t"
                     "ldr x2, [sp, #8]\n\t"
                     "stp x19, x20, [x2, #160]\n\t"
                     "stp x21, x22, [x2, #176]\n\t"
                     "stp x23, x24, [x2, #192]\n\t"
                     "stp x25, x26, [x2, #208]\n\t"
                     "stp x27, x28, [x2, #224]\n\t"
                     "str x29, [x2, #240]\n\t"
                     "stp d8, d9, [x2, #248]\n\t"
                     "stp d10, d11, [x2, #264]\n\t"
                     "stp d12, d13, [x2, #280]\n\t"
                     "stp d14, d15, [x2, #296]\n\t"
                     "ldp x29, x2, [sp], #16\n\t"
                     : "+r"(x0), "+r"(x1), "+r"(x2)
                     :
                     : "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
                       "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25",
                       "x26", "x27", "x28", "x30", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7",
                       "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v18",
                       "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29",
                       "v30", "v31", "memory", "cc");
#else
    /* Below the red zone and 16-byte aligned at the call; the old rsp goes back last. */
    __asm__ volatile("movq %%rsp, %%rax\n\t"
                     "subq $128, %%rsp\n\t"
                     "andq $-16, %%rsp\n\t"
                     "pushq %%rax\n\t"
                     "pushq %%rbp\n\t"
                     "pushq %%rdx\n\t"
                     "pushq %%rdx\n\t"
                     "movq 0(%%rdx), %%rbx\n\t"
                     "movq 8(%%rdx), %%rbp\n\t"
                     "movq 16(%%rdx), %%r12\n\t"
                     "movq 24(%%rdx), %%r13\n\t"
                     "movq 32(%%rdx), %%r14\n\t"
                     "movq 40(%%rdx), %%r15\n\t"
                     "call hk__ctx_swap\n\t"
                     "movq 8(%%rsp), %%rdx\n\t"
                     "movq %%rbx, 56(%%rdx)\n\t"
                     "movq %%rbp, 64(%%rdx)\n\t"
                     "movq %%r12, 72(%%rdx)\n\t"
                     "movq %%r13, 80(%%rdx)\n\t"
                     "movq %%r14, 88(%%rdx)\n\t"
                     "movq %%r15, 96(%%rdx)\n\t"
                     "addq $16, %%rsp\n\t"
                     "popq %%rbp\n\t"
                     "popq %%rsp\n\t"
                     : "+D"(save), "+S"(to), "+d"(r)
                     :
                     : "rax", "rbx", "rcx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
                       "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory",
                       "cc");
#endif
}

_Static_assert(offsetof(struct regs, fin) == 8 * NGPR, "layout used by regs_swap");
_Static_assert(offsetof(struct regs, gout) == 8 * (NGPR + NFPR + 1), "layout used by regs_swap");
_Static_assert(offsetof(struct regs, fout) == 8 * (2 * NGPR + NFPR + 1),
               "layout used by regs_swap");

/* Distinct patterns per side, round and register; bit 63 set so none is a small number. */
static void regs_fill(struct regs *r, uint64_t side, unsigned round)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NGPR; i++)
        r->gin[i] = 0x8000000000000000ull | side << 40 | (uint64_t)round << 16 | (uint64_t)i;
    for (int i = 0; i < NFPR; i++)
        r->fin[i] = 0xC000000000000000ull | side << 40 | (uint64_t)round << 16 | (uint64_t)i << 8;
}

static void regs_compare(const struct regs *r, const char *who, unsigned round)
{
    for (int i = 0; i < NGPR; i++)
        CHECK(r->gout[i] == r->gin[i], "%s round %u: %s is %#llx, was %#llx", who, round,
              gpr_names[i], (unsigned long long)r->gout[i], (unsigned long long)r->gin[i]);
    for (int i = 0; i < NFPR; i++)
        CHECK(r->fout[i] == r->fin[i], "%s round %u: d%d is %#llx, was %#llx", who, round, 8 + i,
              (unsigned long long)r->fout[i], (unsigned long long)r->fin[i]);
}

/* ---- the floating-point control state ---- */

#if defined(__aarch64__)
/* FPCR: RMode in bits 23:22 (1 = up, 3 = toward zero), FZ bit 24, DN bit 25. */
#define FPCTL_FRESH UINT64_C(0)
#define FPCTL_MAIN (UINT64_C(3) << 22 | UINT64_C(1) << 24)
#define FPCTL_CO (UINT64_C(1) << 22 | UINT64_C(1) << 25)
static uint64_t fpctl_get(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}
static void fpctl_set(uint64_t v)
{
    __asm__ volatile("msr fpcr, %0" ::"r"(v));
}
#else
/* MXCSR in the low half (RC bits 14:13, FTZ bit 15), the x87 control word (RC bits 11:10) above. */
#define FPCTL_FRESH (UINT64_C(0x037F) << 32 | 0x1F80)
#define FPCTL_MAIN ((UINT64_C(0x037F) | 0xC00) << 32 | (0x1F80 | 0x6000 | 0x8000))
#define FPCTL_CO ((UINT64_C(0x037F) | 0x800) << 32 | (0x1F80 | 0x4000))
static uint64_t fpctl_get(void)
{
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(cw));
    return (uint64_t)cw << 32 | (mxcsr & ~UINT32_C(0x3F)); /* without the sticky flags */
}
static void fpctl_set(uint64_t v)
{
    uint32_t mxcsr = (uint32_t)v;
    uint16_t cw = (uint16_t)(v >> 32);
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" ::"m"(mxcsr), "m"(cw));
}
#endif

/*
 * Pairs of control states (main's, a context's) for check_fpctl_pairs: the
 * switch loads the state, or each half of it on x86-64, only when it differs
 * from the one it leaves, so each half must also survive changing alone.
 */
#if defined(__aarch64__)
static const uint64_t fpctl_pairs[][2] = {
    {FPCTL_FRESH, FPCTL_FRESH},
    {FPCTL_MAIN, FPCTL_MAIN},
    {FPCTL_FRESH, FPCTL_CO},
    {FPCTL_MAIN, FPCTL_CO},
};
#else
#define FPCTL_X87_DOUBLE (UINT64_C(0x027F) << 32 | 0x1F80) /* x87 precision: double */
#define FPCTL_SSE_FTZ (UINT64_C(0x037F) << 32 | 0x9F80)    /* flush-to-zero */
static const uint64_t fpctl_pairs[][2] = {
    {FPCTL_FRESH, FPCTL_FRESH},        {FPCTL_MAIN, FPCTL_MAIN},
    {FPCTL_FRESH, FPCTL_X87_DOUBLE},   {FPCTL_X87_DOUBLE, FPCTL_FRESH},
    {FPCTL_FRESH, FPCTL_SSE_FTZ},      {FPCTL_SSE_FTZ, FPCTL_FRESH},
    {FPCTL_X87_DOUBLE, FPCTL_SSE_FTZ}, {FPCTL_MAIN, FPCTL_CO},
};
#endif

/* ---- the contexts ---- */

static hk__ctx_t main_ctx, co_ctx, co2_ctx, co3_ctx;
/* co2's stack, as given to hk__ctx_make (the context keeps it in sanitizer builds only). */
static void *co2_lo;
static size_t co2_size;
static long co_count;

struct entry_seen {
    void *arg;
    int aligned;
    uint64_t fpctl;
    int unwound;    /* what _Unwind_Backtrace returned */
    int nframes;    /* frames it walked */
    uintptr_t last; /* the last frame's address */
};
static struct entry_seen seen1, seen2;

static void to_main(hk__ctx_t *self)
{
    hk__ctx_switch(self, &main_ctx, 0);
}

static _Unwind_Reason_Code walk_frame(struct _Unwind_Context *uc, void *arg)
{
    struct entry_seen *s = arg;
    if (s->nframes >= 64)
        return _URC_NORMAL_STOP; /* a loop: the unwinder did not stop at the boot frame */
    uintptr_t ip = (uintptr_t)_Unwind_GetIP(uc);
    if (ip) { /* past the end, libgcc calls once more with no address (as glibc drops it) */
        s->last = ip;
        s->nframes++;
    }
    return _URC_NO_REASON;
}

/*
 * What every fresh context checks first; noinline keeps the depth known. The
 * walk is libgcc's own, not glibc's backtrace(), which hides an unwinder
 * that goes round in circles (it stops when a frame repeats).
 */
static __attribute__((noinline)) void entry_record(struct entry_seen *s, void *arg)
{
    s->arg = arg;
    s->fpctl = fpctl_get();
    s->unwound = _Unwind_Backtrace(walk_frame, s);
}

/*
 * Whether the entry was called with an aligned stack: a 16-byte aligned local
 * is placed relative to sp on the ABI's promise that sp was aligned at the
 * call, and so is the frame address, so both end up misaligned when the boot
 * frame was. The empty asm hides the addresses from the compiler, which would
 * otherwise take the promise for a fact and fold the test to true.
 */
static int aligned16(uintptr_t a)
{
    __asm__ volatile("" : "+r"(a));
    return (a & 15) == 0;
}

#define ENTRY_ALIGNED()                                                                            \
    __extension__({                                                                                \
        _Alignas(16) volatile char probe_[16];                                                     \
        probe_[0] = 0;                                                                             \
        aligned16((uintptr_t)probe_) && aligned16((uintptr_t)__builtin_frame_address(0));          \
    })

/*
 * One side of a register round trip: patterns in, swap away, and once the
 * other side swaps back, the same patterns and this side's control state.
 */
static void regs_round(const char *who, uint64_t side, unsigned round, void **save, void *to,
                       uint64_t fpctl, int rounding)
{
    struct regs r;
    regs_fill(&r, side, round);
    regs_swap(&r, save, to);
    regs_compare(&r, who, round);
    CHECK(fpctl_get() == fpctl, "%s round %u: control state %#llx", who, round,
          (unsigned long long)fpctl_get());
    CHECK(fegetround() == rounding, "%s round %u: rounding %d", who, round, fegetround());
}

/*
 * hk__ctx_interrupted (what the stall monitor's signal handler asks before it
 * unwinds), with a real signal raised on the second context's stack and on
 * main's: the registers it reads from the ucontext, and an unwind from the
 * handler through the signal frame that ends at hk__ctx_boot.
 */
struct sig_seen {
    int calls;
    int inside;      /* hk__ctx_interrupted with co2's stack */
    int fake_switch; /* the same with the pc moved into hk__ctx_swap */
    struct entry_seen walk;
};
static struct sig_seen sig_co, sig_main, *sig_into;

static void on_signal(int signo, siginfo_t *si, void *uctx)
{
    (void)signo;
    (void)si;
    struct sig_seen *s = sig_into;
    uintptr_t pc;
    s->calls++;
    s->inside = hk__ctx_interrupted(uctx, co2_lo, co2_size, &pc);
    s->walk.unwound = _Unwind_Backtrace(walk_frame, &s->walk);
    ucontext_t uc = *(ucontext_t *)uctx;
#if defined(__aarch64__)
    uc.uc_mcontext.pc = (uintptr_t)hk__ctx_swap + 4;
#else
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)hk__ctx_swap + 4;
#endif
    s->fake_switch = hk__ctx_interrupted(&uc, co2_lo, co2_size, &pc);
}

static void co2_main(void *arg)
{
    seen2.aligned = ENTRY_ALIGNED();
    entry_record(&seen2, arg);
    sig_into = &sig_co;
    raise(SIGUSR1);
    for (;;)
        to_main(&co2_ctx);
}

static void check_signals(void)
{
    uintptr_t boot = (uintptr_t)hk__ctx_boot;
    CHECK(sig_co.calls == 1 && sig_main.calls == 1, "handler ran %d and %d times", sig_co.calls,
          sig_main.calls);
    CHECK(sig_co.inside, "a signal on the context's stack is not seen there");
    CHECK(!sig_co.fake_switch, "a pc inside hk__ctx_swap is not seen as inside the switch");
    CHECK(!sig_main.inside, "a signal on main's stack is seen on the context's");
    CHECK(sig_co.walk.unwound == _URC_END_OF_STACK && sig_co.walk.nframes < 32 &&
              sig_co.walk.last > boot && sig_co.walk.last <= boot + 16,
          "unwinding from the handler ended with %d after %d frames at %#lx (boot %#lx)",
          sig_co.walk.unwound, sig_co.walk.nframes, (unsigned long)sig_co.walk.last,
          (unsigned long)boot);
}

static void co_main(void *arg)
{
    seen1.aligned = ENTRY_ALIGNED();
    entry_record(&seen1, arg);
    fpctl_set(FPCTL_CO);
    to_main(&co_ctx);
    for (unsigned round = 0; round < ROUNDS; round++)
        regs_round("coroutine", 0xC0, round, &co_ctx.sp, main_ctx.sp, FPCTL_CO, FE_UPWARD);
    for (;;) {
        co_count++;
        to_main(&co_ctx);
    }
}

/* co3: sets the state main asks for, gives way, then reports what it has on its return. */
static uint64_t co3_set, co3_saw;

static void co3_main(void *arg)
{
    (void)arg;
    for (;;) {
        fpctl_set(co3_set);
        to_main(&co3_ctx);
        co3_saw = fpctl_get();
        to_main(&co3_ctx);
    }
}

static void check_fpctl_pairs(void)
{
    for (size_t i = 0; i < sizeof fpctl_pairs / sizeof fpctl_pairs[0]; i++) {
        uint64_t mine = fpctl_pairs[i][0];
        co3_set = fpctl_pairs[i][1];
        fpctl_set(mine);
        hk__ctx_switch(&main_ctx, &co3_ctx, 0);
        CHECK(fpctl_get() == mine, "pair %zu: main has %#llx after the context set %#llx", i,
              (unsigned long long)fpctl_get(), (unsigned long long)co3_set);
        hk__ctx_switch(&main_ctx, &co3_ctx, 0);
        CHECK(co3_saw == co3_set, "pair %zu: the context has %#llx, not %#llx", i,
              (unsigned long long)co3_saw, (unsigned long long)co3_set);
        CHECK(fpctl_get() == mine, "pair %zu: main has %#llx, not %#llx", i,
              (unsigned long long)fpctl_get(), (unsigned long long)mine);
    }
}

static void *map_stack(size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, size + (size_t)page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED || mprotect(m, (size_t)page, PROT_NONE) < 0) {
        perror("ctx_check: mmap");
        exit(1);
    }
    return m + page;
}

static void check_entry(const struct entry_seen *s, void *arg, const char *who)
{
    uintptr_t boot = (uintptr_t)hk__ctx_boot;
    CHECK(s->arg == arg, "%s ran with argument %p, not %p", who, s->arg, arg);
    CHECK(s->aligned, "%s: stack not 16-byte aligned at entry", who);
    CHECK(s->fpctl == FPCTL_FRESH, "%s started with control state %#llx, not %#llx", who,
          (unsigned long long)s->fpctl, (unsigned long long)FPCTL_FRESH);
    /* entry_record, the entry function, hk__ctx_boot: the unwinder stops at the boot frame. */
    CHECK(s->unwound == _URC_END_OF_STACK, "%s: the unwinder ended with %d", who, s->unwound);
    CHECK(s->nframes >= 2 && s->nframes <= 4, "%s: backtrace of %d frames", who, s->nframes);
    CHECK(s->last > boot && s->last <= boot + 16,
          "%s: the last frame %#lx is not in hk__ctx_boot (%#lx)", who, (unsigned long)s->last,
          (unsigned long)boot);
}

int main(void)
{
    hk__ctx_init_thread(&main_ctx);
    static int arg1, arg2;
    hk__ctx_make(&co_ctx, map_stack(STACK_SIZE), STACK_SIZE, co_main, &arg1);
    /* An odd size: hk__ctx_make must round the top down to 16 bytes. */
    co2_lo = map_stack(STACK_SIZE);
    co2_size = STACK_SIZE - 40;
    hk__ctx_make(&co2_ctx, co2_lo, co2_size, co2_main, &arg2);

    fpctl_set(FPCTL_MAIN);
    hk__ctx_switch(&main_ctx, &co_ctx, 0);
    check_entry(&seen1, &arg1, "first context");
    CHECK(fpctl_get() == FPCTL_MAIN, "main: control state %#llx after the first switch",
          (unsigned long long)fpctl_get());
    struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    hk__ctx_switch(&main_ctx, &co2_ctx, 0);
    check_entry(&seen2, &arg2, "second context");
    sig_into = &sig_main;
    raise(SIGUSR1);
    check_signals();

    for (unsigned round = 0; round < ROUNDS; round++)
        regs_round("main", 0xAA, round, &main_ctx.sp, co_ctx.sp, FPCTL_MAIN, FE_TOWARDZERO);

    long main_count = 0;
    for (long i = 0; i < PINGPONG; i++) {
        hk__ctx_switch(&main_ctx, &co_ctx, 0);
        main_count++;
    }
    CHECK(co_count == PINGPONG && main_count == PINGPONG, "ping-pong: %ld and %ld of %ld", co_count,
          main_count, PINGPONG);
    hk__ctx_make(&co3_ctx, map_stack(STACK_SIZE), STACK_SIZE, co3_main, NULL);
    check_fpctl_pairs();
    fpctl_set(FPCTL_FRESH);

    if (failures) {
        fprintf(stderr, "ctx_check: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ctx_check: %d checks passed (%s)\n", checks,
#if defined(__aarch64__)
           "aarch64"
#else
           "x86-64"
#endif
    );
    return 0;
}
