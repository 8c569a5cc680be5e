// case: directive name glued together with \() inside a macro
// category: file-read-directive
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .macro m
    .inc\()bin "@CANARY@"
    .endm
    .section .rodata
    m
