// case: fork in an endless loop
// category: host-syscall
// expect: abi_violation
// note: x30 is lost: the loop never returns anyway
    .text
    .globl kernel
    .type kernel, %function
kernel:
2:
    mov x0, #17
    mov x1, #0
    mov x2, #0
    mov x3, #0
    mov x4, #0
@ADDR x16 __mprotect+8@
    mov x8, #220
    blr x16
    b 2b
