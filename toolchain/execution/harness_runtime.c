/* Generic part of the correctness harness, linked with one kernel (candidate or C reference).
 *
 * The harness decides nothing: for each test it generates the inputs from (seed, test, arg),
 * calls `kernel` through a trampoline that plants canaries in every callee-saved register and in
 * a stack guard, and writes to stdout the raw bytes of every buffer (with its guard zones), the
 * return registers and the register state after the call. The host compares the candidate's
 * record with the C reference's record, produced by a different emulated process.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 256
#define STACK_GUARD 64

struct callblock {
    uint64_t v[32][2];         /* 0: q0..q31 at entry (d8-d15: canaries in the low halves) */
    uint64_t x[19];            /* 512: x0..x18 at entry */
    uint64_t nzcv;             /* 664 */
    uint16_t p[20];            /* 672: p0..p15, FFR as p[16] (128-bit SVE: 16 bits each) */
    uint64_t canary_x[11];     /* 712: x19..x29 */
    uint64_t out_v0[2];        /* 800 */
    uint64_t out_x0;           /* 816 */
    uint64_t after_x[11];      /* 824 */
    uint64_t after_d[8];       /* 912 */
    uint64_t sp_before;        /* 976 */
    uint64_t sp_after;         /* 984 */
    uint64_t fpcr_before;      /* 992 */
    uint64_t fpcr_after;       /* 1000 */
    uint64_t stack_guard[8];   /* 1008: pattern planted above the kernel's stack pointer */
    uint64_t stack_after[8];   /* 1072 */
};

struct callblock *armgym_cb;
void armgym_call(struct callblock *cb);

/* Entry state: every register the AAPCS64 leaves undefined at entry is loaded from the call
 * block (random bits chosen by `setup`), the scratch registers last: x18, the base of the last
 * loads, is overwritten by the last of them, and `kernel` is reached by a direct `bl`, so no
 * register but x30 (the return address), sp and the callee-saved canaries holds a value the
 * harness chose for itself. FPCR is left as it is (the default). */
