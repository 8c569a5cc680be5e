// case: overwrite libc's stdout FILE structure (a hijack of the harness's next fwrite)
// category: out-of-bounds
// expect: memory_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x9 _IO_2_1_stdout_@
    str xzr, [x9, #8]
    ret
