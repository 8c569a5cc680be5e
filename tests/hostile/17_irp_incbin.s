// case: directive name substituted by .irp
// category: file-read-directive
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .section .rodata
    .irp d, incbin
    .\d "@CANARY@"
    .endr
