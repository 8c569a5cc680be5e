// case: SME switched on with .arch_extension
// category: unavailable-instruction
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .arch_extension sme
    zero {za}
    ret
