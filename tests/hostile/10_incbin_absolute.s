// case: .incbin of a host file by absolute path
// category: file-read-directive
// expect: forbidden_directive
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .section .rodata
leak:
    .incbin "@CANARY@"