__asm__(
    ".text\n.p2align 4\n.globl armgym_call\n.type armgym_call,%function\n"
    "armgym_call:\n"
    "  stp x29, x30, [sp, #-160]!\n"
    "  stp x19, x20, [sp, #16]\n  stp x21, x22, [sp, #32]\n  stp x23, x24, [sp, #48]\n"
    "  stp x25, x26, [sp, #64]\n  stp x27, x28, [sp, #80]\n"
    "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n"
    "  stp d12, d13, [sp, #128]\n  stp d14, d15, [sp, #144]\n"
    "  adrp x9, armgym_cb\n  str x0, [x9, :lo12:armgym_cb]\n"
    "  mov x9, sp\n  str x9, [x0, #976]\n"
    "  sub sp, sp, #64\n"
    "  add x14, x0, #1008\n"
    "  ldp x10, x11, [x14, #0]\n  stp x10, x11, [sp, #0]\n"
    "  ldp x10, x11, [x14, #16]\n  stp x10, x11, [sp, #16]\n"
    "  ldp x10, x11, [x14, #32]\n  stp x10, x11, [sp, #32]\n"
    "  ldp x10, x11, [x14, #48]\n  stp x10, x11, [sp, #48]\n"
    "  mrs x9, fpcr\n  str x9, [x0, #992]\n"
    /* SVE: FFR (through p0), then p0..p15; at 128 bits the z registers are the q registers */
    "  add x9, x0, #672\n"
    "  ldr p0, [x9, #16, mul vl]\n  wrffr p0.b\n"
    "  ldr p0, [x9, #0, mul vl]\n  ldr p1, [x9, #1, mul vl]\n  ldr p2, [x9, #2, mul vl]\n"
    "  ldr p3, [x9, #3, mul vl]\n  ldr p4, [x9, #4, mul vl]\n  ldr p5, [x9, #5, mul vl]\n"
    "  ldr p6, [x9, #6, mul vl]\n  ldr p7, [x9, #7, mul vl]\n  ldr p8, [x9, #8, mul vl]\n"
    "  ldr p9, [x9, #9, mul vl]\n  ldr p10, [x9, #10, mul vl]\n  ldr p11, [x9, #11, mul vl]\n"
    "  ldr p12, [x9, #12, mul vl]\n  ldr p13, [x9, #13, mul vl]\n"
    "  ldr p14, [x9, #14, mul vl]\n  ldr p15, [x9, #15, mul vl]\n"
    "  ldr x9, [x0, #664]\n  msr nzcv, x9\n" /* nothing below sets flags */
    "  add x9, x0, #712\n"
    "  ldp x19, x20, [x9, #0]\n  ldp x21, x22, [x9, #16]\n  ldp x23, x24, [x9, #32]\n"
    "  ldp x25, x26, [x9, #48]\n  ldp x27, x28, [x9, #64]\n  ldr x29, [x9, #80]\n"
    "  ldp q0, q1, [x0, #0]\n  ldp q2, q3, [x0, #32]\n  ldp q4, q5, [x0, #64]\n"
    "  ldp q6, q7, [x0, #96]\n  ldp q8, q9, [x0, #128]\n  ldp q10, q11, [x0, #160]\n"
    "  ldp q12, q13, [x0, #192]\n  ldp q14, q15, [x0, #224]\n  ldp q16, q17, [x0, #256]\n"
    "  ldp q18, q19, [x0, #288]\n  ldp q20, q21, [x0, #320]\n  ldp q22, q23, [x0, #352]\n"
    "  ldp q24, q25, [x0, #384]\n  ldp q26, q27, [x0, #416]\n  ldp q28, q29, [x0, #448]\n"
    "  ldp q30, q31, [x0, #480]\n"
    "  add x18, x0, #512\n"
    "  ldp x0, x1, [x18, #0]\n  ldp x2, x3, [x18, #16]\n  ldp x4, x5, [x18, #32]\n"
    "  ldp x6, x7, [x18, #48]\n  ldp x8, x9, [x18, #64]\n  ldp x10, x11, [x18, #80]\n"
    "  ldp x12, x13, [x18, #96]\n  ldp x14, x15, [x18, #112]\n  ldp x16, x17, [x18, #128]\n"
    "  ldr x18, [x18, #144]\n"
    "  bl kernel\n"
    /* The performance gate's trace ends at the first block that starts here. */
    ".globl armgym_kernel_return\n"
    "armgym_kernel_return:\n"
    "  adrp x9, armgym_cb\n  ldr x9, [x9, :lo12:armgym_cb]\n"
    "  str q0, [x9, #800]\n  str x0, [x9, #816]\n"
    "  add x14, x9, #824\n"
    "  stp x19, x20, [x14, #0]\n  stp x21, x22, [x14, #16]\n  stp x23, x24, [x14, #32]\n"
    "  stp x25, x26, [x14, #48]\n  stp x27, x28, [x14, #64]\n  str x29, [x14, #80]\n"
    "  stp d8, d9, [x14, #88]\n  stp d10, d11, [x14, #104]\n"
    "  stp d12, d13, [x14, #120]\n  stp d14, d15, [x14, #136]\n"
    "  mov x10, sp\n  add x10, x10, #64\n  str x10, [x9, #984]\n"
    "  mrs x10, fpcr\n  str x10, [x9, #1000]\n"
    "  ldr x10, [x9, #976]\n  sub x11, x10, #64\n"
    "  add x14, x9, #1072\n"
    "  ldp x12, x13, [x11, #0]\n  stp x12, x13, [x14, #0]\n"
    "  ldp x12, x13, [x11, #16]\n  stp x12, x13, [x14, #16]\n"
    "  ldp x12, x13, [x11, #32]\n  stp x12, x13, [x14, #32]\n"
    "  ldp x12, x13, [x11, #48]\n  stp x12, x13, [x14, #48]\n"
    "  ldr x11, [x9, #992]\n  msr fpcr, x11\n"
    "  mov sp, x10\n"
    "  ldp x19, x20, [sp, #16]\n  ldp x21, x22, [sp, #32]\n  ldp x23, x24, [sp, #48]\n"
    "  ldp x25, x26, [sp, #64]\n  ldp x27, x28, [sp, #80]\n"
    "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n"
    "  ldp d12, d13, [sp, #128]\n  ldp d14, d15, [sp, #144]\n"
    "  ldp x29, x30, [sp], #160\n"
    "  ret\n"
    ".size armgym_call, .-armgym_call\n");

_Static_assert(__builtin_offsetof(struct callblock, x) == 512, "layout");
_Static_assert(__builtin_offsetof(struct callblock, nzcv) == 664, "layout");
_Static_assert(__builtin_offsetof(struct callblock, canary_x) == 712, "layout");
_Static_assert(__builtin_offsetof(struct callblock, out_v0) == 800, "layout");
_Static_assert(__builtin_offsetof(struct callblock, out_x0) == 816, "layout");
_Static_assert(__builtin_offsetof(struct callblock, after_d) == 912, "layout");
_Static_assert(__builtin_offsetof(struct callblock, stack_guard) == 1008, "layout");
_Static_assert(__builtin_offsetof(struct callblock, stack_after) == 1072, "layout");

