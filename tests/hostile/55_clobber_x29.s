// case: frame pointer not restored
// category: clobbered-register
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x29, #0
    ret
