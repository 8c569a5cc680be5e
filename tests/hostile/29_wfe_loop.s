// case: waiting for an event that never comes
// category: infinite-loop
// expect: object_rejected
    .text
    .globl kernel
    .type kernel, %function
kernel:
1:  wfe
    b 1b
