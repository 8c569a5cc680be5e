// case: return past the harness's register capture (x30 + 48)
// category: harness-jump
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    add x30, x30, #48
    ret
