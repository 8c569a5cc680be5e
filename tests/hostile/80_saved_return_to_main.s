// case: overwrite the trampoline's saved return address with main, then return properly
// category: harness-jump
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x9 main@
    str x9, [sp, #72]
    ret
