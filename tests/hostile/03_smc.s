// case: secure monitor call
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    smc #0
    ret