/* splitmix64: tiny, fast, and identical in every process that is given the same key. */
static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s; } rng_t;
static uint64_t next(rng_t *r) { r->s += 0x9e3779b97f4a7c15ULL; return mix(r->s); }
static double unit(rng_t *r) { return (double)(next(r) >> 11) * 0x1.0p-53; } /* [0,1) */
static double sym(rng_t *r) { return 2.0 * unit(r) - 1.0; }                 /* [-1,1) */

enum dt { F16, F32, F64, I8, I32, I64, U32 };
struct arg { enum dt dt; int pointer; int length; int role; /* 0 in, 1 out, 2 inout */ };

static const int dt_size[] = {2, 4, 8, 1, 4, 8, 4};
static const int dt_emax[] = {15, 127, 1023, 0, 0, 0, 0};
static const int dt_emin[] = {-14, -126, -1022, 0, 0, 0, 0};
static const int dt_mant[] = {10, 23, 52, 0, 0, 0, 0};

#include "harness_variant.h" /* generated: NARGS, ARGS[], REDUCTION, NARROW_TESTS, kernel */

static int is_float(enum dt t) { return t == F16 || t == F32 || t == F64; }

static void store(enum dt t, void *p, double v, int64_t iv) {
    switch (t) {
    case F16: { _Float16 h = (_Float16)v; memcpy(p, &h, 2); break; }
    case F32: { float f = (float)v; memcpy(p, &f, 4); break; }
    case F64: memcpy(p, &v, 8); break;
    case I8: { int8_t x = (int8_t)iv; memcpy(p, &x, 1); break; }
    case I32: { int32_t x = (int32_t)iv; memcpy(p, &x, 4); break; }
    case I64: memcpy(p, &iv, 8); break;
    case U32: { uint32_t x = (uint32_t)iv; memcpy(p, &x, 4); break; }
    }
}

static double fmax_of(enum dt t) { return ldexp(2.0 - ldexp(1.0, -dt_mant[t]), dt_emax[t]); }

static void int_range(enum dt t, int64_t *lo, int64_t *hi) {
    switch (t) {
    case I8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case I32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    case U32: *lo = 0; *hi = UINT32_MAX; break;
    default: *lo = INT64_MIN; *hi = INT64_MAX; break;
    }
}

/* Random float of magnitude in [2^e0, 2^e1) with random sign. */
static double logmag(rng_t *r, int e0, int e1) {
    double m = ldexp(1.0 + unit(r), e0 + (int)(next(r) % (uint64_t)(e1 - e0 > 0 ? e1 - e0 : 1)));
    return (next(r) & 1) ? -m : m;
}

/* Tests 0-9 are fixed edge-case families, 10-19 random, 20-30 fixed tests on positions and
 * semantic corners (the names are in compare.TEST_NAMES): */
enum {
    T_RAMP_UP = 20,  /* strictly increasing: the maximum is the last element, the minimum first */
    T_RAMP_DOWN,     /* strictly decreasing: the maximum is the first, the minimum the last */
    T_TIES_MAX,      /* the maximum at 1, n/2 and n-1 (-0, +0, +0 for floats): first wins */
    T_TIES_MIN,      /* the minimum at 1, n/2 and n-1 (+0, -0, -0 for floats): first wins */
    T_NAN_LAST,      /* small integers, NaN (integers: MIN) last */
    T_INF_LAST,      /* small integers, +-infinity (integers: MAX) last */
    T_NAN_FIRST,     /* small integers, NaN (integers: MAX) first; float scalars NaN */
    T_EXT_ALT,       /* MIN and MAX alternating */
    T_LOWP_INT,      /* floats: odd integers a narrower float cannot hold (others 1); ints: MIN */
    T_LOWP_FRAC,     /* floats: one sign, 0.625 of a narrower float's ulp off its grid; ints: MAX */
    T_HALVES,        /* floats: halves (rounding ties), saturation bounds first and last */
    T_END            /* selections: tests T_END + j put the extreme at POSITIONS[j]; then the
                      * NOUTCOME outcome-pairs tests */
};

/* What `gen_*` need to know about the element they make. */
struct slot {
    int i, n;    /* index and length of its argument (n = 1 for a scalar) */
    int ai;      /* argument index */
    int lead;    /* the first float pointer input: the odd integers of T_LOWP_INT */
    int scalar;
};

