// case: 128 MiB of .bss through a symbol
// category: bomb
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .bss
    .set big, 1 << 27
    .zero big
