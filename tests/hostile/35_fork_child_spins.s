// case: fork (clone syscall through a libc gadget); the child spins forever
// category: host-syscall
// expect: abi_violation
// note: the svc inside __mprotect is used as a gadget: x8 picks the system call
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    mov x0, #17
    mov x1, #0
    mov x2, #0
    mov x3, #0
    mov x4, #0
@ADDR x16 __mprotect+8@
    mov x8, #220
    blr x16
    cbnz x0, 1f
    b .
1:
    ldp x29, x30, [sp], #16
    ret
