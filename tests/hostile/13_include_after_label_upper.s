// case: upper-case .INCLUDE after a label and a ';'
// category: file-read-directive
// expect: forbidden_directive
    .text
    .globl kernel
    .type kernel, %function
kernel:
    nop; here: .INCLUDE "../../../../../etc/passwd"
    ret
