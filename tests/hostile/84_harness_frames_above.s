// case: store into the harness frames further up the stack (the C caller's and main's)
// category: harness-jump
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    add x9, sp, #256
    str xzr, [x9]
    ret
