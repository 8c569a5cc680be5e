// case: open() the canary for writing and write() to it
// category: host-syscall
// expect: abi_violation
// note: no svc in the object: libc's code in the linked executable is called by absolute address
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adrp x0, path
    add x0, x0, :lo12:path
    mov x1, #0x201
@ADDR x16 open@
    blr x16
    adrp x1, msg
    add x1, x1, :lo12:msg
    mov x2, #6
@ADDR x16 write@
    blr x16
    ldp x29, x30, [sp], #16
    ret
    .section .rodata
path: .asciz "@CANARY@"
msg: .ascii "pwned\n"
