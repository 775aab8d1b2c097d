/*
 * Execution contexts: the switch itself and what the sanitizers must be told.
 *
 * Why the announcements: AddressSanitizer keeps its own view of "the current
 * stack" (for fake stacks and for unpoisoning on longjmp-like exits) and
 * ThreadSanitizer keeps a shadow call stack and a vector clock per thread;
 * both go wrong, with false reports or crashes, when the stack pointer moves to
 * memory they do not know. So every switch is bracketed by
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber (ASan) and
 * preceded by __tsan_switch_to_fiber (TSan), and a coroutine that exits passes
 * NULL so ASan drops its fake stack.
 *
 * The switch is hk__ctx_swap (switch_x86_64.S, switch_aarch64.S) on x86-64
 * and aarch64; elsewhere, or with the CMake option HK_CO_UCONTEXT, it is
 * swapcontext(), which is correct everywhere but makes a system call per
 * switch (the signal mask). The aarch64 switch is checked under qemu-user by
 * tests/co/cross (ctest co_ctx_aarch64_qemu), with this file's frame.
 */
#include "co/internal.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#ifdef HK_CO_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif
#ifdef HK_CO_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#ifndef HK_CO_UCONTEXT
void hk__ctx_swap(void **save_sp, void *new_sp);
void hk__ctx_boot(void);
#endif

void hk__ctx_init_thread(hk__ctx_t *ctx)
{
    memset(ctx, 0, sizeof *ctx);
#ifdef HK_CO_ASAN
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            ctx->stack_lo = lo;
            ctx->stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
#endif
#ifdef HK_CO_TSAN
    ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

#ifdef HK_CO_UCONTEXT
/* makecontext passes int arguments only: the pointers travel in halves. */
static void hk__ctx_trampoline(unsigned fn_hi, unsigned fn_lo, unsigned arg_hi, unsigned arg_lo)
{
    void (*fn)(void *);
    uintptr_t f = ((uintptr_t)fn_hi << 32) | fn_lo;
    memcpy(&fn, &f, sizeof fn);
    fn((void *)(((uintptr_t)arg_hi << 32) | arg_lo));
}
#endif

void hk__ctx_make(hk__ctx_t *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    memset(ctx, 0, sizeof *ctx);
#ifdef HK_CO_ASAN
    ctx->stack_lo = lo;
    ctx->stack_size = size;
#endif
#ifdef HK_CO_UCONTEXT
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    uintptr_t f;
    memcpy(&f, &fn, sizeof f);
    uintptr_t a = (uintptr_t)arg;
    void (*tramp)(void);
    void (*t4)(unsigned, unsigned, unsigned, unsigned) = hk__ctx_trampoline;
    memcpy(&tramp, &t4, sizeof tramp);
    makecontext(&ctx->uc, tramp, 4, (unsigned)(f >> 32), (unsigned)f, (unsigned)(a >> 32),
                (unsigned)a);
#elif defined(__x86_64__)
    /* The frame hk__ctx_swap pops: fpu words, r15..r12, rbx, rbp, return address. */
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *r = (uint64_t *)(top - 16); /* r[0]: a zero "return address" for unwinders */
    r[0] = 0;
    r[-1] = (uint64_t)(uintptr_t)hk__ctx_boot;
    r[-2] = 0;                        /* rbp */
    r[-3] = 0;                        /* rbx */
    r[-4] = (uint64_t)(uintptr_t)fn;  /* r12 */
    r[-5] = (uint64_t)(uintptr_t)arg; /* r13 */
    r[-6] = 0;                        /* r14 */
    r[-7] = 0;                        /* r15 */
    /* The 16-byte fpu area: x87 control word at +0, MXCSR at +8 (the defaults). */
    uint64_t *sp = &r[-9];
    sp[0] = 0x037F;
    sp[1] = 0x1F80;
    ctx->sp = sp;
#elif defined(__aarch64__)
    /*
     * The 176-byte frame hk__ctx_swap restores (layout in switch_aarch64.S),
     * at the aligned top: sp is back at the top, 16-byte aligned, when
     * hk__ctx_boot calls fn. x29 = 0 ends frame-pointer walks; FPCR = 0 is
     * what a new thread starts with (round to nearest, no flush to zero, no
     * traps), as the x86-64 frame carries the default control words.
     */
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)fn;            /* x19 */
    f[1] = (uint64_t)(uintptr_t)arg;           /* x20 */
    f[11] = (uint64_t)(uintptr_t)hk__ctx_boot; /* x30: where the first swap returns */
    ctx->sp = f;
#else
#error "no assembly switch for this architecture: co/internal.h should have chosen ucontext"
#endif
#ifdef HK_CO_TSAN
    ctx->tsan_fiber = __tsan_create_fiber(0);
    ctx->tsan_own = 1;
#endif
}

void hk__ctx_release(hk__ctx_t *ctx)
{
#ifdef HK_CO_TSAN
    if (ctx->tsan_own && ctx->tsan_fiber)
        __tsan_destroy_fiber(ctx->tsan_fiber);
    ctx->tsan_fiber = NULL;
#else
    (void)ctx;
#endif
}

void hk__ctx_started(hk__ctx_t *self)
{
    (void)self;
#ifdef HK_CO_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

void hk__ctx_switch(hk__ctx_t *from, hk__ctx_t *to, int exiting)
{
#ifdef HK_CO_ASAN
    __sanitizer_start_switch_fiber(exiting ? NULL : &from->asan_fake, to->stack_lo, to->stack_size);
#else
    (void)exiting;
#endif
#ifdef HK_CO_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
#ifdef HK_CO_UCONTEXT
    swapcontext(&from->uc, &to->uc);
#else
    hk__ctx_swap(&from->sp, to->sp);
#endif
#ifdef HK_CO_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
}

/*
 * Why both tests: an unwinder started from a signal trusts the CFI of the
 * interrupted code and reads the stack from the interrupted sp. Outside the
 * coroutine's own stack it would walk some other context (the worker's
 * scheduler, the next coroutine); inside hk__ctx_swap the x86-64 switch has
 * pushed registers that its CFI does not describe, so the "return address"
 * it reads is a saved register. Both switch_*.S files place hk__ctx_boot
 * right after hk__ctx_swap, so [hk__ctx_swap, hk__ctx_boot) is the switch.
 * swapcontext (HK_CO_UCONTEXT) moves sp last, and the stack test covers it.
 */
int hk__ctx_interrupted(const void *uctx, const void *lo, size_t size, uintptr_t *pc)
{
    const ucontext_t *uc = uctx;
    uintptr_t sp;
#if defined(__x86_64__)
    sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    sp = (uintptr_t)uc->uc_mcontext.sp;
    *pc = (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)uc;
    (void)lo;
    (void)size;
    *pc = 0;
    return 0; /* registers not known here: no backtraces */
#endif
    if (sp < (uintptr_t)lo || sp - (uintptr_t)lo >= size)
        return 0;
#ifndef HK_CO_UCONTEXT
    if (*pc >= (uintptr_t)hk__ctx_swap && *pc < (uintptr_t)hk__ctx_boot)
        return 0;
#endif
    return 1;
}
