// case: a loop of 2^64 iterations
// category: infinite-loop
// expect: timeout
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x9, #-1
1:  subs x9, x9, #1
    b.ne 1b
    ret
