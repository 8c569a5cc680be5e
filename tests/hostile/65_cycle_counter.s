// case: reading the virtual counter (verdicts would not be reproducible)
// category: unavailable-instruction
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mrs x0, cntvct_el0
    ret
