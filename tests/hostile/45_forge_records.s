// case: write fake bytes to stdout through write() and return
// category: harness-jump
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    mov x0, #1
    adrp x1, fake
    add x1, x1, :lo12:fake
    mov x2, #32
@ADDR x16 write@
    blr x16
    ldp x29, x30, [sp], #16
    ret
    .section .rodata
fake: .ascii "TEST\0\0\0\0"
    .fill 24, 1, 0
