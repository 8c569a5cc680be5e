// case: bytes that are not UTF-8
// category: huge-or-malformed
// expect: input_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
    ret // ÿþÃ(
