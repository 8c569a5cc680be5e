/* A qemu-user TCG plugin that keeps a kernel to its own code while it runs (the execution guard).
 *
 * The harness calls `kernel` once per test and the kernel returns to `armgym_kernel_return`.
 * From the entry to that return, the only code that may run is the candidate's own text and the
 * library functions its variant may call (the math functions and what they call); no system
 * call may be made; and the candidate's code may not run at all outside such a call. Anything
 * else (a call into libc or harness code by absolute address, a forged return address, a jump
 * into the middle of a library function that makes a system call, longjmp) ends the process at
 * once, before the system call is made, with the status given as `status=` and one line on
 * stderr that carries the run's `token=` (which the guest never sees, so it cannot forge it).
 *
 * Cheap for honest runs: every decision is taken when qemu translates a block. Each run of the
 * candidate's instructions inside a translated block gets one inline counter increment at its
 * first instruction, and so does each run of outside instructions through which control can
 * reach other code (see on_translate; allowed code gets none); only the kernel's entry and the
 * return label get a callback. The checks compare the counters at those two points: no counted
 * outside block between an entry and its return, no candidate instruction between a return and
 * the next entry. A system call is checked when it is made.
 *
 * The same run records what the performance gate costs (record=): the order in which the translated
 * blocks that hold the candidate's or allowed code ran during one chosen call of the kernel (the
 * timing test), from its entry up to its return, bounded by limit= blocks. Each such block gets
 * an execution callback (only those: the harness's blocks get none); at exit the block table
 * (first and last instruction address of each translation) and the sequence are written to the
 * file out=, under the run's token. That is what qemu's `-d in_asm,exec,nochain` log gave in a
 * run of its own, without the log.
 *
 * Stores are watched too, since control data of the harness is only memory: while the kernel is
 * active, every store made by the candidate's or allowed code that lands in the harness's stack
 * above the kernel's caller-side stack guard (the trampoline's saved frame record and callee-saved
 * registers, then the frames of the harness's C code, main and libc's start code, up to the
 * initial stack pointer) or in the executable's writable segments outside the candidate's own
 * data (the call block, the harness's and libc's globals: stdio's FILE structures, the atexit
 * list, the GOT) stops the guest at once: overwriting a saved return address, then returning
 * properly, would otherwise hijack the harness after the guard's window closed. The stack's
 * bounds are learned from two harness instructions whose address the plugin is given: the
 * trampoline's first store (frame=, its saved frame record, at the caller's stack pointer) and
 * the first load of `_start` (top=, argc at the initial stack pointer). The 64 bytes of stack
 * guard between the kernel's entry stack pointer and that frame record stay the host's check.
 * Each memory access of the candidate's and allowed code gets one callback (qemu 7.2 does not
 * filter by direction), which returns at once for a load or outside a kernel call.
 *
 * Arguments (all numbers hexadecimal, no prefix): token=<text>, status=<n>, entry=<addr>, return=<addr>,
 * text=<lo>-<hi>[:<lo>-<hi>...] (the candidate's sections), allow=<lo>-<hi>[:...] (may be
 * empty), frame=<addr>, top=<addr>, protect=<lo>-<hi>[:...] (the writable data the kernel may
 * not store into; may be empty); optionally record=<call> (0-based), limit=<blocks> and
 * out=<file name>, all three or none.
 */
#include <stddef.h>
#include <stdint.h>

#include "qemu-plugin.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_RANGES 4096 /* guard.py's MAX_RANGES */
#define MAX_TBS (1 << 17) /* translations recorded: guard.py's MAX_TBS */
#define MAX_SEQUENCE (1 << 23) /* guard.py's MAX_SEQUENCE: the largest limit= */

/* No C library: the plugin is built freestanding (no libc to link, so it builds in a fraction of
 * a second and depends on nothing but qemu's plugin API), with two raw system calls. */
