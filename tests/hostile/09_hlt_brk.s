// case: halting instructions
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    hlt #0
    brk #1
    ret
