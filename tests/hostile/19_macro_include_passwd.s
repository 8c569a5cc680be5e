// case: macro-built .include of /etc/passwd
// category: file-read-directive
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .macro m d
    .\d "/etc/passwd"
    .endm
    m include
    ret
