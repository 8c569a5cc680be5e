// case: macro-built .include by a relative path
// category: file-read-directive
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .macro m d
    .\d "@CANARY_REL@"
    .endm
    m include
    ret
