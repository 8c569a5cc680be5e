// case: unbounded recursion (the stack runs out)
// category: infinite-loop
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    bl kernel
    ldp x29, x30, [sp], #16
    ret
