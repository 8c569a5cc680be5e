// The mutation oracle's call gate: enters a kernel with every register the AAPCS64 leaves
// undefined holding the test's random bits, and records every register on the way out.
//
// void oracle_call(struct oracle_regs *r)   (layout: OFF_* below, mirrored in oracle_harness.c)
//
// On entry to the kernel: x0-x29 and q0-q31 come from r (the argument registers already hold the
// arguments, the others random bits; x19-x29 and d8-d15 random values the kernel must keep),
// p0-p15 and FFR random, NZCV random, sp = r->stack_top, x30 = the return address. The target is
// called through x16 or x17 (r->via17); the other one holds random bits too.

#define OFF_X        0
#define OFF_V      256
#define OFF_P      768
#define OFF_FFR    800
#define OFF_NZCV   808
#define OFF_STACK  816
#define OFF_TARGET 824
#define OFF_VIA17  832
#define OFF_OUT_X  840
#define OFF_OUT_SP 1088
#define OFF_OUT_V  1096

        .arch   armv9-a+sve2
        .text

// x0-x8, x10-x15, x18-x29 from [x9]; x9 last (it is the base).
.macro load_gprs
        ldp     x0, x1, [x9, #OFF_X + 0]
        ldp     x2, x3, [x9, #OFF_X + 16]
        ldp     x4, x5, [x9, #OFF_X + 32]
        ldp     x6, x7, [x9, #OFF_X + 48]
        ldr     x8, [x9, #OFF_X + 64]
        ldp     x10, x11, [x9, #OFF_X + 80]
        ldp     x12, x13, [x9, #OFF_X + 96]
        ldp     x14, x15, [x9, #OFF_X + 112]
        ldp     x18, x19, [x9, #OFF_X + 144]
        ldp     x20, x21, [x9, #OFF_X + 160]
        ldp     x22, x23, [x9, #OFF_X + 176]
        ldp     x24, x25, [x9, #OFF_X + 192]
        ldp     x26, x27, [x9, #OFF_X + 208]
        ldp     x28, x29, [x9, #OFF_X + 224]
        ldr     x9, [x9, #OFF_X + 72]
.endm

        .globl  oracle_call
        .type   oracle_call, %function
        .p2align 4
oracle_call:
        stp     x29, x30, [sp, #-176]!
        stp     x19, x20, [sp, #16]
        stp     x21, x22, [sp, #32]
        stp     x23, x24, [sp, #48]
        stp     x25, x26, [sp, #64]
        stp     x27, x28, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        adrp    x1, oracle_saved_sp
        mov     x2, sp
        str     x2, [x1, :lo12:oracle_saved_sp]
        adrp    x1, oracle_regs_ptr
        str     x0, [x1, :lo12:oracle_regs_ptr]
        mov     x9, x0

        // FFR through p0, then the sixteen predicates (2 bytes each at a 128-bit vector length).
        add     x10, x9, #OFF_FFR
        ldr     p0, [x10]
        wrffr   p0.b
        add     x10, x9, #OFF_P
        ldr     p0, [x10, #0, mul vl]
        ldr     p1, [x10, #1, mul vl]
        ldr     p2, [x10, #2, mul vl]
        ldr     p3, [x10, #3, mul vl]
        ldr     p4, [x10, #4, mul vl]
        ldr     p5, [x10, #5, mul vl]
        ldr     p6, [x10, #6, mul vl]
        ldr     p7, [x10, #7, mul vl]
        ldr     p8, [x10, #8, mul vl]
        ldr     p9, [x10, #9, mul vl]
        ldr     p10, [x10, #10, mul vl]
        ldr     p11, [x10, #11, mul vl]
        ldr     p12, [x10, #12, mul vl]
        ldr     p13, [x10, #13, mul vl]
        ldr     p14, [x10, #14, mul vl]
        ldr     p15, [x10, #15, mul vl]

        // q0-q31 (at a 128-bit vector length these are all of z0-z31).
        add     x10, x9, #OFF_V
        ldp     q0, q1, [x10], #32
        ldp     q2, q3, [x10], #32
        ldp     q4, q5, [x10], #32
        ldp     q6, q7, [x10], #32
        ldp     q8, q9, [x10], #32
        ldp     q10, q11, [x10], #32
        ldp     q12, q13, [x10], #32
        ldp     q14, q15, [x10], #32
        ldp     q16, q17, [x10], #32
        ldp     q18, q19, [x10], #32
        ldp     q20, q21, [x10], #32
        ldp     q22, q23, [x10], #32
        ldp     q24, q25, [x10], #32
        ldp     q26, q27, [x10], #32
        ldp     q28, q29, [x10], #32
        ldp     q30, q31, [x10], #32

        ldr     x10, [x9, #OFF_STACK]
        mov     sp, x10
        ldr     x11, [x9, #OFF_TARGET]
        ldr     x12, [x9, #OFF_VIA17]
        ldr     x10, [x9, #OFF_NZCV]
        msr     nzcv, x10               // nothing below sets flags
        cbnz    x12, 1f
        mov     x16, x11
        ldr     x17, [x9, #OFF_X + 136]
        load_gprs
        blr     x16
        b       2f
1:      mov     x17, x11
        ldr     x16, [x9, #OFF_X + 128]
        load_gprs
        blr     x17

2:      // Record everything the kernel left, then restore the harness's own state.
        adrp    x9, oracle_regs_ptr
        ldr     x9, [x9, :lo12:oracle_regs_ptr]
        add     x10, x9, #OFF_OUT_X
        stp     x0, x1, [x10, #0]
        stp     x2, x3, [x10, #16]
        stp     x4, x5, [x10, #32]
        stp     x6, x7, [x10, #48]
        str     x8, [x10, #64]
        stp     x12, x13, [x10, #96]
        stp     x14, x15, [x10, #112]
        stp     x16, x17, [x10, #128]
        stp     x18, x19, [x10, #144]
        stp     x20, x21, [x10, #160]
        stp     x22, x23, [x10, #176]
        stp     x24, x25, [x10, #192]
        stp     x26, x27, [x10, #208]
        stp     x28, x29, [x10, #224]
        str     x30, [x10, #240]
        mov     x11, sp
        str     x11, [x9, #OFF_OUT_SP]
        add     x10, x9, #OFF_OUT_V
        stp     q0, q1, [x10], #32
        stp     q2, q3, [x10], #32
        stp     q4, q5, [x10], #32
        stp     q6, q7, [x10], #32
        stp     q8, q9, [x10], #32
        stp     q10, q11, [x10], #32
        stp     q12, q13, [x10], #32
        stp     q14, q15, [x10], #32
        stp     q16, q17, [x10], #32
        stp     q18, q19, [x10], #32
        stp     q20, q21, [x10], #32
        stp     q22, q23, [x10], #32
        stp     q24, q25, [x10], #32
        stp     q26, q27, [x10], #32
        stp     q28, q29, [x10], #32
        stp     q30, q31, [x10], #32

        adrp    x1, oracle_saved_sp
        ldr     x2, [x1, :lo12:oracle_saved_sp]
        mov     sp, x2
        ldp     x19, x20, [sp, #16]
        ldp     x21, x22, [sp, #32]
        ldp     x23, x24, [sp, #48]
        ldp     x25, x26, [sp, #64]
        ldp     x27, x28, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldp     x29, x30, [sp], #176
        ret
        .size   oracle_call, .-oracle_call

        .bss
        .p2align 3
oracle_saved_sp:
        .zero   8
oracle_regs_ptr:
        .zero   8
        .section .note.GNU-stack,"",%progbits