#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static long sys4(long n, long a, long b, long c, long d) {
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return r;
}
enum { SYS_WRITE = 1, SYS_EXIT_GROUP = 231, SYS_OPENAT = 257, SYS_CLOSE = 3 };
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c) {
    register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b,
                  x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
static long sys4(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n, x0 __asm__("x0") = a, x1 __asm__("x1") = b,
                  x2 __asm__("x2") = c, x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
enum { SYS_WRITE = 64, SYS_EXIT_GROUP = 94, SYS_OPENAT = 56, SYS_CLOSE = 57 };
#else
#error "unsupported host architecture"
#endif

struct range { uint64_t lo, hi; };
enum kind { OUTSIDE, CANDIDATE, ALLOWED };

static struct range cand[MAX_RANGES], allowed[MAX_RANGES], protect[MAX_RANGES];
static int ncand, nallowed, nprotect;
static uint64_t entry_pc, return_pc, frame_pc, top_pc;
/* The harness's stack above the kernel's stack guard, as learned at run time: [stack_lo, stack_hi) */
static uint64_t stack_lo, stack_hi;
static char token[72];
static long status = 1;

/* Incremented inline by translated code; compared only at the entry, the return and syscalls. */
static uint64_t cand_count, outside_count;
static uint64_t cand_at_return, outside_at_entry;
static int active;
static uint64_t entries, returns;

/* The recorded call (record=): translations that hold code which is not outside, by id, and the
 * ids in the order they ran. */
struct tbinfo { uint64_t first, last; };
static struct tbinfo tbs[MAX_TBS];
static uint32_t sequence[MAX_SEQUENCE];
static uint64_t ntbs, nseq, seq_limit;
static int64_t record_call = -1;
static int recording;
static uint32_t flags; /* REC_* */
enum { REC_DONE = 1, REC_OVER_LIMIT = 2, REC_TOO_MANY_TBS = 4 };
static char out_path[128];

struct line { char buf[256]; size_t n; };

static void put_str(struct line *l, const char *s) {
    while (*s && l->n < sizeof l->buf - 1) l->buf[l->n++] = *s++;
}

static void put_dec(struct line *l, int64_t v) {
    char tmp[24];
    int i = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do { tmp[i++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[i++] = '-';
    while (i && l->n < sizeof l->buf - 1) l->buf[l->n++] = tmp[--i];
}

/* One line on stderr: "armgym-guard <token> <what> [<number>] [<number>]". */
static void say(const char *what, int count, int64_t a, int64_t b) {
    struct line l = {.n = 0};
    put_str(&l, "armgym-guard ");
    put_str(&l, token);
    put_str(&l, " ");
    put_str(&l, what);
    if (count > 0) { put_str(&l, " "); put_dec(&l, a); }
    if (count > 1) { put_str(&l, " "); put_dec(&l, b); }
    l.buf[l.n++] = '\n';
    sys3(SYS_WRITE, 2, (long)l.buf, (long)l.n);
}

/* Stop the guest now: nothing more of it runs, the system call at hand is never made. */
static void halt(const char *what, int count, int64_t a) {
    say(what, count, a, 0);
    for (;;) sys3(SYS_EXIT_GROUP, status, 0, 0);
}

static enum kind kind_of(uint64_t pc) {
    for (int i = 0; i < ncand; i++)
        if (cand[i].lo <= pc && pc < cand[i].hi) return CANDIDATE;
    for (int i = 0; i < nallowed; i++)
        if (allowed[i].lo <= pc && pc < allowed[i].hi) return ALLOWED;
    return OUTSIDE;
}

static void append(uint64_t id) {
    if (nseq < seq_limit) {
        sequence[nseq++] = (uint32_t)id;
    } else {
        flags |= REC_OVER_LIMIT;
        recording = 0;
    }
}

/* Every execution of a translation that holds the candidate's or allowed code. qemu calls a
 * block's callbacks before its first instruction's, so the entry block itself is appended by
 * on_entry (its udata is that block's id + 1). */
static void on_tb(unsigned int vcpu, void *udata) {
    (void)vcpu;
    if (recording) append((uint64_t)(uintptr_t)udata);
}

static void on_entry(unsigned int vcpu, void *udata) {
    (void)vcpu;
    if (active) return; /* recursion, or a loop back to the first instruction */
    if (cand_count != cand_at_return) halt("violation stray", 0, 0);
    active = 1;
    if ((int64_t)entries == record_call && !(flags & REC_TOO_MANY_TBS)) {
        recording = 1;
        if (udata) append((uint64_t)(uintptr_t)udata - 1);
    }
    entries++;
    outside_at_entry = outside_count;
}

static void on_return(unsigned int vcpu, void *udata) {
    (void)vcpu; (void)udata;
    if (!active) return;
    if (outside_count != outside_at_entry) halt("violation outside", 0, 0);
    if (recording) {
        recording = 0;
        flags |= REC_DONE;
    }
    active = 0;
    returns++;
    cand_at_return = cand_count;
}

/* The trampoline's `stp x29, x30, [sp, #-N]!`: its frame record starts at the (16-byte aligned)
 * stack pointer it leaves, whichever of the pair's two stores this is. */
static void on_frame(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata) {
    (void)vcpu; (void)info; (void)udata;
    stack_lo = vaddr & ~(uint64_t)15;
}

/* `_start`'s `ldr x1, [sp]`: argc, at the initial stack pointer, above every frame. */
static void on_top(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata) {
    (void)vcpu; (void)info; (void)udata;
    if (!stack_hi) stack_hi = vaddr;
}

/* A store by the candidate's or allowed code: never into the harness's stack or its data. */
static void on_store(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata) {
    (void)vcpu; (void)udata;
    if (!active || !qemu_plugin_mem_is_store(info)) return; /* qemu 7.2 reports loads too */
    uint64_t end = vaddr + ((uint64_t)1 << qemu_plugin_mem_size_shift(info));
    /* the offset from the kernel's stack pointer at entry (64 bytes of stack guard below) */
    if (vaddr < stack_hi && end > stack_lo) halt("violation store-stack", 1, (int64_t)(vaddr - stack_lo + 64));
    for (int i = 0; i < nprotect; i++)
        if (vaddr < protect[i].hi && end > protect[i].lo) halt("violation store-data", 1, (int64_t)vaddr);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8) {
    (void)id; (void)vcpu; (void)a1; (void)a2; (void)a3; (void)a4; (void)a5; (void)a6;
    (void)a7; (void)a8;
    if (active) halt("violation syscall", 1, num);
    if (cand_count != cand_at_return) halt("violation stray-syscall", 1, num);
}

static int put_all(long fd, const void *p, uint64_t n) {
    const char *c = p;
    while (n) {
        long w = sys3(SYS_WRITE, fd, (long)c, (long)(n > (1 << 20) ? (1 << 20) : n));
        if (w <= 0) return -1;
        c += w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* The record file: "armgym-blocks\0\0\0", the token (64 bytes, zero-padded), flags, the number
 * of translations and of sequence entries (u32, u32, u64), the translations (first and last
 * instruction address, u64 each), the sequence (u32 ids); little-endian, as the host is. */
static void write_record(void) {
    long fd = sys4(SYS_OPENAT, -100 /* AT_FDCWD */, (long)out_path,
                   01 | 0100 | 01000 /* O_WRONLY | O_CREAT | O_TRUNC */, 0600);
    if (fd < 0) {
        say("record-failed", 1, -fd, 0);
        return;
    }
    static char head[96]; /* zeroed: the plugin has no memset to call */
    static const char magic[] = "armgym-blocks";
    for (size_t i = 0; magic[i]; i++) head[i] = magic[i];
    for (size_t i = 0; token[i]; i++) head[16 + i] = token[i];
    uint32_t counts[2] = {flags, (uint32_t)ntbs};
    for (size_t i = 0; i < 8; i++) head[80 + i] = ((const char *)counts)[i];
    for (size_t i = 0; i < 8; i++) head[88 + i] = ((const char *)&nseq)[i];
    if (put_all(fd, head, sizeof head) || put_all(fd, tbs, ntbs * sizeof tbs[0]) ||
        put_all(fd, sequence, nseq * sizeof sequence[0]))
        say("record-failed", 0, 0, 0);
    sys3(SYS_CLOSE, fd, 0, 0);
}

static void on_exit_cb(qemu_plugin_id_t id, void *udata) {
    (void)id; (void)udata;
    if (out_path[0]) write_record();
    say("end", 2, (int64_t)entries, (int64_t)returns);
}

/* Whether control can leave the instruction at `pc` (the last of an outside block) for code
 * that is not outside: the candidate's, an allowed function, or the return label. Direct
 * branches are decoded; indirect ones (br, blr, ret and their authenticated forms) can go
 * anywhere; anything else falls through to pc + 4. */
static int interesting(uint64_t pc) { return pc == return_pc || kind_of(pc) != OUTSIDE; }

static int may_leave_outside(uint64_t pc, uint32_t w) {
    if (w >> 25 == 0x6B) return 1;                                   /* branch to register */
    if ((w & 0x7C000000) == 0x14000000)                              /* b, bl */
        return interesting(pc + (uint64_t)((int64_t)((uint64_t)(w & 0x3FFFFFF) << 38) >> 36));
    if ((w & 0xFF000010) == 0x54000000 || (w & 0x7E000000) == 0x34000000) /* b.cond, cbz */
        return interesting(pc + 4) ||
               interesting(pc + (uint64_t)((int64_t)((uint64_t)((w >> 5) & 0x7FFFF) << 45) >> 43));
    if ((w & 0x7E000000) == 0x36000000)                              /* tbz, tbnz */
        return interesting(pc + 4) ||
               interesting(pc + (uint64_t)((int64_t)((uint64_t)((w >> 5) & 0x3FFF) << 50) >> 48));
    return interesting(pc + 4);
}

/* Counting every block of foreign code would put an increment into the harness's hottest loops.
 * It is enough to count the outside blocks through which control can reach code that is not
 * outside: while the kernel is active, any excursion into foreign code that comes back (to the
 * kernel, an allowed function or the return label) ends with such a block; one that does not
 * come back ends in a system call (checked when made), a crash or the time limit. */
static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    enum kind prev = OUTSIDE;
    struct qemu_plugin_insn *outside_start = 0;
    int own = 0; /* any instruction that is not outside: a block the record= call may run */
    uint64_t tid = ntbs; /* this block's id, should it be recorded */
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        enum kind k = kind_of(pc);
        own |= k != OUTSIDE;
        if (k != OUTSIDE)
            qemu_plugin_register_vcpu_mem_cb(insn, on_store, QEMU_PLUGIN_CB_NO_REGS,
                                             QEMU_PLUGIN_MEM_W, 0);
        else if (pc == frame_pc)
            qemu_plugin_register_vcpu_mem_cb(insn, on_frame, QEMU_PLUGIN_CB_NO_REGS,
                                             QEMU_PLUGIN_MEM_W, 0);
        else if (pc == top_pc) /* qemu 7.2 calls no callback filtered as QEMU_PLUGIN_MEM_R */
            qemu_plugin_register_vcpu_mem_cb(insn, on_top, QEMU_PLUGIN_CB_NO_REGS,
                                             QEMU_PLUGIN_MEM_RW, 0);
        if (outside_start && k != OUTSIDE) { /* an outside run that leads on into other code */
            qemu_plugin_register_vcpu_insn_exec_inline(outside_start, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &outside_count, 1);
            outside_start = 0;
        }
        if (pc == entry_pc && k == CANDIDATE) {
            void *first = record_call >= 0 && i == 0 && tid < MAX_TBS ? (void *)(uintptr_t)(tid + 1) : 0;
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_entry, QEMU_PLUGIN_CB_NO_REGS, first);
        } else if (pc == return_pc && i == 0) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_return, QEMU_PLUGIN_CB_NO_REGS, 0);
            k = ALLOWED; /* the rest of this block is the harness after a proper return */
        } else if (i == 0 || k != prev) {
            if (k == CANDIDATE)
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                           &cand_count, 1);
            else if (k == OUTSIDE)
                outside_start = insn;
        }
        if (outside_start && i == n - 1) {
            uint32_t w = 0;
            const uint8_t *bytes = qemu_plugin_insn_data(insn);
            if (qemu_plugin_insn_size(insn) == 4)
                w = (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
                    (uint32_t)bytes[3] << 24;
            if (qemu_plugin_insn_size(insn) != 4 || may_leave_outside(pc, w))
                qemu_plugin_register_vcpu_insn_exec_inline(
                    outside_start, QEMU_PLUGIN_INLINE_ADD_U64, &outside_count, 1);
        }
        prev = k;
    }
    if (record_call < 0 || !own || n == 0) return;
    if (tid >= MAX_TBS) {
        flags |= REC_TOO_MANY_TBS; /* the record would miss blocks: it is refused */
        return;
    }
    tbs[tid].first = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, 0));
    tbs[tid].last = qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, n - 1));
    ntbs = tid + 1;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)tid);
}

