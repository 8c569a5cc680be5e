// case: link register lost
// category: clobbered-register
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x30, #0
    ret
