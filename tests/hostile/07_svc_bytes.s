// case: svc spelled byte by byte
// category: syscall-stub
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x8, #93
    .byte 0x01, 0x00, 0x00, 0xd4
    ret
