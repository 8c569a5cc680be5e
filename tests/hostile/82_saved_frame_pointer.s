// case: overwrite the trampoline's saved frame pointer (sp+64)
// category: harness-jump
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    str xzr, [sp, #64]
    ret
