// case: d15 not restored
// category: clobbered-register
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    fmov d15, #1.0
    ret
