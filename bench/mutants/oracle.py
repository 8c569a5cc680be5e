"""The equivalence oracle: is a mutant the same function as the C, on everything it tries?

It is independent of the correctness gate: its own harness (oracle_harness.c, oracle_entry.S),
its own tests (inputs.py), its own comparison. One emulator run per variant covers the
references and every mutant of that variant, each in a forked process on every test.

The float rule. Compiler baselines never reassociate (there is no -ffast-math), so a legal
evaluation of these kernels differs from another only by fused multiply-add contraction (C's
FP_CONTRACT) and, in NaN results, by the payload. A mutant is *equivalent* when, on every test,
it returns and leaves the callee-saved registers, sp, the caller's frame, the guard zones and
the const inputs as they were, and its outputs (return value and every written buffer) are bit
for bit those of one legal evaluation run on the same test: the clang -O3 baseline, the gcc -O3
baseline, the C itself at -O0 without contraction or with every multiply-add of its loops
contracted, or, when none of those match, one member of the split family: the C at -O0 in
which one loop's multiply-adds are contracted before iteration k and not from k on, or the
reverse, for every k within SPLIT_EDGE iterations of either end of the loop, every other loop
all contracted or all not (a vector loop that stays unfused followed by a scalar `fmadd` tail,
as clang compiles a float reduction, is such an evaluation). NaN matches NaN (any payload and
sign); everything else, the sign of zero included, must match exactly. A one-ulp change
anywhere else therefore makes a mutant non-equivalent, even where the gate's documented bound
would admit it: such survivors are reported with their deviation, so that the bound itself can
be judged.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from toolchain import baselines, tools
from toolchain.errors import InfraError
from toolchain.kernels.model import Variant
from toolchain.settings import get_settings

from . import inputs

HERE = Path(__file__).resolve().parent
# Every libm function any variant's C calls: the prelinked runtime keeps them all.
MATH = ("expf", "exp", "tanhf", "tanh", "sqrtf", "sqrt", "roundf", "round")
FLAGS = {1: "guard zone written", 2: "const input changed", 4: "x19-x29 not restored",
         8: "d8-d15 not restored", 16: "sp not restored", 32: "caller's frame written"}
REFERENCES = ("clang", "gcc", "c-O0", "c-contracted")
#: The function index of the split reference (the C with a contraction switch per loop).
SPLIT = 3
#: Split points tried at each end of a loop: the first and the last EDGE iterations.
SPLIT_EDGE = 64
#: Per-test flag of a test whose outputs matched a partly contracted evaluation (not an ABI flag).
BY_SPLIT = 0x40000000
#: Per-test flag of the tests a mutant did not run: the harness stops a mutant at its first test
#: that matches no reference (or breaks an ABI rule); that test alone decides its class.
NOT_RUN = 0x80000000
MIN_BUDGET_MS = 1500.0  # a mutant's whole run may take max(this, BUDGET_FACTOR x clang's)
BUDGET_FACTOR = 40.0
_WORD = re.compile(r"\bkernel\b")


@dataclass
class Outcome:
    """What the oracle saw of one function over all its tests."""

    status: str  # ok, timeout, signal<N>, exit<N>, short
    ms: float
    hashes: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Judgement:
    equivalent: bool
    reason: str  # "" when equivalent; else crash/timeout/ABI flags/outputs differ on k tests
    tests: int
    differing: int  # tests run whose outputs match no reference (the run stops at the first)
    by_split: int = 0  # tests matched only by a member of the split family


# Appended to every function: falling off the end of a kernel (a deleted `ret`) traps at once
# instead of running into the next function of the table, which may compute the same thing.
TRAP = "\n\t.text\n\tudf\t#0xdead\n"


def rename(text: str, name: str) -> str:
    return _WORD.sub(name, text) + TRAP


def as_argv(source: str, obj: str) -> list[str]:
    return [tools.tool("as").path, f"-march={tools.GAS_MARCH}", "--noexecstack", "-o", obj,
            source]


def assemble(text: str, obj: Path) -> str | None:
    """Assemble `text` to `obj`; the assembler's first error line when it refuses."""
    src = obj.with_suffix(".s")
    src.write_text(text)
    proc = subprocess.run(as_argv(str(src), str(obj)), capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["as failed"])[-1]
    return None


