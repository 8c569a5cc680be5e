// case: kill(-1, SIGKILL): every process the sandbox user may signal
// category: host-syscall
// expect: abi_violation
// note: the test keeps a host process of the sandbox user alive and checks it survives
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    mov x0, #-1
    mov x1, #9
@ADDR x16 __mprotect+8@
    mov x8, #129
    blr x16
    ldp x29, x30, [sp], #16
    ret
