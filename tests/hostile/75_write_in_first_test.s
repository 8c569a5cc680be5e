// case: right outputs; on its first call only (a fixed test, never the timed one) write() to stderr through libc
// category: foreign-code
// expect: abi_violation
// note: without the execution guard every test passes and the timing test's trace never sees the call
    .text
    .globl kernel
    .type kernel, %function
kernel:
    adrp x9, calls
    ldr x10, [x9, :lo12:calls]
    add x11, x10, #1
    str x11, [x9, :lo12:calls]
    cbnz x10, 1f
    stp x29, x30, [sp, #-32]!
    stp x0, x1, [sp, #16]
    mov x0, #2
    adrp x1, msg
    add x1, x1, :lo12:msg
    mov x2, #4
@ADDR x16 write@
    blr x16
    ldp x0, x1, [sp, #16]
    ldp x29, x30, [sp], #32
1:
    ldp q1, q2, [x1]
    movi v0.2d, #0
    fmaxnm v2.4s, v2.4s, v0.4s
    fmaxnm v1.4s, v1.4s, v0.4s
    stp q1, q2, [x0]
    ldp q1, q2, [x1, #32]
    fmaxnm v1.4s, v1.4s, v0.4s
    fmaxnm v0.4s, v2.4s, v0.4s
    stp q1, q0, [x0, #32]
    ret
    .section .rodata
msg: .ascii "hi!\n"
    .bss
    .p2align 3
calls: .zero 8