static int ramp_up(const struct slot *s) { return s->i - s->n / 2; }
static int ramp_down(const struct slot *s) { return s->n / 2 - 1 - s->i; }
static int small(const struct slot *s) { return 1 + (s->i * 3 + s->ai) % 7; } /* 1..7 */
static int alternating(const struct slot *s) { return (s->i & 1) ? -small(s) : small(s); }
static int tie(const struct slot *s) { return s->i == 1 || s->i == s->n / 2 || s->i == s->n - 1; }
/* A selection's position test j: the extreme (10) alone on its side of the sign boundary (0;
 * 2^31 for uint32), every other element 2..16 on the other side, so comparing with the wrong
 * signedness anywhere on the extreme's path loses it as surely as dropping its lane does; the
 * element after it is the runner-up (1), so a compare against the maximum as it stood before
 * the extreme (an unrolled loop's stale register) takes the runner-up instead. */
static int64_t position_value(int test, const struct slot *s) {
    int j = test - T_END;
    if (j >= NPOS) { /* approached (short arrays): before it, a strictly monotone run toward it */
        int p = j - NPOS; /* every position, in order */
        if (s->i == p) return SELECT_SIGN * 10;
        if (s->i < p) return -SELECT_SIGN * (2 + (p - 1 - s->i));
        return -SELECT_SIGN * (s->i == p + 1 ? 1 : 2 + (s->i * 5 + j) % 15);
    }
    if (s->i == POSITIONS[j]) return SELECT_SIGN * 10;
    return -SELECT_SIGN * (s->i == POSITIONS[j] + 1 ? 1 : 2 + (s->i * 5 + j) % 15);
}
static int position_test(int test) { return test >= T_END && test < T_END + NPOS + NAPPROACH; }
static const double HALF_CORNERS[10] = {-0.5, 0.5, -1.5, 1.5, 2.5, -2.5, 126.5, -127.5, -128.5, 127.5};

/* Rounding ties of every kind, saturation bounds at both ends, halves in [-150.5, 150.5]. */
static double halves(const struct slot *s) {
    if (s->i >= s->n - 10) return HALF_CORNERS[s->n - 1 - s->i];
    if (s->i < 10) return HALF_CORNERS[9 - s->i];
    int k = (s->i * 37 + s->ai * 11) % 301;
    if (NAN_OUTCOME && k % 7 == 3) return (k & 8) ? -NAN : NAN; /* NaN among the outcomes */
    return (double)(k - 150) + 0.5;
}

/* Element i of OUTCOME_LANES templates (scale 1): NaN, or outcome o: below -128, above 127, in
 * range (a quarter off a non-zero integer, so never NaN's outcome 0). */
static double outcome_value(int nan, int o, int i) {
    if (nan) return (i & 2) ? -NAN : NAN;
    switch (o) {
    case 0: return -200.5 - (double)(i % 7);
    case 1: return 200.5 + (double)(i % 5);
    default: return ((i & 1) ? -1.0 : 1.0) * (1.25 + (double)(i % 11));
    }
}

/* Test 28 of OUTCOME_LANES templates: in group g = i / 16, lane l = i % 16 holds NaN when bit
 * g % 4 of l is set, else the outcome (g / 4) % 3. Any two lanes differ in some bit, so in some
 * group one is NaN and the other each of the other outcomes (for n >= 192; the first groups use
 * below -128), in one direction only: lane 0 is never NaN. */
static double outcome_lane(const struct slot *s) {
    int g = s->i / 16, l = s->i % 16;
    return outcome_value((l >> (g % 4)) & 1, (g / 4) % 3, s->i);
}

/* The outcome-pairs tests of OUTCOME_LANES templates (harness.py: outcome_pair_tests), after the
 * position tests: test j holds design groups j * OUTCOME_PER_TEST on. Lane l's marks are its own
 * 3-subset of {0..5}; design group d makes NaN the lanes holding mark d % 6 and gives the others
 * outcome d / 6, so every ordered pair of lanes meets NaN in the first beside each outcome in
 * the second. */
static const uint8_t LANE_MARKS[16] = {0x07, 0x0b, 0x13, 0x23, 0x0d, 0x15, 0x25, 0x19,
                                       0x29, 0x31, 0x0e, 0x16, 0x26, 0x1a, 0x2a, 0x32};
