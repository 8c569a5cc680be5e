// case: branch back into main
// category: harness-jump
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x16 main@
    br x16
