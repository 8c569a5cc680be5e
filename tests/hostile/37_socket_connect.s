// case: socket() + connect() to a listener on the host's 127.0.0.1
// category: host-syscall
// expect: abi_violation
// note: x0 (the socket) flows from socket() into connect()
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    mov x0, #2
    mov x1, #1
    mov x2, #0
@ADDR x16 __mprotect+8@
    mov x8, #198
    blr x16
    adrp x1, addr
    add x1, x1, :lo12:addr
    mov x2, #16
    mov x8, #203
    blr x16
    ldp x29, x30, [sp], #16
    ret
    .section .rodata
    .p2align 3
addr: .hword 2
    .byte (@PORT@ >> 8), (@PORT@ & 255)
    .byte 127, 0, 0, 1
    .quad 0