def code_bytes(obj: Path) -> bytes:
    """Every section of an ELF object except the symbol-name strings: two objects of the same
    code under different function names compare equal."""
    data = obj.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
               for i in range(shnum)]
    names_off = headers[shstrndx][4]
    out = []
    for name, kind, _, _, off, size, *_ in headers:
        label = data[names_off + name: data.index(b"\0", names_off + name)]
        if label in (b".strtab", b".shstrtab") or kind == 8:  # SHT_NOBITS has no bytes
            out.append(label)
            continue
        out += [label, data[off: off + size]]
    return b"\0".join(out)


@cache
def runtime(cache_dir: Path) -> Path:
    """The harness, the call gate and the C library, prelinked once per harness version."""
    gcc = tools.tool("gcc").path
    sources = [HERE / "oracle_harness.c", HERE / "oracle_entry.S"]
    key = tools.fingerprint(*(p.read_bytes() for p in sources), gcc)[:16]
    out = cache_dir / "mutants" / f"runtime-{key}.o"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="armgym-oracle-") as tmp:
        objs = []
        for src in sources:
            obj = Path(tmp, src.stem + ".o")
            flags = ["-O2", "-Wall", "-Wextra", "-Werror"] if src.suffix == ".c" else []
            _run([gcc, *tools.GCC_FLAGS, *flags, "-c", "-o", str(obj), str(src)])
            objs.append(str(obj))
        tmp_out = Path(tmp, "runtime.o")
        _run(tools.prelink_argv(objs, str(tmp_out), list(MATH)))
        shutil.move(tmp_out, out)
    return out


def _run(argv: list[str], timeout: float = 120) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise InfraError(f"{Path(argv[0]).name} failed: {proc.stderr[-800:]}")


def c_reference(variant: Variant, obj: Path, name: str) -> None:
    """The variant's C at -O0 without contraction: the literal reading of the source."""
    src = obj.with_suffix(".c")
    src.write_text(variant.c_source)
    _run([tools.tool("gcc").path, *tools.GCC_FLAGS, "-O0", "-ffp-contract=off", "-fwrapv",
          "-c", "-o", str(obj), str(src)])
    _run([_objcopy(), "--redefine-sym", f"kernel={name}", str(obj)])


_FOR = re.compile(r"for \(int (\w+) = [^;]*;[^;]*;[^)]*\)\s*")
_SWITCH = ("extern volatile int oracle_split[4]; /* loop, k, contracted before k, other loops */\n"
           "static int oracle_fused(int loop, int i)\n"
           "{ return loop == oracle_split[0] ? (i < oracle_split[1]) == oracle_split[2]\n"
           "                                 : oracle_split[3]; }\n")


def _statement_end(c: str, i: int) -> int:
    """The index just past the loop body starting at `i`: a braced block or one statement."""
    if c[i] == "{":
        depth = 0
        for j in range(i, len(c)):
            depth += {"{": 1, "}": -1}.get(c[j], 0)
            if depth == 0:
                return j + 1
    depth = 0
    for j in range(i, len(c)):
        depth += {"(": 1, ")": -1}.get(c[j], 0)
        if c[j] == ";" and depth == 0:
            return j + 1
    raise ValueError("unterminated loop body")


def split_source(c: str) -> tuple[str, int]:
    """The C with the body of each innermost loop that has a multiply-add in two copies, the
    first compiled with FP_CONTRACT ON and the second OFF, chosen per iteration by
    `oracle_fused(loop, index)` from the globals the harness sets; and how many such loops.
    Code outside those loops is not contracted (no template has a multiply-add there)."""
    loops = []
    for m in _FOR.finditer(c):
        end = _statement_end(c, m.end())
        body = c[m.end():end]
        if "for (" not in body and "*" in body and re.search(r"[-+]", body):
            loops.append((m.end(), end, m.group(1)))
    out = c
    for number, (start, end, var) in reversed(list(enumerate(loops))):
        body = c[start:end]
        out = (out[:start] + f"{{ if (oracle_fused({number}, {var})) {{ _Pragma(\"STDC "
               f"FP_CONTRACT ON\") {body} }} else {{ _Pragma(\"STDC FP_CONTRACT OFF\") {body} }}"
               " }" + out[end:])
    head = "#pragma STDC FP_CONTRACT OFF\n" + _SWITCH
    proto = out.index("\n", out.index("#define")) if "#define" in out else 0
    return out[:proto] + "\n" + head + out[proto:], len(loops)


def split_reference(variant: Variant, obj: Path, name: str) -> int:
    """The split reference of the module docstring (clang, which honours FP_CONTRACT inside a
    block, at -O0: the literal reading, each multiply-add fused or not as its copy says);
    returns its number of switchable loops (0: it is the uncontracted C)."""
    src, loops = split_source(variant.c_source)
    path = obj.with_name(obj.stem + "-split.c")
    path.write_text(src)
    asm = obj.with_name(obj.stem + "-split.s")
    _run([tools.tool("clang").path, "clang", *tools.CLANG_FLAGS, "-isystem",
          baselines.SYSROOT_INCLUDE, "-O0", "-ffp-contract=on", *tools.COMMON_CFLAGS,
          "-S", "-o", str(asm), str(path)])
    error = assemble(rename(asm.read_text(), name), obj)
    if error:
        raise InfraError(f"split reference of {variant.id} does not assemble: {error}")
    return loops


@cache
def _objcopy() -> str:
    path = shutil.which(f"{tools.TRIPLE}-objcopy")
    if path is None:
        raise InfraError(f"{tools.TRIPLE}-objcopy is not installed")
    return path


def table(names: list[str], path: Path) -> None:
    """The function table the harness walks: oracle_fns[] and oracle_nfns."""
    lines = ["\t.section .rodata", "\t.p2align 3", "\t.globl oracle_fns", "oracle_fns:"]
    lines += [f"\t.xword {n}" for n in names]
    lines += ["\t.globl oracle_nfns", "oracle_nfns:", f"\t.word {len(names)}",
              '\t.section .note.GNU-stack,"",%progbits', ""]
    path.with_suffix(".s").write_text("\n".join(lines))
    error = assemble(path.with_suffix(".s").read_text(), path)
    if error:
        raise InfraError(f"function table: {error}")


def fn_name(i: int) -> str:
    return f"oracle_fn_{i:05d}"


class Group:
    """The references and mutants of one variant, built into one oracle executable."""

    def __init__(self, variant: Variant, seed: int, workdir: Path, cache_dir: Path) -> None:
        self.variant = variant
        self.dir = workdir
        self.cache_dir = cache_dir
        self.cases = inputs.tests(variant, seed)
        (workdir / "tests.bin").write_bytes(inputs.encode(variant, self.cases))
        self.objects: list[Path] = []
        self.original: dict[str, bytes] = {}  # compiler -> code bytes of its baseline
        for i, compiler in enumerate(REFERENCES[:2]):
            text = baselines.get(variant, compiler, settings=get_settings()).assembly
            obj = workdir / f"{fn_name(i)}.o"
            error = assemble(rename(text, fn_name(i)), obj)
            if error:
                raise InfraError(f"{compiler} baseline of {variant.id} does not assemble: {error}")
            self.original[compiler] = code_bytes(obj)
            self.objects.append(obj)
        obj = workdir / f"{fn_name(2)}.o"
        c_reference(variant, obj, fn_name(2))
        self.objects.append(obj)
        obj = workdir / f"{fn_name(SPLIT)}.o"
        self.split_loops = split_reference(variant, obj, fn_name(SPLIT)) if variant.dtype.is_float \
            else 0
        if not variant.dtype.is_float:  # no contraction: the C once more, as a placeholder
            c_reference(variant, obj, fn_name(SPLIT))
        self.objects.append(obj)

    def try_mutant(self, text: str) -> tuple[bool, str]:
        """Add a mutant if it assembles and differs from its original; (added, why not)."""
        index = len(self.objects)
        obj = self.dir / f"{fn_name(index)}.o"
        error = assemble(rename(text, fn_name(index)), obj)
        if error:
            return False, "does not assemble"
        if code_bytes(obj) in self.original.values():
            obj.unlink()
            return False, "same object as its baseline"
        self.objects.append(obj)
        return True, ""

    def link(self) -> Path:
        names = [fn_name(i) for i in range(len(self.objects))]
        table(names, self.dir / "table.o")
        exe = self.dir / "oracle"
        _run(tools.link_argv([str(runtime(self.cache_dir)), str(self.dir / "table.o"),
                              *map(str, self.objects)], str(exe), runtime=False))
        return exe

    def run(self) -> list[Outcome]:
        """Every function on every test, in one emulator process."""
        exe = self.link()
        kmax = max(int(v) for v in self.variant.params.values())
        argv = [tools.tool("qemu").path, "-cpu", tools.QEMU_CPU, str(exe), "tests.bin", "hash",
                str(MIN_BUDGET_MS), str(BUDGET_FACTOR), str(self.split_loops), str(kmax),
                str(SPLIT_EDGE)]
        # Each function's budget is enforced inside (max(MIN_BUDGET_MS, BUDGET_FACTOR x clang's
        # run), by alarm); this outer limit only catches a hung harness, so it must not be what
        # a loaded machine hits first (the budget of a slow variant's mutant is tens of seconds).
        timeout = 600 + 60 * len(self.objects)
        proc = subprocess.run(argv, cwd=self.dir, capture_output=True, timeout=timeout,
                              check=False, **_unprivileged(self.dir))
        if proc.returncode != 0:
            raise InfraError(f"oracle run of {self.variant.id} failed: "
                             f"{proc.stderr.decode(errors='replace')[-500:]}")
        outcomes = [_parse(line) for line in proc.stdout.decode().splitlines()]
        if len(outcomes) != len(self.objects):
            raise InfraError(f"oracle run of {self.variant.id}: {len(outcomes)} results for "
                             f"{len(self.objects)} functions")
        for name, ref in zip(REFERENCES, outcomes, strict=False):
            if ref.status != "ok" or any(ref.flags):
                raise InfraError(f"reference {name} of {self.variant.id} fails its own oracle: "
                                 f"{ref.status} {sorted(set(ref.flags))}")
        return outcomes