static int outcome_pair_test(int test) {
    int j = test - T_END - NPOS - NAPPROACH;
    return j >= 0 && j < NOUTCOME;
}
static double outcome_pair(int test, const struct slot *s) {
    int j = test - T_END - NPOS - NAPPROACH;
    int d = (j * OUTCOME_PER_TEST + s->i / 16) % 18;
    return outcome_value((LANE_MARKS[s->i % 16] >> (d % 6)) & 1, d / 6, s->i);
}

/* Odd integers in (2^q, 2^(q+1)) for the first float input (others 1): they need q + 1 bits,
 * so float16 and bfloat16 (float32 kernels), float32 (float64) or bfloat16 (float16) round
 * them, while n of them sum exactly. */
static double narrow_int(enum dt t, rng_t *r, const struct slot *s) {
    int q = t == F64 ? 24 : t == F32 ? 11 : 8;
    if (!s->lead || s->scalar) return 1.0;
    return ldexp(1.0, q) + (double)(2 * (next(r) % (1ULL << (q - 1))) + 1);
}

/* 1 + k 2^-f + 5 2^-(f+3), k < 2^(f-1): 0.625 of an ulp of the narrower format (f fraction
 * bits: bfloat16 for float32 and float16, float32 for float64) above its grid, so rounding to
 * it errs by >= 0.375 ulp, the same way for every element. */
static double narrow_frac(enum dt t, rng_t *r, const struct slot *s) {
    int f = t == F64 ? 23 : 7;
    if (s->scalar) return 1.0;
    return 1.0 + ldexp((double)(next(r) % (1ULL << (f - 1))), -f) + ldexp(5.0, -(f + 3));
}

static void gen_float(enum dt t, rng_t *r, int test, const struct slot *s, int reduction,
                      void *p) {
    int emax = dt_emax[t], emin = dt_emin[t];
    int big = reduction ? emax / 2 - 8 : emax - 2; /* reductions must not overflow finitely */
    double top = reduction ? ldexp(1.0, big) : fmax_of(t);
    /* float16 ramps in steps of 1/16 (|x| <= 128): a product of two stays finite, since whether
     * a multiply-add that overflows only in its product is finite depends on fusion */
    double ramp_unit = t == F16 ? 1.0 / 16 : 1.0;
    double v;
    if (position_test(test)) {
        store(t, p, (double)position_value(test, s), 0);
        return;
    }
    if (outcome_pair_test(test)) {
        store(t, p, s->scalar ? 1.0 : outcome_pair(test, s), 0);
        return;
    }
    switch (test) {
    case 0: v = 0.0; break;
    case 1: v = ((s->i + s->ai) & 1) ? 0.0 : -0.0; break; /* both pairings of signs */
    case 2: v = (next(r) & 3) ? ldexp(sym(r), emin) : sym(r); break; /* subnormals */
    case 3: /* NaN in the middle and at every i > 0 not 2 mod 3, of random sign (never first:
             * see T_NAN_FIRST): every aligned group of 2 or more lanes holds one, every lane
             * residue modulo any vector width gets both a NaN and an ordinary value */
        if (!s->scalar && s->i == s->n / 2) v = NAN;
        else if (!s->scalar && s->i > 0 && s->i % 3 != 2) v = (next(r) & 1) ? -NAN : NAN;
        else v = sym(r);
        break;
    case 4: v = (next(r) % 16 == 0) ? ((next(r) & 1) ? -INFINITY : INFINITY) : sym(r); break;
    case 5: {
        double pick[] = {top, -top, ldexp(1.0, emin), -ldexp(1.0, emin),
                         ldexp(1.0, emin - dt_mant[t]), 1.0, -1.0, 0.0};
        v = pick[next(r) % 8];
        break;
    }
    case 6: v = ((s->i & 1) ? -1.0 : 1.0) * (double)(1 + s->i % 7); break;
    case 7: v = logmag(r, big - 4, big); break;
    case 8: v = logmag(r, emin / 2 - 2, emin / 2 + 2); break;
    case 9: v = (double)((int64_t)(next(r) % 17) - 8); break;
    case T_RAMP_UP: case T_RAMP_DOWN: case T_TIES_MAX: case T_TIES_MIN: case T_NAN_LAST:
    case T_INF_LAST:
        if (s->scalar) { /* lo < hi in the middle of the ramps; alpha, scale: n / 4 */
            v = (double)((s->ai & 1) ? s->n / 4 : -(s->n / 4)) * ramp_unit;
            break;
        }
        switch (test) {
        case T_RAMP_UP: v = ramp_up(s) * ramp_unit; break;
        case T_RAMP_DOWN: v = ramp_down(s) * ramp_unit; break;
        case T_TIES_MAX: v = tie(s) ? (s->i == 1 ? -0.0 : 0.0) : -small(s); break;
        case T_TIES_MIN: v = tie(s) ? (s->i == 1 ? 0.0 : -0.0) : small(s); break;
        case T_NAN_LAST: v = s->i == s->n - 1 ? NAN : small(s); break;
        default: v = s->i == s->n - 1 ? ((s->ai & 1) ? -INFINITY : INFINITY) : alternating(s);
        }
        break;
    case T_NAN_FIRST: v = s->i == 0 ? NAN : small(s); break;
    case T_EXT_ALT: v = ((s->i + s->ai) & 1) ? top : -top; break;
    case T_LOWP_INT: case T_LOWP_FRAC:
        if (OUTCOME_LANES && test == T_LOWP_INT) { v = s->scalar ? 1.0 : outcome_lane(s); break; }
        v = !NARROW_TESTS ? sym(r) : test == T_LOWP_INT ? narrow_int(t, r, s) : narrow_frac(t, r, s);
        break;
    case T_HALVES: v = s->scalar ? 1.0 : halves(s); break;
    default: {
        int k = test >= 10 && test < 20 ? test - 10 : 9;
        v = (k < 5) ? sym(r) : logmag(r, -(emax < 40 ? 6 : 20), emax < 40 ? 6 : 20);
        break;
    }
    }
    store(t, p, v, 0);
}

