// case: sp moved and not restored
// category: clobbered-register
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    sub sp, sp, #32
    ret
