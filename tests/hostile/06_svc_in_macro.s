// case: svc emitted by a macro
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .macro leave code
    mov x0, #\code
    mov x8, #94
    svc #0
    .endm
    leave 0
    ret
