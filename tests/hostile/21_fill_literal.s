// case: .fill of 2 GiB
// category: bomb
// expect: forbidden_directive
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .section .rodata
    .fill 0x10000000, 8, 0
