// case: .space whose size is a symbol (256 MiB of code)
// category: bomb
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .set big, 1 << 28
    ret
    .space big
