// case: nested .rept, 10^10 words
// category: bomb
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .rept 100000
    .rept 100000
    .word 0
    .endr
    .endr
