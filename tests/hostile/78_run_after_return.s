// case: right outputs; on its first call only, the harness's saved return address is redirected to the kernel's own code, which then resumes the harness
// category: harness-jump
// expect: memory_violation
// note: the timing test's trace catches this only when it happens in the timed test
    .text
    .globl kernel
    .type kernel, %function
kernel:
    adrp x9, calls
    ldr x10, [x9, :lo12:calls]
    add x11, x10, #1
    str x11, [x9, :lo12:calls]
    ldp q1, q2, [x1]
    movi v0.2d, #0
    fmaxnm v2.4s, v2.4s, v0.4s
    fmaxnm v1.4s, v1.4s, v0.4s
    stp q1, q2, [x0]
    ldp q1, q2, [x1, #32]
    fmaxnm v1.4s, v1.4s, v0.4s
    fmaxnm v0.4s, v2.4s, v0.4s
    stp q1, q0, [x0, #32]
    cbnz x10, 1f
    ldr x9, [sp, #72]
    adrp x10, saved
    str x9, [x10, :lo12:saved]
    adr x9, after
    str x9, [sp, #72]
1:
    ret
after:
    adrp x10, saved
    ldr x10, [x10, :lo12:saved]
    br x10
    .bss
    .p2align 3
calls: .zero 8
saved: .zero 8
