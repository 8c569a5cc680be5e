// case: b .
// category: infinite-loop
// expect: timeout
    .text
    .globl kernel
    .type kernel, %function
kernel:
    b .
