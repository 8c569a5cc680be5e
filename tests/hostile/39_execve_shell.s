// case: execve(/bin/sh)
// category: host-syscall
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adrp x0, sh
    add x0, x0, :lo12:sh
    mov x1, #0
    mov x2, #0
@ADDR x16 __mprotect+8@
    mov x8, #221
    blr x16
    ldp x29, x30, [sp], #16
    ret
    .section .rodata
sh: .asciz "/bin/sh"
