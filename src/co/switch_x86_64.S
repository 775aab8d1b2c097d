/*
 * Coroutine context switch for x86-64 (System V).
 *
 * Why assembly: a switch only has to save what the ABI says a called function
 * preserves (rbx, rbp, r12-r15, the stack pointer, the x87 control word and
 * the MXCSR control bits); swapcontext() also saves the signal mask with a
 * system call and every register, which costs about 100 times more.
 *
 * void hk__ctx_swap(void **save_sp, void *new_sp)
 *   Pushes the callee-saved state on the current stack, stores the stack
 *   pointer in *save_sp, loads new_sp and pops the state saved there.
 *
 * A new context's stack is prepared (ctx.c) as if hk__ctx_swap had saved it,
 * with r12 = the entry function, r13 = its argument and hk__ctx_boot as the
 * return address; the stack pointer is 16-byte aligned when hk__ctx_boot runs.
 */
#if defined(__x86_64__) && !defined(HK_CO_UCONTEXT)
    .text
    .globl hk__ctx_swap
    .hidden hk__ctx_swap
    .type hk__ctx_swap, @function
    .align 16
hk__ctx_swap:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    /*
     * ldmxcsr and fldcw are microcoded and stall later floating-point work
     * on some cores, while contexts nearly always share one control state:
     * load each half only when it differs from the one being left (the
     * sticky MXCSR flags included, so each context keeps its own), as the
     * aarch64 switch does with FPCR. Interleaved hand runs of
     * bench-co-micro yield on a Xeon: 20.3-27.0 ns before, 19.4-20.0 after.
     */
    movl 8(%rsp), %eax
    movzwl (%rsp), %ecx
    movq %rsi, %rsp
    cmpl 8(%rsp), %eax
    jne 2f
1:  cmpw (%rsp), %cx
    jne 4f
3:  addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
2:  ldmxcsr 8(%rsp)
    jmp 1b
4:  fldcw (%rsp)
    jmp 3b
    .cfi_endproc
    .size hk__ctx_swap, .-hk__ctx_swap

    .globl hk__ctx_boot
    .hidden hk__ctx_boot
    .type hk__ctx_boot, @function
    .align 16
hk__ctx_boot:
    .cfi_startproc
    .cfi_undefined rip
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size hk__ctx_boot, .-hk__ctx_boot
#endif
    .section .note.GNU-stack,"",@progbits