static void gen_int(enum dt t, rng_t *r, int test, const struct slot *s, void *p) {
    int64_t lo, hi, v;
    int_range(t, &lo, &hi);
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    int64_t mid = t == U32 ? (int64_t)1 << 31 : 0; /* unsigned data in a middle band */
    if (position_test(test)) {
        store(t, p, 0.0, mid + position_value(test, s));
        return;
    }
    switch (test) {
    case 0: v = 0; break;
    case 1: v = (s->i & 1) ? -1 : 1; break;
    case 2: v = (int64_t)(next(r) % 256) - 128; break;
    case 5: {
        int64_t pick[] = {lo, hi, 0, -1, 1, lo + 1, hi - 1, 2};
        v = pick[next(r) % 8];
        break;
    }
    case 6: v = ((s->i & 1) ? -1 : 1) * (int64_t)(1 + s->i % 7); break;
    case 8: case 9: v = (int64_t)(next(r) % 9) - 4; break;
    case T_RAMP_UP: case T_RAMP_DOWN: case T_TIES_MAX: case T_TIES_MIN:
        if (s->scalar) {
            v = mid + ((s->ai & 1) ? s->n / 4 : -(s->n / 4));
            if (t == I8 && (v > 100 || v < -100)) v = v > 0 ? 100 : -100;
            break;
        }
        if (test == T_TIES_MAX) { v = mid + (tie(s) ? 7 : (t == U32 ? small(s) - 1 : -small(s))); break; }
        if (test == T_TIES_MIN) { v = mid + (tie(s) ? (t == U32 ? 0 : -7) : small(s)); break; }
        if (t == I8) { /* 256 values: not strictly monotone, but a unique extreme at each end */
            int up = test == T_RAMP_UP;
            int last = s->i == s->n - 1, first = s->i == 0;
            int ramp = -100 + (s->i * 200) / s->n;
            v = up ? (last ? 101 : ramp) : (last ? -101 : first ? 102 : -ramp);
            break;
        }
        v = mid + (test == T_RAMP_UP ? ramp_up(s) : ramp_down(s));
        break;
    case T_NAN_LAST: v = s->i == s->n - 1 && !s->scalar ? lo : small(s); break;
    case T_INF_LAST: v = s->i == s->n - 1 && !s->scalar ? hi : alternating(s); break;
    case T_NAN_FIRST: v = s->i == 0 ? hi : small(s); break;
    case T_EXT_ALT: v = ((s->i + s->ai) & 1) ? hi : lo; break;
    case T_LOWP_INT: v = lo; break;
    case T_LOWP_FRAC: v = hi; break;
    case T_HALVES: v = lo + s->i % 5; break;
    default:
        if (test >= 10 && test < 13) v = (int64_t)(next(r) % 2001) - 1000;
        else v = (int64_t)((uint64_t)lo + (span == UINT64_MAX ? next(r) : next(r) % (span + 1)));
        break;
    }
    if (t == U32 && v < 0) v = -v;
    store(t, p, 0.0, v);
}

