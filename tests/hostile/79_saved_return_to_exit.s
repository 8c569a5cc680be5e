// case: overwrite the trampoline's saved return address (sp+72) with libc's exit, then return properly
// category: harness-jump
// expect: memory_violation
// note: without the store check the trampoline's final ret ran exit(77) with the guard's window closed: crash, exit status 77
    .text
    .globl kernel
    .type kernel, %function
kernel:
@ADDR x9 exit@
    str x9, [sp, #72]
    mov x0, #77
    ret
