// case: unwind armgym_call's frame and return straight to its caller, skipping every check
// category: harness-jump
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ldp x29, x30, [sp, #64]
    add sp, sp, #224
    ret
