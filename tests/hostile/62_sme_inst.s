// case: SME outer product as an .inst word
// category: unavailable-instruction
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .inst 0x80800000
    ret
