// case: overwrite the harness's call-block pointer
// category: out-of-bounds
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x9 armgym_cb@
    str xzr, [x9]
    ret
