// case: store 256 MiB past the output buffer
// category: out-of-bounds
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x9, #0x10000000
    str wzr, [x0, x9]
    ret
