// case: store just past the output buffer
// category: out-of-bounds
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    str wzr, [x0, #64]
    ret
