// case: create files in /tmp and /var/tmp through openat
// category: host-syscall
// expect: abi_violation
// note: no svc in the object: libc's code in the linked executable is called by absolute address
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    mov x0, #-100
    adrp x1, tmp
    add x1, x1, :lo12:tmp
    mov x2, #0x241
    mov x3, #0x1b6
@ADDR x16 openat@
    blr x16
    mov x0, #-100
    adrp x1, vartmp
    add x1, x1, :lo12:vartmp
    mov x2, #0x241
    mov x3, #0x1b6
@ADDR x16 openat@
    blr x16
    ldp x29, x30, [sp], #16
    ret
    .section .rodata
tmp: .asciz "/tmp/@TOKEN@"
vartmp: .asciz "/var/tmp/@TOKEN@"
