// case: svc hidden as an .inst word
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x8, #93
    .inst 0xd4000001
    ret
