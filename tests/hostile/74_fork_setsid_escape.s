// case: fork once; the child leaves the process group (setsid) and spins
// category: host-syscall
// expect: abi_violation
// note: without the sandbox the child escapes a process-group kill (a test shows it)
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adrp x9, forked
    ldr w10, [x9, :lo12:forked]
    cbnz w10, 1f
    mov w10, #1
    str w10, [x9, :lo12:forked]
    mov x0, #17
    mov x1, #0
    mov x2, #0
    mov x3, #0
    mov x4, #0
@ADDR x16 __mprotect+8@
    mov x8, #220
    blr x16
    cbnz x0, 1f
    mov x8, #157
    blr x16
    b .
1:
    ldp x29, x30, [sp], #16
    ret
    .data
    .p2align 2
forked: .word 0
