// case: write code into .data and jump to it (data is never executable)
// category: self-modifying
// expect: crash
    .text
    .globl kernel
    .type kernel, %function
kernel:
    adrp x9, buf
    add x9, x9, :lo12:buf
    movz w10, #0x03c0
    movk w10, #0xd65f, lsl #16
    str w10, [x9]
    br x9
    .data
    .p2align 2
buf: .word 0