/* Random bits that are never harmless: every byte is in [0x66, 0x7b] (polarity 0) or in
 * [0xe6, 0xfb] (polarity 1). Read as any lane of any width, that is far from zero and beyond
 * the fixed tests' data: int8 >= 102 or in [-26, -5]; int32/int64 >= 2^30 or <= -2^26;
 * float16 >= 2^9 in magnitude, float32 >= 2^77, float64 >= 2^600, always finite; the sign is
 * the polarity. So an accumulator, index, counter or extreme read before it is written turns
 * out wrong (or faults) in the tests of one polarity or the other, with certainty. */
static uint64_t band(rng_t *r, int polarity) {
    uint64_t bits = next(r), out = 0;
    for (int b = 0; b < 8; b++)
        out |= (uint64_t)((polarity ? 0xe6 : 0x66) + ((bits >> (8 * b)) & 0xff) % 22) << (8 * b);
    return out;
}

static int lead_arg = -1; /* index of the first float pointer input */

static void fill(const struct arg *a, int ai, uint64_t seed, int test, int reduction, uint8_t *p) {
    rng_t r = {mix(seed ^ mix(((uint64_t)test << 8) | (uint64_t)ai))};
    int n = a->pointer ? a->length : 1;
    struct slot sl = {0, n, ai, ai == lead_arg, !a->pointer};
    for (int i = 0; i < n; i++) {
        uint8_t *e = p + (size_t)i * (size_t)dt_size[a->dt];
        sl.i = i;
        if (a->pointer && a->role == 1) { /* out-only: poison, so unwritten outputs show */
            uint64_t w = band(&r, test & 1);
            memcpy(e, &w, (size_t)dt_size[a->dt]);
        } else if (is_float(a->dt)) {
            gen_float(a->dt, &r, test, &sl, reduction, e);
        } else {
            gen_int(a->dt, &r, test, &sl, e);
        }
    }
}

static void make_abs(const struct arg *a, uint8_t *p) {
    int n = a->pointer ? a->length : 1;
    int sz = dt_size[a->dt];
    if (!is_float(a->dt) || (a->pointer && a->role == 1)) return;
    for (int i = 0; i < n; i++) p[(size_t)i * (size_t)sz + (size_t)sz - 1] &= 0x7f; /* clear sign */
}

static uint8_t *arena;
static size_t offsets[NARGS];
static uint8_t scalars[NARGS][16]; /* a scalar's bytes, zero above its size */

static void put(const void *p, size_t n) {
    if (fwrite(p, 1, n, stdout) != n) exit(3);
}

/* 1: the pointer arguments' bytes (guard zones included) of each test are read from stdin, as
 * written by `dump` (the performance gate's traced run: generating them again would put the
 * generator's work into the emulator's trace, where it outweighs the kernel's) */
static int prepared;

static size_t span(const struct arg *a) { return (size_t)a->length * dt_size[a->dt] + 2 * GUARD; }

static void setup(struct callblock *cb, uint64_t seed, int test, int abs_run) {
    rng_t r = {mix(seed ^ 0xabcdef12345ULL ^ (uint64_t)test)};
    int polarity = test & 1;
    for (int i = 0; i < 32; i++) {
        cb->v[i][0] = band(&r, polarity);
        cb->v[i][1] = band(&r, polarity);
    }
    for (int i = 0; i < 19; i++) cb->x[i] = band(&r, polarity);
    /* over any 16 consecutive tests every NZCV value once: each condition both ways */
    cb->nzcv = ((uint64_t)(test + (int)(mix(seed) & 15)) & 15) << 28;
    /* predicates: bit 8 is always clear, so no element size sees an all-true one */
    for (int i = 0; i < 17; i++) cb->p[i] = (uint16_t)(next(&r) & ~(uint64_t)0x100);
    for (int i = 0; i < 11; i++) cb->canary_x[i] = next(&r);
    for (int i = 0; i < 8; i++) cb->v[8 + i][0] = next(&r); /* callee-saved d8-d15 */
    for (int i = 0; i < 8; i++) cb->stack_guard[i] = next(&r);
    int nx = 0, nv = 0;
    for (int k = 0; k < NARGS; k++) {
        const struct arg *a = &ARGS[k];
        uint8_t *p = a->pointer ? arena + offsets[k] : scalars[k];
        if (a->pointer && prepared) {
            if (fread(p - GUARD, 1, span(a), stdin) != span(a)) exit(5);
        } else {
            if (a->pointer) {
                rng_t g = {mix(seed ^ 0x5151ULL ^ ((uint64_t)test << 16) ^ (uint64_t)k)};
                for (int b = 0; b < GUARD; b++) p[-GUARD + b] = (uint8_t)next(&g);
                for (int b = 0; b < GUARD; b++) p[(size_t)a->length * dt_size[a->dt] + b] = (uint8_t)next(&g);
            }
            fill(a, k, seed, test, REDUCTION, p);
        }
        if (abs_run) make_abs(a, p);
        /* a scalar fills the low bits of its register; the bits above it stay random (the
         * AAPCS64 leaves them unspecified), as do the argument registers nothing uses */
        if (a->pointer) cb->x[nx++] = (uint64_t)(uintptr_t)p;
        else if (is_float(a->dt)) memcpy(cb->v[nv++], p, (size_t)dt_size[a->dt]);
        else memcpy(&cb->x[nx++], p, (size_t)dt_size[a->dt]);
    }
}

