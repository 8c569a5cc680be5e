// case: svc as a .word after ret, reached by a branch
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x8, #93
    b 1f
    ret
1:  .word 0xd4000001
