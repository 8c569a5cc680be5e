// case: SME outer product by mnemonic (the assembler does not know it for V2)
// category: unavailable-instruction
// expect: assemble_error
    .text
    .globl kernel
    .type kernel, %function
kernel:
    fmopa za0.s, p0/m, p1/m, z0.s, z1.s
    ret