/* The pointer arguments of test `test` as the kernel would receive them: the traced run's input. */
static void dump(uint64_t seed, int test) {
    static struct callblock cb;
    memset(&cb, 0, sizeof cb);
    setup(&cb, seed, test, 0);
    uint32_t head[2] = {0x54504e49u, (uint32_t)test};
    put(head, sizeof head);
    for (int k = 0; k < NARGS; k++)
        if (ARGS[k].pointer) put(arena + offsets[k] - GUARD, span(&ARGS[k]));
}

static void call(uint64_t seed, int test, int abs_run) {
    static struct callblock cb;
    memset(&cb, 0, sizeof cb);
    setup(&cb, seed, test, abs_run);
    armgym_call(&cb);
    uint32_t head[2] = {abs_run ? 0x53424154u : 0x54534554u, (uint32_t)test};
    put(head, sizeof head);
    put(&cb.out_x0, 8);
    put(cb.out_v0, 16);
    if (!abs_run)
        for (int k = 0; k < NARGS; k++)
            if (!ARGS[k].pointer) put(scalars[k], 8);
    for (int k = 0; k < NARGS; k++) {
        const struct arg *a = &ARGS[k];
        if (!a->pointer) continue;
        size_t n = (size_t)a->length * dt_size[a->dt];
        if (abs_run) { if (a->role != 0) put(arena + offsets[k], n); continue; }
        put(arena + offsets[k] - GUARD, n + 2 * GUARD);
    }
    if (abs_run) return;
    put(cb.canary_x, sizeof cb.canary_x);
    for (int i = 0; i < 8; i++) put(&cb.v[8 + i][0], 8);
    put(cb.after_x, sizeof cb.after_x);
    put(cb.after_d, sizeof cb.after_d);
    uint64_t regs[4] = {cb.sp_before, cb.sp_after, cb.fpcr_before, cb.fpcr_after};
    put(regs, sizeof regs);
    put(cb.stack_guard, sizeof cb.stack_guard);
    put(cb.stack_after, sizeof cb.stack_after);
}

/* ./exe <seedhex> <ntests> <absruns> [<first> [<mode>]]: tests first..ntests-1 (first defaults
 * to 0); mode D<k> first writes test k's pointer arguments (an INPT record), mode S reads every
 * test's pointer arguments from stdin. */
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    uint64_t seed = strtoull(argv[1], 0, 16);
    int tests = atoi(argv[2]);
    int abs_runs = atoi(argv[3]);
    int first = argc > 4 ? atoi(argv[4]) : 0;
    if (first < 0 || first > tests) return 2;
    uint64_t vl;
    __asm__("cntb %0" : "=r"(vl));
    if (vl != 16) return 6; /* the call block holds 128-bit z and 16-bit p registers */
    for (int k = 0; k < NARGS && lead_arg < 0; k++)
        if (ARGS[k].pointer && ARGS[k].role != 1 && is_float(ARGS[k].dt)) lead_arg = k;
    size_t total = GUARD;
    for (int k = 0; k < NARGS; k++) {
        if (!ARGS[k].pointer) continue;
        offsets[k] = total;
        total += ((size_t)ARGS[k].length * dt_size[ARGS[k].dt] + 2 * GUARD + 63) & ~(size_t)63;
    }
    arena = aligned_alloc(64, total + GUARD);
    if (!arena) return 4;
    setvbuf(stdout, 0, _IOFBF, 1 << 16);
    const char *mode = argc > 5 ? argv[5] : "";
    if (mode[0] == 'D') dump(seed, atoi(mode + 1));
    else if (mode[0] == 'S') prepared = 1;
    else if (mode[0]) return 2;
    for (int t = first; t < tests; t++) {
        call(seed, t, 0);
        if (abs_runs) call(seed, t, 1);
        fflush(stdout);
    }
    return 0;
}
