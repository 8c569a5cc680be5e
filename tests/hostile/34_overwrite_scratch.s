// case: truncate the submission's own files in the scratch directory
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
    mov x1, #0x241
    mov x2, #0x1b6
@ADDR x16 open@
    blr x16
    ldp x29, x30, [sp], #16
    ret
    .section .rodata
path: .asciz "candidate.elf"
