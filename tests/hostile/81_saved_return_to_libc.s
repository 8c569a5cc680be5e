// case: overwrite the trampoline's saved return address with libc's write, then return properly
// category: harness-jump
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x9 write@
    str x9, [sp, #72]
    mov x0, #2
    ret
