// case: a macro that expands itself twice
// category: bomb
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .macro boom
    boom
    boom
    .endm
    boom
    ret
