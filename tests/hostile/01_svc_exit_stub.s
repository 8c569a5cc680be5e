// case: exit(0) through svc before computing anything
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x0, #0
    mov x8, #93
    svc #0
    ret
