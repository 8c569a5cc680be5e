// case: overwrite the trampoline's saved x19 (the harness's own callee-saved register)
// category: harness-jump
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x9, #1
    str x9, [sp, #80]
    ret
