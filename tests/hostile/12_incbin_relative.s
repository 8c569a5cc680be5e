// case: .incbin by a relative path climbing out of the scratch directory
// category: file-read-directive
// expect: forbidden_directive
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .section .rodata
leak:
    .incbin "@CANARY_REL@"
