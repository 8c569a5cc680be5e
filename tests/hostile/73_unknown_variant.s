// case: a variant id that is not in the suite
// category: huge-or-malformed
// expect: unknown_variant
// variant: no_such_kernel_n1_float32
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret
