/* The mutation oracle's harness: runs every function of a table (references and mutants of one
 * variant) on every test of a test file, each function in its own forked process, and prints
 * one line per function with a hash of its outputs and a set of ABI flags per test.
 *
 * It shares nothing with the correctness gate's harness: its own file format, its own entry
 * state (oracle_entry.S), its own checks and its own digest of the outputs.
 *
 *   oracle tests.bin hash MIN_MS FACTOR [LOOPS KMAX EDGE]
 *                                            every function; line "<i> <status> <ms> <h:f>..."
 *   oracle tests.bin dump I                  raw outputs of function I on every test (binary)
 *
 * Function 0's run sets the time budget of the others: max(MIN_MS, FACTOR x its wall time).
 * Function 3 is the split reference (oracle.split_reference): the C whose LOOPS loops each
 * contract their multiply-adds before or after a split point k, read from oracle_split[].
 */
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct oracle_regs {
    uint64_t x[31];
    uint64_t pad0;
    uint8_t v[32][16];
    uint8_t p[16][2];
    uint8_t ffr[2];
    uint8_t pad1[6];
    uint64_t nzcv, stack_top, target, via17;
    uint64_t out_x[31];
    uint64_t out_sp;
    uint8_t out_v[32][16];
};
_Static_assert(offsetof(struct oracle_regs, v) == 256, "OFF_V");
_Static_assert(offsetof(struct oracle_regs, p) == 768, "OFF_P");
_Static_assert(offsetof(struct oracle_regs, ffr) == 800, "OFF_FFR");
_Static_assert(offsetof(struct oracle_regs, nzcv) == 808, "OFF_NZCV");
_Static_assert(offsetof(struct oracle_regs, out_x) == 840, "OFF_OUT_X");
_Static_assert(offsetof(struct oracle_regs, out_sp) == 1088, "OFF_OUT_SP");
_Static_assert(offsetof(struct oracle_regs, out_v) == 1096, "OFF_OUT_V");

extern void oracle_call(struct oracle_regs *r);
extern void *const oracle_fns[];
extern const uint32_t oracle_nfns;

enum { K_INT = 0, K_FLOAT = 1, K_PTR = 2 };
enum { R_IN = 0, R_OUT = 1, R_INOUT = 2 };
enum { F_GUARD = 1, F_INPUT = 2, F_CALLEE_X = 4, F_CALLEE_D = 8, F_SP = 16, F_FRAME = 32,
       F_BY_SPLIT = 0x40000000u, F_NOT_RUN = 0x80000000u };
#define GUARD 64
#define STACK_BYTES 16384
#define FRAME_BYTES 256
#define MAX_ARGS 8

struct arg {
    uint32_t kind, esize, length, role, fkind; /* fkind: 0 integer, else the float's size */
};

static struct arg args[MAX_ARGS];
static uint32_t ntests, nargs, ret_kind, ret_size;
static const uint8_t **test_data; /* per test: seed, then each argument's bytes */
static uint8_t *arena[MAX_ARGS];
/* Tests whose seed has bit 63 set (inputs.FENCED) place every buffer so that it ends where an
 * inaccessible page begins: a read or write of one element past the end faults. */
#define FENCED (1ull << 63)
static uint8_t *fence_end[MAX_ARGS];
static uint8_t *stack_base;

static void die(const char *why) {
    fprintf(stderr, "oracle: %s\n", why);
    exit(2);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_random(uint8_t *dst, size_t n, uint64_t *s) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = splitmix(s);
        memcpy(dst + i, &r, 8);
    }
    uint64_t r = splitmix(s);
    for (; i < n; i++, r >>= 8) dst[i] = (uint8_t)r;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static size_t arg_bytes(const struct arg *a) {
    return a->kind == K_PTR ? (size_t)a->length * a->esize : 8;
}

