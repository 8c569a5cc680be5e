// case: store just before the output buffer
// category: out-of-bounds
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    str wzr, [x0, #-4]
    ret
