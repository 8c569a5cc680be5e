// case: svc stub placed in .rodata and branched to (data is never executable)
// category: syscall-stub
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    adrp x9, stub
    add x9, x9, :lo12:stub
    br x9
    .section .rodata
    .p2align 2
stub:
    .word 0xd2800000, 0xd2800ba8, 0xd4000001
