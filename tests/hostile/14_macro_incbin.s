// case: .incbin whose name a macro argument builds (.macro m d / .\d)
// category: file-read-directive
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .macro m d
    .\d "@CANARY@"
    .endm
    .section .rodata
    m incbin
