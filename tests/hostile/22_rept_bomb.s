// case: .rept of 100 million instructions
// category: bomb
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .rept 100000000
    nop
    .endr
    ret