def dump(variant: Variant, workdir: Path, index: int) -> list[tuple[int, bytes]]:
    """(flags, output bytes) per test of function `index` of a linked group in `workdir`."""
    argv = [tools.tool("qemu").path, "-cpu", tools.QEMU_CPU, str(workdir / "oracle"), "tests.bin",
            "dump", str(index)]
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, timeout=300, check=False,
                          **_unprivileged(workdir))
    size = 4 + _output_bytes(variant)
    raw = proc.stdout
    return [(struct.unpack_from("<I", raw, t * size)[0], raw[t * size + 4:(t + 1) * size])
            for t in range(len(raw) // size)]


def _output_bytes(variant: Variant) -> int:
    sig = variant.signature
    ret = sig.ret.size if sig.ret else 0
    return ret + sum(a.length * a.dtype.size for a in sig.args if a.pointer and a.role != "in")


def workspace(prefix: str, parent: str | Path | None = None) -> Path:
    """A fresh directory the unprivileged emulator can enter (mkdtemp makes them 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o755)
    return path


def _unprivileged(workdir: Path) -> dict[str, object]:
    """The emulator runs as nobody when we are root: mutants are compiler code with one edit
    (no system-call instruction can appear), but a wild branch is not worth any privilege."""
    if os.geteuid() != 0:
        return {}
    os.chmod(workdir, 0o755)
    for path in workdir.iterdir():
        os.chmod(path, 0o644 if path.name != "oracle" else 0o755)
    return {"user": 65534, "group": 65534, "extra_groups": []}


def _parse(line: str) -> Outcome:
    parts = line.split()
    out = Outcome(parts[1], float(parts[2]))
    for item in parts[3:]:
        h, f = item.split(":")
        out.hashes.append(int(h, 16))
        out.flags.append(int(f, 16))
    return out


def judge(refs: list[Outcome], mutant: Outcome) -> Judgement:
    """The float rule of the module docstring, test by test."""
    tests = len(refs[0].hashes)
    if mutant.status != "ok":
        reason = {"timeout": "runs past its time budget"}.get(mutant.status, mutant.status)
        if mutant.status.startswith("signal"):
            reason = f"dies by signal {mutant.status[6:]}"
        return Judgement(False, reason, tests, tests)
    flags = 0
    differing = 0
    split = 0
    first = -1
    for t in range(tests):
        if mutant.flags[t] & NOT_RUN:  # the harness stopped at the first difference
            break
        if mutant.flags[t] & BY_SPLIT:  # a partly contracted evaluation matched it
            split += 1
            continue
        flags |= mutant.flags[t]
        if mutant.hashes[t] not in {r.hashes[t] for r in refs}:
            differing += 1
            first = t if first < 0 else first
    if flags:
        names = ", ".join(text for bit, text in FLAGS.items() if flags & bit)
        return Judgement(False, names, tests, differing)
    if differing:
        return Judgement(False, f"outputs differ on test {first} of {tests} (the first that "
                         "differs; the run stops there)", tests, differing)
    return Judgement(True, "", tests, 0, split)


def deviation(variant: Variant, ref: list[tuple[int, bytes]],
              mutant: list[tuple[int, bytes]]) -> dict[str, object]:
    """How a non-equivalent mutant differs from the clang reference: tests, positions, ulps."""
    sig = variant.signature
    parts: list[tuple[str, np.dtype, int]] = []
    if sig.ret:
        parts.append(("return", np.dtype(inputs.NP[sig.ret]), 1))
    parts += [(a.name, np.dtype(inputs.NP[a.dtype]), a.length) for a in sig.args
              if a.pointer and a.role != "in"]
    tests, positions, worst, flags = 0, set(), None, 0
    for (_, rb), (mf, mb) in zip(ref, mutant, strict=False):
        flags |= mf
        off, differs = 0, False
        for name, dt, count in parts:
            r = np.frombuffer(rb, dt, count, off)
            m = np.frombuffer(mb, dt, count, off)
            off += dt.itemsize * count
            bad = np.flatnonzero(r.view(f"u{dt.itemsize}") != m.view(f"u{dt.itemsize}"))
            if dt.kind == "f":
                bad = bad[~(np.isnan(r[bad]) & np.isnan(m[bad]))]
                if bad.size:
                    worst = max(worst or 0.0, float(np.max(_ulps(r[bad], m[bad]))))
            if bad.size:
                differs = True
                positions.update(f"{name}[{i}]" if count > 1 else name for i in bad[:3])
                positions.update(f"{name}[{i}]" for i in bad[-2:] if count > 1)
        tests += differs
    return {"tests_differing": tests, "of": len(ref), "abi_flags": flags,
            "max_ulps": worst, "positions": sorted(positions)[:8]}


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place: the gap between the floats' ordered integer images
    (computed exactly for two values of one sign)."""
    ints = np.dtype(f"i{a.dtype.itemsize}")
    mask = (1 << (8 * a.dtype.itemsize - 1)) - 1
    ia, ib = a.view(ints).astype(np.int64), b.view(ints).astype(np.int64)
    ma, mb = ia & mask, ib & mask
    same = (ia < 0) == (ib < 0)
    d = np.where(same, np.abs(ma - mb).astype(float), ma.astype(float) + mb.astype(float))
    return np.where(np.isnan(a) != np.isnan(b), np.inf, d)
