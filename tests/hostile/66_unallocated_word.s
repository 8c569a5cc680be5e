// case: an unallocated encoding as .inst
// category: unavailable-instruction
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    .inst 0xffffffff
    ret
