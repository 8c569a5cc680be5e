// case: SME streaming mode enabled by .arch
// category: unavailable-instruction
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .arch armv9-a+sme
    smstart
    smstop
    ret
