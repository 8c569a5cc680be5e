// case: .space of 1 GiB
// category: bomb
// expect: forbidden_directive
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .space 1 << 30
