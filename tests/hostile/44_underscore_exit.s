// case: _exit(0): no atexit handlers, no flush
// category: harness-jump
// expect: abi_violation
    .text
    .globl kernel
    .type kernel, %function
kernel:
    mov x0, #0
@ADDR x16 _exit@
    br x16
