/*
 * Coroutine context switch for aarch64 (AAPCS64, Linux).
 *
 * Why assembly: a called function must preserve only x19-x28, the frame
 * pointer x29, the link register x30, sp, the low 64 bits of v8-v15 (d8-d15)
 * and the floating-point control register FPCR (rounding mode, flush-to-zero,
 * trap enables). swapcontext() saves every register and makes a system call
 * for the signal mask on each switch.
 *
 * void hk__ctx_swap(void **save_sp, void *new_sp)
 *   Stores the callee-saved state in a 176-byte frame on the current stack,
 *   stores sp in *save_sp, loads new_sp and restores the frame saved there,
 *   then returns through the x30 of that frame.
 *
 * The frame (offsets from the saved sp; ctx.c builds one for a new context):
 *     0 x19   8 x20  16 x21  24 x22  32 x23  40 x24  48 x25  56 x26
 *    64 x27  72 x28  80 x29  88 x30  96 d8  104 d9  112 d10 120 d11
 *   128 d12 136 d13 144 d14 152 d15 160 FPCR 168 (padding: sp stays 16-aligned)
 *
 * A new context's frame holds x19 = the entry function, x20 = its argument,
 * x29 = 0 (frame-pointer walks end there) and x30 = hk__ctx_boot, and sits
 * at the 16-byte aligned top of its stack, so sp is aligned when the entry
 * function is called.
 *
 * hk__ctx_boot comes right after hk__ctx_swap, as in switch_x86_64.S:
 * hk__ctx_interrupted (ctx.c) takes [hk__ctx_swap, hk__ctx_boot) for the
 * switch, where a signal handler must not unwind.
 */
#if defined(__aarch64__) && !defined(HK_CO_UCONTEXT)
    .text
    .globl hk__ctx_swap
    .hidden hk__ctx_swap
    .type hk__ctx_swap, %function
    .p2align 4
hk__ctx_swap:
    .cfi_startproc
    /*
     * The CFI tracks only the frame's size: nothing is changed before the
     * stack moves, so "same value" is the right rule for every register, the
     * return address in x30 included, and an unwinder started by a signal
     * there (the stall monitor's backtraces) walks on correctly. From `mov
     * sp, x1` until x30 is reloaded the rules are wrong; the monitor never
     * unwinds with sp outside the stalled coroutine's stack.
     */
    sub sp, sp, #176
    .cfi_def_cfa_offset 176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x10, sp
    str x10, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    /*
     * A write to FPCR may synchronise the pipeline on some cores (Linux's
     * fpsimd_restore_fpcr skips it for the same reason); contexts nearly
     * always share one FPCR, so write it only when it differs.
     */
    ldr x9, [sp, #160]
    mrs x10, fpcr
    cmp x9, x10
    b.eq 1f
    msr fpcr, x9
1:
    add sp, sp, #176
    .cfi_def_cfa_offset 0
    ret
    .cfi_endproc
    .size hk__ctx_swap, .-hk__ctx_swap

    /*
     * The first code of a new context: calls x19(x20). The return address
     * column is undefined, so unwinders (backtrace(), a debugger) stop here
     * instead of walking into whatever lies above the stack's top.
     */
    .globl hk__ctx_boot
    .hidden hk__ctx_boot
    .type hk__ctx_boot, %function
    .p2align 4
hk__ctx_boot:
    .cfi_startproc
    .cfi_undefined x30
    mov x0, x20
    blr x19
    brk #0
    .cfi_endproc
    .size hk__ctx_boot, .-hk__ctx_boot
#endif
    .section .note.GNU-stack,"",%progbits