static void load(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("cannot open the test file");
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *buf = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (buf == MAP_FAILED) die("cannot map the test file");
    close(fd);
    if (size < 24 || memcmp(buf, "ARMGYMO1", 8) != 0) die("bad magic");
    ntests = rd32(buf + 8), nargs = rd32(buf + 12), ret_kind = rd32(buf + 16);
    ret_size = rd32(buf + 20);
    if (nargs > MAX_ARGS || ret_size > 8) die("bad header");
    const uint8_t *p = buf + 24;
    for (uint32_t k = 0; k < nargs; k++, p += 20) {
        args[k] = (struct arg){rd32(p), rd32(p + 4), rd32(p + 8), rd32(p + 12), rd32(p + 16)};
        if (args[k].kind == K_PTR) {
            size_t bytes = arg_bytes(&args[k]) + 2 * GUARD + 64;
            if (posix_memalign((void **)&arena[k], 64, bytes)) die("out of memory");
            long page = sysconf(_SC_PAGESIZE);
            size_t span = (arg_bytes(&args[k]) + GUARD + 2 * (size_t)page - 1) / page * page;
            uint8_t *m = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED || mprotect(m + span, (size_t)page, PROT_NONE))
                die("cannot map a fenced buffer");
            fence_end[k] = m + span;
        }
    }
    test_data = malloc(sizeof(*test_data) * (ntests ? ntests : 1));
    for (uint32_t t = 0; t < ntests; t++) {
        test_data[t] = p;
        p += 8;
        for (uint32_t k = 0; k < nargs; k++) p += arg_bytes(&args[k]);
        if (p > buf + size) die("truncated test file");
    }
    if (p != buf + size) die("trailing bytes in the test file");
    if (posix_memalign((void **)&stack_base, 64, STACK_BYTES + FRAME_BYTES)) die("out of memory");
}

/* Any NaN becomes one canonical NaN: the oracle, like IEEE 754, does not order payloads. */
static void canonical(uint8_t *dst, const uint8_t *src, uint32_t size, uint32_t fkind) {
    memcpy(dst, src, size);
    if (fkind == 2) {
        uint16_t v;
        memcpy(&v, src, 2);
        if ((v & 0x7c00) == 0x7c00 && (v & 0x03ff)) v = 0x7e00;
        memcpy(dst, &v, 2);
    } else if (fkind == 4) {
        uint32_t v;
        memcpy(&v, src, 4);
        if ((v & 0x7f800000u) == 0x7f800000u && (v & 0x007fffffu)) v = 0x7fc00000u;
        memcpy(dst, &v, 4);
    } else if (fkind == 8) {
        uint64_t v;
        memcpy(&v, src, 8);
        if ((v & 0x7ff0000000000000ull) == 0x7ff0000000000000ull && (v & 0x000fffffffffffffull))
            v = 0x7ff8000000000000ull;
        memcpy(dst, &v, 8);
    }
}

struct sink {
    uint64_t hash;
    int fd; /* dump mode: raw bytes go here */
};

static void emit(struct sink *s, const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) s->hash = (s->hash ^ bytes[i]) * 0x100000001b3ull;
    if (s->fd >= 0) {
        while (n) {
            ssize_t w = write(s->fd, bytes, n);
            if (w <= 0) _exit(3);
            bytes += w, n -= (size_t)w;
        }
    }
}

static void emit_values(struct sink *s, const uint8_t *src, size_t count, uint32_t size,
                        uint32_t fkind) {
    uint8_t tmp[8];
    for (size_t i = 0; i < count; i++) {
        canonical(tmp, src + i * size, size, fkind);
        emit(s, tmp, size);
    }
}

