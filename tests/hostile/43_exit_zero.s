// case: exit(0) through libc before any output
// category: harness-jump
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x0, #0
@ADDR x16 exit@
    br x16
