// case: x19 not restored
// category: clobbered-register
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x19, #7
    ret
