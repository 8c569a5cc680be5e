// case: macro-built .incbin of /proc/self/environ
// category: file-read-directive
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
    .macro m d
    .\d "/proc/self/environ"
    .endm
    .section .rodata
    m incbin
