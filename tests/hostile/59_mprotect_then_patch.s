// case: mprotect its own page writable through libc, then patch
// category: self-modifying
// expect: abi_violation
// note: the guard refuses the mprotect call before it is made (without the guard, qemu runs the block it translated before the store, and the udf still executes)
    .text
    .globl kernel
    .type kernel, %function
kernel:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adr x0, kernel
    and x0, x0, #~0xfff
    mov x1, #0x1000
    mov x2, #7
@ADDR x16 mprotect@
    blr x16
    adr x9, 1f
    movz w10, #0x201f
    movk w10, #0xd503, lsl #16
    str w10, [x9]
1:  udf #0
    ldp x29, x30, [sp], #16
    ret
