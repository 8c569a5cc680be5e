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
    uint64_t fn;               /* 0 */
    uint64_t pad;              /* 8 */
    uint64_t v[8][2];          /* 16: q0..q7 */
    uint64_t x[8];             /* 144: x0..x7 */
    uint64_t canary_x[11];     /* 208: x19..x29 */
    uint64_t canary_d[8];      /* 296: d8..d15 */
    uint64_t out_x0;           /* 360 */
    uint64_t out_v0[2];        /* 368 */
    uint64_t after_x[11];      /* 384 */
    uint64_t after_d[8];       /* 472 */
    uint64_t sp_before;        /* 536 */
    uint64_t sp_after;         /* 544 */
    uint64_t fpcr_before;      /* 552 */
    uint64_t fpcr_after;       /* 560 */
    uint64_t stack_guard[8];   /* 568: pattern planted above the kernel's stack pointer */
    uint64_t stack_after[8];   /* 632 */
};

struct callblock *armgym_cb;
void armgym_call(struct callblock *cb);

/* x14 = cb + 256 reaches the fields beyond the reach of ldp/stp immediates. */
__asm__(
    ".text\n.p2align 4\n.globl armgym_call\n.type armgym_call,%function\n"
    "armgym_call:\n"
    "  stp x29, x30, [sp, #-160]!\n"
    "  stp x19, x20, [sp, #16]\n  stp x21, x22, [sp, #32]\n  stp x23, x24, [sp, #48]\n"
    "  stp x25, x26, [sp, #64]\n  stp x27, x28, [sp, #80]\n"
    "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n"
    "  stp d12, d13, [sp, #128]\n  stp d14, d15, [sp, #144]\n"
    "  adrp x9, armgym_cb\n  str x0, [x9, :lo12:armgym_cb]\n"
    "  add x14, x0, #256\n"
    "  mov x9, sp\n  str x9, [x14, #280]\n"
    "  sub sp, sp, #64\n"
    "  ldp x10, x11, [x14, #312]\n  stp x10, x11, [sp, #0]\n"
    "  ldp x10, x11, [x14, #328]\n  stp x10, x11, [sp, #16]\n"
    "  ldp x10, x11, [x14, #344]\n  stp x10, x11, [sp, #32]\n"
    "  ldp x10, x11, [x14, #360]\n  stp x10, x11, [sp, #48]\n"
    "  mrs x9, fpcr\n  str x9, [x14, #296]\n"
    "  ldp x19, x20, [x0, #208]\n  ldp x21, x22, [x0, #224]\n  ldp x23, x24, [x0, #240]\n"
    "  ldp x25, x26, [x0, #256]\n  ldp x27, x28, [x0, #272]\n  ldr x29, [x0, #288]\n"
    "  ldp d8, d9, [x0, #296]\n  ldp d10, d11, [x0, #312]\n"
    "  ldp d12, d13, [x0, #328]\n  ldp d14, d15, [x0, #344]\n"
    "  ldp q0, q1, [x0, #16]\n  ldp q2, q3, [x0, #48]\n"
    "  ldp q4, q5, [x0, #80]\n  ldp q6, q7, [x0, #112]\n"
    "  ldr x16, [x0, #0]\n"
    "  ldp x2, x3, [x0, #160]\n  ldp x4, x5, [x0, #176]\n  ldp x6, x7, [x0, #192]\n"
    "  ldp x0, x1, [x0, #144]\n"
    "  blr x16\n"
    /* The performance gate's trace ends at the first block that starts here. */
    ".globl armgym_kernel_return\n"
    "armgym_kernel_return:\n"
    "  adrp x9, armgym_cb\n  ldr x9, [x9, :lo12:armgym_cb]\n"
    "  add x14, x9, #256\n"
    "  str x0, [x9, #360]\n  str q0, [x9, #368]\n"
    "  stp x19, x20, [x9, #384]\n  stp x21, x22, [x9, #400]\n  stp x23, x24, [x9, #416]\n"
    "  stp x25, x26, [x9, #432]\n  stp x27, x28, [x9, #448]\n  str x29, [x9, #464]\n"
    "  stp d8, d9, [x14, #216]\n  stp d10, d11, [x14, #232]\n"
    "  stp d12, d13, [x14, #248]\n  stp d14, d15, [x14, #264]\n"
    "  mov x10, sp\n  add x10, x10, #64\n  str x10, [x14, #288]\n"
    "  mrs x10, fpcr\n  str x10, [x14, #304]\n"
    "  ldr x10, [x14, #280]\n  sub x11, x10, #64\n"
    "  ldp x12, x13, [x11, #0]\n  stp x12, x13, [x14, #376]\n"
    "  ldp x12, x13, [x11, #16]\n  stp x12, x13, [x14, #392]\n"
    "  ldp x12, x13, [x11, #32]\n  stp x12, x13, [x14, #408]\n"
    "  ldp x12, x13, [x11, #48]\n  stp x12, x13, [x14, #424]\n"
    "  ldr x11, [x14, #296]\n  msr fpcr, x11\n"
    "  mov sp, x10\n"
    "  ldp x19, x20, [sp, #16]\n  ldp x21, x22, [sp, #32]\n  ldp x23, x24, [sp, #48]\n"
    "  ldp x25, x26, [sp, #64]\n  ldp x27, x28, [sp, #80]\n"
    "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n"
    "  ldp d12, d13, [sp, #128]\n  ldp d14, d15, [sp, #144]\n"
    "  ldp x29, x30, [sp], #160\n"
    "  ret\n"
    ".size armgym_call, .-armgym_call\n");

