// case: write above the stack pointer into the caller's frame
// category: out-of-bounds
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    str xzr, [sp, #8]
    ret
