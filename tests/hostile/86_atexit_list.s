// case: overwrite libc's atexit handler list
// category: out-of-bounds
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x9 __exit_funcs@
    str xzr, [x9]
    ret