/* One test of function `fn`: returns the ABI flags; the outputs go to the sink. */
static uint32_t run_test(uint32_t fn, uint32_t t, struct sink *out) {
    static struct oracle_regs r;
    static uint8_t guards[MAX_ARGS][2][GUARD], frame[FRAME_BYTES];
    const uint8_t *p = test_data[t];
    uint64_t s = rd64(p);
    int fenced = (s & FENCED) != 0;
    p += 8;
    fill_random((uint8_t *)&r, offsetof(struct oracle_regs, nzcv), &s);
    r.nzcv = splitmix(&s) & 0xf0000000ull;
    r.via17 = splitmix(&s) & 1;
    fill_random(stack_base, STACK_BYTES + FRAME_BYTES, &s);
    memcpy(frame, stack_base + STACK_BYTES, FRAME_BYTES);
    r.stack_top = (uint64_t)(uintptr_t)(stack_base + STACK_BYTES);
    r.target = (uint64_t)(uintptr_t)oracle_fns[fn];
    uint8_t *data[MAX_ARGS] = {0};
    const uint8_t *given[MAX_ARGS] = {0};
    uint32_t ngrn = 0, nsrn = 0;
    for (uint32_t k = 0; k < nargs; k++) {
        const struct arg *a = &args[k];
        given[k] = p;
        if (a->kind == K_PTR) {
            size_t bytes = arg_bytes(a);
            size_t mis = (size_t)a->esize * ((t + k) % 4); /* natural alignment, not 16 bytes */
            uint8_t *lo = arena[k] + mis, *d = lo + GUARD;
            if (fenced) d = fence_end[k] - bytes, lo = d - GUARD;
            fill_random(guards[k][0], GUARD, &s);
            fill_random(guards[k][1], GUARD, &s);
            memcpy(lo, guards[k][0], GUARD);
            memcpy(d, p, bytes);
            if (!fenced) memcpy(d + bytes, guards[k][1], GUARD);
            data[k] = d;
            r.x[ngrn++] = (uint64_t)(uintptr_t)d;
        } else if (a->kind == K_INT) {
            uint64_t bits = rd64(p);
            if (a->esize < 8) { /* the upper bits of a narrow argument are unspecified */
                uint64_t mask = (1ull << (8 * a->esize)) - 1;
                bits = (bits & mask) | (splitmix(&s) & ~mask);
            }
            r.x[ngrn++] = bits;
        } else {
            memcpy(r.v[nsrn++], p, a->esize); /* the rest of the vector stays random */
        }
        p += arg_bytes(a);
    }
    struct oracle_regs before = r;
    oracle_call(&r);

    uint32_t flags = 0;
    for (int i = 19; i <= 29; i++)
        if (r.out_x[i] != before.x[i]) flags |= F_CALLEE_X;
    for (int i = 8; i <= 15; i++)
        if (memcmp(r.out_v[i], before.v[i], 8) != 0) flags |= F_CALLEE_D;
    if (r.out_sp != before.stack_top) flags |= F_SP;
    if (memcmp(stack_base + STACK_BYTES, frame, FRAME_BYTES) != 0) flags |= F_FRAME;
    for (uint32_t k = 0; k < nargs; k++) {
        if (args[k].kind != K_PTR) continue;
        size_t bytes = arg_bytes(&args[k]);
        if (memcmp(data[k] - GUARD, guards[k][0], GUARD) != 0 ||
            (!fenced && memcmp(data[k] + bytes, guards[k][1], GUARD) != 0))
            flags |= F_GUARD;
        if (args[k].role == R_IN && memcmp(data[k], given[k], bytes) != 0) flags |= F_INPUT;
    }
    uint8_t head[4];
    memcpy(head, &flags, 4);
    emit(out, head, 4);
    if (ret_kind != 0) {
        uint8_t ret[16];
        memcpy(ret, ret_kind == 1 ? (const uint8_t *)&r.out_x[0] : r.out_v[0], 16);
        emit_values(out, ret, 1, ret_size, ret_kind == 2 ? ret_size : 0);
    }
    for (uint32_t k = 0; k < nargs; k++)
        if (args[k].kind == K_PTR && args[k].role != R_IN)
            emit_values(out, data[k], args[k].length, args[k].esize, args[k].fkind);
    return flags;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void arm_timer(double ms) {
    struct itimerval it = {{0, 0}, {(time_t)(ms / 1000), (suseconds_t)((long)ms % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

/* The references' records (functions 0 .. NREFS-1, run first). A mutant stops at its first test
 * that matches none of them or breaks an ABI rule: one such test already makes it
 * non-equivalent, so the tests after it are marked F_NOT_RUN instead of run (the equivalent
 * mutants, which decide the run time, still run every test). */
#define NREFS 4
#define SPLIT_FN 3
static uint8_t *ref_recs[NREFS];

/* The split reference's switch: loop, k, whether iterations before k are the contracted ones,
 * and whether the other loops are contracted. The default contracts every loop (reference 3). */
volatile int oracle_split[4] = {-1, 0, 0, 1};
static int split_loops, split_kmax, split_edge;

/* Does one member of the split family give `hash` on test t? Tried only for a mutant's test
 * that matches no reference; the time budget stops while the family is searched (it is the
 * oracle's work, not the mutant's), and the first match ends the search. */
static int matches_a_split(uint32_t t, uint64_t hash) {
    if (split_loops == 0) return 0;
    struct itimerval left, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, &left);
    int found = 0;
    for (int loop = 0; loop < split_loops && !found; loop++)
        for (int before = 0; before < 2 && !found; before++)
            for (int rest = 0; rest < (split_loops > 1 ? 2 : 1) && !found; rest++)
                for (int k = 0; k <= split_kmax && !found; k++) {
                    if (k > split_edge && k < split_kmax - split_edge) k = split_kmax - split_edge;
                    oracle_split[0] = loop, oracle_split[1] = k, oracle_split[2] = before;
                    oracle_split[3] = rest;
                    struct sink sk = {0xcbf29ce484222325ull, -1};
                    uint32_t flags = run_test(SPLIT_FN, t, &sk);
                    found = flags == 0 && sk.hash == hash;
                }
    oracle_split[0] = -1, oracle_split[1] = 0, oracle_split[2] = 0, oracle_split[3] = 1;
    setitimer(ITIMER_REAL, &left, NULL);
    return found;
}

static int matches_a_reference(uint32_t t, uint64_t hash) {
    for (int k = 0; k < NREFS; k++)
        if (ref_recs[k] && rd64(ref_recs[k] + 12 * t) == hash) return 1;
    return 0;
}

/* Run `fn` in a child; status text into `status`, per-test hash/flags into `rec`. */
static int run_isolated(uint32_t fn, double budget_ms, uint8_t *rec, char *status, int dump_fd) {
    int pipefd[2];
    if (pipe(pipefd)) die("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(pipefd[0]);
        arm_timer(budget_ms);
        size_t rec_bytes = (size_t)ntests * 12;
        uint8_t *mine = malloc(rec_bytes ? rec_bytes : 1);
        uint32_t t = 0;
        for (; t < ntests; t++) {
            struct sink sk = {0xcbf29ce484222325ull, dump_fd};
            uint32_t flags = run_test(fn, t, &sk);
            int same = fn < NREFS || dump_fd >= 0 || (!flags && matches_a_reference(t, sk.hash));
            if (!same && !flags && matches_a_split(t, sk.hash)) same = 1, flags = F_BY_SPLIT;
            memcpy(mine + 12 * t, &sk.hash, 8);
            memcpy(mine + 12 * t + 8, &flags, 4);
            if (!same) {
                t++;
                break;
            }
        }
        for (; t < ntests; t++) { /* after the first difference: not run */
            uint32_t flags = F_NOT_RUN;
            memset(mine + 12 * t, 0, 8);
            memcpy(mine + 12 * t + 8, &flags, 4);
        }
        for (size_t off = 0; off < rec_bytes;) {
            ssize_t w = write(pipefd[1], mine + off, rec_bytes - off);
            if (w <= 0) _exit(3);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(pipefd[1]);
    size_t want = (size_t)ntests * 12, got = 0;
    while (got < want) {
        ssize_t n = read(pipefd[0], rec + got, want - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(pipefd[0]);
    int ws;
    while (waitpid(pid, &ws, 0) < 0) {}
    if (WIFSIGNALED(ws))
        sprintf(status, WTERMSIG(ws) == SIGALRM ? "timeout" : "signal%d", WTERMSIG(ws));
    else if (WEXITSTATUS(ws) != 0)
        sprintf(status, "exit%d", WEXITSTATUS(ws));
    else
        strcpy(status, got == want ? "ok" : "short");
    return got == want && !strcmp(status, "ok");
}

int main(int argc, char **argv) {
    if (argc < 4) die("usage: oracle tests.bin hash MIN_MS FACTOR | dump I");
    load(argv[1]);
    uint8_t *rec = malloc((size_t)ntests * 12 + 1);
    char status[32];
    if (!strcmp(argv[2], "dump")) {
        uint32_t fn = (uint32_t)atoi(argv[3]);
        if (fn >= oracle_nfns) die("no such function");
        run_isolated(fn, 60000, rec, status, 1);
        fprintf(stderr, "%s\n", status);
        return 0;
    }
    if (argc < 5) die("usage: oracle tests.bin hash MIN_MS FACTOR");
    double budget = 60000, min_ms = atof(argv[3]), factor = atof(argv[4]);
    if (argc >= 8) split_loops = atoi(argv[5]), split_kmax = atoi(argv[6]), split_edge = atoi(argv[7]);
    for (uint32_t fn = 0; fn < oracle_nfns; fn++) {
        double start = now_ms();
        run_isolated(fn, budget, rec, status, -1);
        double ms = now_ms() - start;
        if (fn == 0) budget = ms * factor > min_ms ? ms * factor : min_ms;
        if (fn < NREFS && !strcmp(status, "ok")) {
            ref_recs[fn] = malloc((size_t)ntests * 12 + 1);
            if (!ref_recs[fn]) die("malloc");
            memcpy(ref_recs[fn], rec, (size_t)ntests * 12);
        }
        printf("%u %s %.1f", fn, status, ms);
        if (!strcmp(status, "ok"))
            for (uint32_t t = 0; t < ntests; t++)
                printf(" %016llx:%x", (unsigned long long)rd64(rec + 12 * t), rd32(rec + 12 * t + 8));
        printf("\n");
    }
    return 0;
}