/* Hexadecimal digits at *p (no prefix); -1 when there are none or too many. */
static int parse_hex(const char **p, uint64_t *out) {
    uint64_t v = 0;
    int digits = 0;
    for (;; (*p)++, digits++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) break;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return digits > 0 && digits <= 16 ? 0 : -1;
}

static int parse_ranges(const char *p, struct range *out, int *count) {
    *count = 0;
    while (*p) {
        uint64_t lo, hi;
        if (parse_hex(&p, &lo) || *p++ != '-' || parse_hex(&p, &hi)) return -1;
        if (hi <= lo || *count >= MAX_RANGES || (*p && *p != ':')) return -1;
        out[(*count)++] = (struct range){lo, hi};
        if (*p) p++;
    }
    return 0;
}

/* `arg` is "<key>=<value>": the value, or 0 for another key. */
static const char *value_of(const char *arg, const char *key) {
    while (*key && *arg == *key) { arg++; key++; }
    return *key == 0 && *arg == '=' ? arg + 1 : 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv) {
    (void)info;
    int have = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if ((v = value_of(argv[i], "token"))) {
            size_t n = 0;
            while (v[n] && n < sizeof token - 1) { token[n] = v[n]; n++; }
            if (v[n] || n == 0) return -1;
            have |= 1;
        } else if ((v = value_of(argv[i], "status"))) {
            uint64_t s;
            if (parse_hex(&v, &s) || *v || s == 0 || s > 255) return -1;
            status = (long)s;
            have |= 2;
        } else if ((v = value_of(argv[i], "entry"))) {
            if (parse_hex(&v, &entry_pc) || *v) return -1;
            have |= 4;
        } else if ((v = value_of(argv[i], "return"))) {
            if (parse_hex(&v, &return_pc) || *v) return -1;
            have |= 8;
        } else if ((v = value_of(argv[i], "text"))) {
            if (parse_ranges(v, cand, &ncand) || ncand == 0) return -1;
            have |= 16;
        } else if ((v = value_of(argv[i], "allow"))) {
            if (parse_ranges(v, allowed, &nallowed)) return -1;
        } else if ((v = value_of(argv[i], "protect"))) {
            if (parse_ranges(v, protect, &nprotect)) return -1;
        } else if ((v = value_of(argv[i], "frame"))) {
            if (parse_hex(&v, &frame_pc) || *v) return -1;
            have |= 256;
        } else if ((v = value_of(argv[i], "top"))) {
            if (parse_hex(&v, &top_pc) || *v) return -1;
            have |= 512;
        } else if ((v = value_of(argv[i], "record"))) {
            uint64_t call;
            if (parse_hex(&v, &call) || *v || call > 0xFFFFFFFF) return -1;
            record_call = (int64_t)call;
            have |= 32;
        } else if ((v = value_of(argv[i], "limit"))) {
            if (parse_hex(&v, &seq_limit) || *v || seq_limit == 0 || seq_limit > MAX_SEQUENCE)
                return -1;
            have |= 64;
        } else if ((v = value_of(argv[i], "out"))) {
            size_t n = 0;
            for (; v[n] && n < sizeof out_path - 1; n++) {
                char c = v[n];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                    return -1; /* a plain file name in the working directory */
                out_path[n] = c;
            }
            if (v[n] || n == 0) return -1;
            have |= 128;
        } else {
            return -1;
        }
    }
    if ((have != 0x31f && have != 0x3ff) || kind_of(entry_pc) != CANDIDATE ||
        kind_of(return_pc) != OUTSIDE || kind_of(frame_pc) != OUTSIDE || kind_of(top_pc) != OUTSIDE)
        return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, 0);
    say("start", 0, 0, 0);
    return 0;
}
