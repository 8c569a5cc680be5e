// case: write into the const input
// category: out-of-bounds
// expect: input_modified
    .text
    .globl kernel
    .type kernel, %function
kernel:
    str wzr, [x1]
    ret