_Static_assert(__builtin_offsetof(struct callblock, stack_after) == 632, "layout");
_Static_assert(__builtin_offsetof(struct callblock, out_v0) == 368, "layout");

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

#include "harness_variant.h" /* generated: NARGS, ARGS[], REDUCTION, kernel */

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

/* One element of test `test`. Tests 0-9 are fixed edge-case families, the rest are random. */
static void gen_float(enum dt t, rng_t *r, int test, int i, int reduction, void *p) {
    int emax = dt_emax[t], emin = dt_emin[t];
    int big = reduction ? emax / 2 - 8 : emax - 2; /* reductions must not overflow finitely */
    double v;
    switch (test) {
    case 0: v = 0.0; break;
    case 1: v = (next(r) & 1) ? -0.0 : 0.0; break;
    case 2: v = (next(r) & 3) ? ldexp(sym(r), emin) : sym(r); break; /* subnormals */
    case 3: v = (next(r) % 16 == 0) ? ((next(r) & 1) ? -NAN : NAN) : sym(r); break;
    case 4: v = (next(r) % 16 == 0) ? ((next(r) & 1) ? -INFINITY : INFINITY) : sym(r); break;
    case 5: {
        double top = reduction ? ldexp(1.0, big) : fmax_of(t);
        double pick[] = {top, -top, ldexp(1.0, emin), -ldexp(1.0, emin),
                         ldexp(1.0, emin - dt_mant[t]), 1.0, -1.0, 0.0};
        v = pick[next(r) % 8];
        break;
    }
    case 6: v = ((i & 1) ? -1.0 : 1.0) * (double)(1 + i % 7); break;
    case 7: v = logmag(r, big - 4, big); break;
    case 8: v = logmag(r, emin / 2 - 2, emin / 2 + 2); break;
    case 9: v = (double)((int64_t)(next(r) % 17) - 8); break;
    default:
        v = (test < 15) ? sym(r) : logmag(r, -(emax < 40 ? 6 : 20), emax < 40 ? 6 : 20);
        break;
    }
    store(t, p, v, 0);
}

static void gen_int(enum dt t, rng_t *r, int test, int i, void *p) {
    int64_t lo, hi, v;
    int_range(t, &lo, &hi);
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    switch (test) {
    case 0: v = 0; break;
    case 1: v = (i & 1) ? -1 : 1; break;
    case 2: v = (int64_t)(next(r) % 256) - 128; break;
    case 5: {
        int64_t pick[] = {lo, hi, 0, -1, 1, lo + 1, hi - 1, 2};
        v = pick[next(r) % 8];
        break;
    }
    case 6: v = ((i & 1) ? -1 : 1) * (int64_t)(1 + i % 7); break;
    case 8: case 9: v = (int64_t)(next(r) % 9) - 4; break;
    default:
        if (test >= 10 && test < 13) v = (int64_t)(next(r) % 2001) - 1000;
        else v = (int64_t)((uint64_t)lo + (span == UINT64_MAX ? next(r) : next(r) % (span + 1)));
        break;
    }
    if (t == U32 && v < 0) v = -v;
    store(t, p, 0.0, v);
}

static void fill(const struct arg *a, int ai, uint64_t seed, int test, int reduction, uint8_t *p) {
    rng_t r = {mix(seed ^ mix(((uint64_t)test << 8) | (uint64_t)ai))};
    int n = a->pointer ? a->length : 1;
    for (int i = 0; i < n; i++) {
        uint8_t *e = p + (size_t)i * (size_t)dt_size[a->dt];
        if (a->pointer && a->role == 1) { /* out-only: poison, so unwritten outputs show */
            for (int b = 0; b < dt_size[a->dt]; b++) e[b] = (uint8_t)next(&r);
        } else if (is_float(a->dt)) {
            gen_float(a->dt, &r, test, i, reduction, e);
        } else {
            gen_int(a->dt, &r, test, i, e);
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
static uint8_t scalars[NARGS][16];

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
    for (int i = 0; i < 11; i++) cb->canary_x[i] = next(&r);
    for (int i = 0; i < 8; i++) cb->canary_d[i] = next(&r);
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
        if (a->pointer) cb->x[nx++] = (uint64_t)(uintptr_t)p;
        else if (is_float(a->dt)) memcpy(cb->v[nv++], p, (size_t)dt_size[a->dt]);
        else if (a->dt == U32) { uint32_t u; memcpy(&u, p, 4); cb->x[nx++] = u; }
        else if (a->dt == I64) memcpy(&cb->x[nx++], p, 8);
        else { int64_t s = a->dt == I8 ? *(int8_t *)p : *(int32_t *)p; cb->x[nx++] = (uint64_t)s; }
    }
    cb->fn = (uint64_t)(uintptr_t)&kernel;
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
    for (int k = 0; k < NARGS; k++) {
        const struct arg *a = &ARGS[k];
        if (!a->pointer) continue;
        size_t n = (size_t)a->length * dt_size[a->dt];
        if (abs_run) { if (a->role != 0) put(arena + offsets[k], n); continue; }
        put(arena + offsets[k] - GUARD, n + 2 * GUARD);
    }
    if (abs_run) return;
    put(cb.canary_x, sizeof cb.canary_x);
    put(cb.canary_d, sizeof cb.canary_d);
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
