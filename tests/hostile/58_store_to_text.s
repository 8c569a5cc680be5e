// case: patch its own code (text is read-only)
// category: self-modifying
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    adr x9, 1f
    ldr w10, =0xd65f03c0
    str w10, [x9]
1:  nop
    ret
    .section .rodata
    .ltorg
