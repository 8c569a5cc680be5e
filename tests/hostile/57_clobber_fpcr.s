// case: rounding mode changed and left so
// category: clobbered-register
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x9, #0x400000
    msr fpcr, x9
    ret
