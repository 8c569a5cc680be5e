"""llvm-mca's Neoverse V2 model: steady-state cycles of each executed loop cycle, batched, cached.

One llvm-mca process analyses many code regions (`# LLVM-MCA-BEGIN id` / `# LLVM-MCA-END id`). A
cycle's steady-state cost is the marginal cost of one more iteration, (C(2k) - C(k)) / k with C(n)
the simulated Total Cycles of n back-to-back iterations, so pipeline fill and drain are not
charged to every iteration. A cycle that ran n times costs C(1) + (n - 1) x that marginal cost:
its first pass pays its full latency, so straight-line code that runs once (a fully unrolled
kernel, the code around the loops) is not discounted by overlapping it with copies of itself that
never ran. k shrinks for long cycles to bound the simulation; it depends only on the cycle's
length, so the figure is a function of the cycle's text alone. Costs are cached per cycle text (in
process, LRU, and on disk under settings.cache_dir), keyed by llvm-mca's version and flags.

Dispatch width: LLVM 19's V2 model declares IssueWidth 16, which llvm-mca uses as its dispatch
width. Arm's Neoverse V2 Software Optimization Guide (section 4.1, dispatch constraints) gives 8
MOPs dispatched per cycle (16 micro-ops), and llvm-mca has no separate MOP limit, so the
published 8 is set explicitly (upstream LLVM later lowered the model's IssueWidth to 6 for the
compiler's scheduler, PR 142565, on benchmark evidence rather than a hardware figure).

Memory: llvm-mca 19 takes loads and stores as never aliasing, so a value passed through a stack
slot would cut a dependency chain for free; memory.py finds the fixed slots and each load from one
gets the last store's value through a shadow register (two dependent operations, about the
store-to-load forwarding latency), so -O0's round trips and a spilled accumulator are charged.

Writeback addressing: llvm-mca dispatches at most `-dispatch` micro-ops a cycle and never splits
an instruction's micro-ops across two cycles, while the guide's limit (section 4.1) is 8
macro-ops a cycle: a load or store with writeback is one macro-op of two or more micro-ops
(`ldp q, q, [x], #32` has 6 in LLVM's model), so llvm-mca fits only two or three of them (one
for that `ldp`) in a cycle where the core dispatches eight: `ldr q, [x], #16` was rated 2 a
cycle, the guide's 3. The cost layer prices a writeback access as the access at the base (the
pre-index offset kept in the address) plus the base update: `ldr q0, [x1], #16` as
`ldr q0, [x1]` + `add x1, x1, #16`, `ldr q0, [x1, #16]!` as `ldr q0, [x1, #16]` +
`add x1, x1, #16`, a register post-increment as `add x1, x1, x2`. Every dependency stays as it
was (the address reads the old base, the update writes the new one), and the table's rows
for every writeback form come out at the guide's figures.

Calls: llvm-mca assumes a 100-cycle latency for `bl`/`blr` ("call instructions are not correctly
modeled"), which the returning `ret` would wait on; the callee's executed instructions are in the
cycle anyway, so a call is costed as what it does: `adr x30, .` (writes the link register) plus
the branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

from ... import background, sandbox, tools
from ... import scratch as scratch_dirs
from ...errors import InfraError
from ...settings import Settings
from . import cache as figure_cache
from . import memory
from .cache import FigureCache
from .trace import Insn

DISPATCH_WIDTH = 8
# The same optional extensions the object gate decodes with, so every accepted instruction parses.
MCA_FLAGS = ("-mtriple=aarch64-linux-gnu", "-mcpu=neoverse-v2", f"-mattr={tools.OBJDUMP_MATTR}",
             f"-dispatch={DISPATCH_WIDTH}")
LISTING_ITERATIONS = 100
MCA_TIMEOUT_S = 300.0
LISTING_TIMEOUT_S = 20.0
_ERROR_LINE = re.compile(rb"^[^\s:]+:(\d+):\d+: error", re.M)


class UnpricedError(Exception):
    """An executed instruction llvm-mca cannot parse or has no scheduling data for."""


def iterations(length: int) -> int:
    """k for a cycle of `length` instructions: 100 for loop bodies, fewer for long straight code."""
    return 100 if length <= 64 else 20 if length <= 512 else 4


_WRITEBACK_OPS = frozenset({
    "ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrsw", "str", "strb", "strh", "ldp", "ldpsw",
    "stp", "ld1", "ld2", "ld3", "ld4", "ld1r", "ld2r", "ld3r", "ld4r", "st1", "st2", "st3",
    "st4"})
_IMM = r"#(-?(?:0x[0-9a-f]+|\d+))"
_POST = re.compile(rf"^(\S+) (.+), \[(x\d+|sp)\], (?:{_IMM}|(x\d+))$")
_PRE = re.compile(rf"^(\S+) (.+), \[(x\d+|sp), {_IMM}\]!$")


def writeback(text: str) -> list[str] | None:
    """A load or store with writeback as the access plus the base update (module doc)."""
    m = _POST.match(text) or _PRE.match(text)
    if m is None or m.group(1) not in _WRITEBACK_OPS:
        return None
    if m.re is _POST:
        op, regs, base, imm, reg = m.groups()
        access = f"{op} {regs}, [{base}]"
    else:
        op, regs, base, imm = m.groups()
        reg = None
        access = f"{op} {regs}, [{base}, #{int(imm, 0)}]"
    if reg is not None:
        return [access, f"add {base}, {base}, {reg}"]
    offset = int(imm, 0)
    return [access, f"{'add' if offset >= 0 else 'sub'} {base}, {base}, #{abs(offset)}"]


def mca_lines(insns: Sequence[Insn]) -> list[str]:
    """The cycle as llvm-mca reads it: calls become link-register write + branch, and a load from
    a fixed slot depends on the last store to it through a shadow register (memory.py)."""
    texts = [i.text for i in insns]
    deps = memory.slot_dependencies(texts)
    shadows = _shadows(texts, deps)
    out = []
    for insn, dep in zip(insns, deps, strict=True):
        if insn.call:
            out.append("adr x30, .")
            out.append("b ." if insn.mnemonic == "bl" else "br " + insn.text.split(" ", 1)[1])
        else:
            out.extend(writeback(insn.text) or [insn.text])
        for slot, reg, prefix in dep.pairs if dep else ():
            shadow = shadows.get(slot)
            if shadow is None or (shadow[0] == "x") != (prefix in "wx"):
                continue
            if shadow[0] == "x":
                out.append(f"add {shadow}, x{reg[1]}, #1" if dep.store
                           else f"add x{reg[1]}, x{reg[1]}, {shadow}")
            else:
                out.append(f"fadd {shadow}, d{reg[1]}, d{reg[1]}" if dep.store
                           else f"fadd d{reg[1]}, d{reg[1]}, {shadow}")
    return out


def _shadows(texts: list[str], deps: list[memory.Access | None]) -> dict[memory.Slot, str]:
    """A register the cycle never uses for every slot it stores to and loads from."""
    used = memory.used_registers(texts)
    free = {"x": [f"x{n}" for n in range(9, 29) if ("r", str(n)) not in used],
            "d": [f"d{n}" for n in range(32) if ("v", str(n)) not in used]}
    kinds: dict[memory.Slot, set[str]] = {}
    stored: set[memory.Slot] = set()
    loaded: set[memory.Slot] = set()
    for dep in deps:
        for slot, _, prefix in dep.pairs if dep else ():
            kinds.setdefault(slot, set()).add("x" if prefix in "wx" else "d")
            (stored if dep.store else loaded).add(slot)
    out = {}
    for slot in sorted(stored & loaded):
        if len(kinds[slot]) == 1:
            kind = next(iter(kinds[slot]))
            if free[kind]:
                out[slot] = free[kind].pop(0)
    return out


@dataclass(frozen=True)
class Cost:
    """C(1), and the marginal cycles `delta` of k more iterations in the steady state."""

    first: int
    delta: int
    k: int

    @property
    def cycles(self) -> Fraction:
        """One more iteration in the steady state, exactly."""
        return Fraction(self.delta, self.k)

    def times(self, n: int) -> Fraction:
        """n back-to-back iterations: the first one whole, the rest at the steady-state rate."""
        return self.first + (n - 1) * self.cycles if n else Fraction(0)


METHOD_VERSION = "6"  # bump when the costing above changes


def model_key() -> str:
    return tools.fingerprint(tools.tool("mca").version, *MCA_FLAGS, METHOD_VERSION)[:16]


def cache_for(settings: Settings) -> FigureCache:
    return figure_cache.at(settings.cache_dir / "mca" / model_key())


def _decode(value: str | None) -> Cost | None:
    try:
        first, delta, k = (value or "").split()
        return Cost(int(first), int(delta), int(k))
    except ValueError:
        return None


def cycle_costs(cycles: Sequence[Sequence[Insn]], workdir: Path,
                settings: Settings) -> list[Cost]:
    """The steady-state cost of every cycle; llvm-mca runs once per iteration tier and k."""
    figures = cache_for(settings)
    texts = ["\n".join(mca_lines(c)) for c in cycles]
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    found = {k: _decode(figures.get(k)) for k in set(keys)}
    todo: dict[int, dict[str, str]] = {}
    for key, text, cyc in zip(keys, texts, cycles, strict=True):
        if found[key] is None:
            todo.setdefault(iterations(len(cyc)), {})[key] = text
    single: dict[str, str] = {}
    for regions in todo.values():
        single.update(regions)
    # C(1) of every cycle, C(k) and C(2k) per tier: independent llvm-mca runs, side by side
    tiers = ([(0, 1, single)] if single else []) + [
        (k, n, regions) for k, regions in todo.items() for n in (k, 2 * k)]
    runs = {(k, n): background.submit(settings, _total_cycles, regions, n, workdir, settings)
            for k, n, regions in tiers}
    futures.wait(runs.values())  # all done before anything is raised: none outlives its files
    totals = {tier: run.result() for tier, run in runs.items()}
    first = totals.get((0, 1), {})
    for k, regions in sorted(todo.items()):
        once, twice = totals[(k, k)], totals[(k, 2 * k)]
        for key in regions:
            cost = found[key] = Cost(first[key], twice[key] - once[key], k)
            figures.put(key, f"{cost.first} {cost.delta} {cost.k}\n")
    return [found[k] for k in keys]  # type: ignore[misc]


def _total_cycles(regions: dict[str, str], iters: int, workdir: Path,
                  settings: Settings) -> dict[str, int]:
    """Total Cycles per region of one llvm-mca run over all regions."""
    names = sorted(regions)
    lines: list[str] = []
    owner: list[str | None] = []
    for i, name in enumerate(names):
        body = regions[name].split("\n")
        lines += [f"# LLVM-MCA-BEGIN r{i}", *body, f"# LLVM-MCA-END r{i}"]
        owner += [None, *[name] * len(body), None]
    summary = run_mca("\n".join(lines) + "\n", iters, workdir, settings, untrusted=False)
    if isinstance(summary, bytes):
        bad = [int(n) - 1 for n in _ERROR_LINE.findall(summary)]
        culprit = next((lines[n] for n in bad if 0 <= n < len(lines) and owner[n]), None)
        if culprit is None:
            raise InfraError(f"llvm-mca failed: {summary[-500:].decode(errors='replace')}")
        raise UnpricedError(culprit)
    got = {r["Name"]: int(r["SummaryView"]["TotalCycles"]) for r in summary["CodeRegions"]}
    try:
        return {name: got[f"r{i}"] for i, name in enumerate(names)}
    except KeyError as exc:
        raise InfraError(f"llvm-mca returned no region {exc}") from exc


@cache
def origin_libraries(exe: str) -> tuple[Path, ...]:
    """Libraries `exe` finds through $ORIGIN (llvm-mca: libLLVM), by their real paths.

    Listed for the sandbox: without /proc the loader cannot expand $ORIGIN, and then finds these
    in the default library directory only if they are bound there."""
    try:
        out = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    found = [line.split("=>")[1].split("(")[0].strip() for line in out.splitlines()
             if "=>" in line and "/../" in line]
    return tuple(Path(os.path.realpath(f)) for f in found if f.startswith("/"))


def run_mca(text: str, iters: int, workdir: Path, settings: Settings, *,
            untrusted: bool) -> dict | bytes:
    """llvm-mca's JSON report of `text`, or its error output when it refuses the input.

    Untrusted text (the submission as written) runs in the sandbox under a short budget, and
    anything that goes wrong is reported back, never raised: that figure decides nothing. Our own
    cycle texts run unconfined, and a failure there is the verifier's."""
    if untrusted:
        name = "listing.s"
        (workdir / name).write_text(text)
    else:
        fd, path = tempfile.mkstemp(prefix="mca-", suffix=".s", dir=workdir)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        name = Path(path).name
    os.chmod(workdir / name, 0o644)  # the tool runs as an unprivileged user
    timeout = LISTING_TIMEOUT_S if untrusted else MCA_TIMEOUT_S
    try:
        exe = os.path.realpath(tools.tool("mca").path)
        argv = [exe, *MCA_FLAGS, f"-iterations={iters}", "-json", name]
        res = sandbox.run(argv, workdir, timeout_s=timeout, confine=untrusted,
                          ro_files=origin_libraries(exe) if untrusted else (),
                          limits=sandbox.Limits(cpu_seconds=int(timeout) + 1),
                          settings=settings)
    finally:
        (workdir / name).unlink(missing_ok=True)
    if res.timed_out or res.returncode != 0:
        if untrusted:
            return b"timed out" if res.timed_out else (res.stderr or b"llvm-mca failed")
        if res.timed_out:
            raise InfraError("llvm-mca timed out")
        return res.stderr or b"llvm-mca failed"
    try:
        return json.loads(res.stdout)
    except ValueError as exc:
        if untrusted:
            return b"unreadable report"
        raise InfraError(f"llvm-mca wrote unreadable JSON: {exc}") from exc


LISTING_LABEL = (f"llvm-mca whole listing, {LISTING_ITERATIONS} iterations of the submitted "
                 "text (the original verifier's figure; decides nothing)")


def listing_cache(settings: Settings) -> FigureCache:
    """The whole-listing figures, by the text's hash: llvm-mca's report is a function of the
    text (and the tool, its flags and the iterations, which name the directory)."""
    key = tools.fingerprint(model_key(), "listing", str(LISTING_ITERATIONS))[:16]
    return figure_cache.at(settings.cache_dir / "mca-listing" / key)


def listing_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _listing_figure(value: str | None) -> dict[str, object] | None:
    """The figure a cached value stands for, as a fresh run reports it (None: no entry)."""
    kind, _, rest = (value or "").rstrip("\n").partition(" ")
    if kind == "refused" and rest:
        return _listing_refused(rest)
    try:
        regions, total = rest.split()
        return _listing_total(int(regions), int(total)) if kind == "cycles" else None
    except ValueError:
        return None


def _listing_total(regions: int, total: int) -> dict[str, object]:
    return {"label": LISTING_LABEL, "regions": regions, "total_cycles": total}


def _listing_refused(message: str) -> dict[str, object]:
    return {"label": LISTING_LABEL, "total_cycles": None, "error": message}


def whole_listing(text: str, settings: Settings) -> dict[str, object]:
    """The original's figure: Total Cycles of 100 iterations of the submitted text as written.

    Reported for comparison only. It runs on untrusted text, so inside the sandbox, in a
    directory of its own (it runs while the candidate is traced, which may write its scratch
    directory); regions marked in the text are analysed as llvm-mca does (the figure is their
    sum). The outcome is kept per exact text (the same text under another seed, a
    resubmission, a compiler's output warmed by `armgym prepare --warm`): a report, or
    llvm-mca's refusal of the text when it names a line of it (a parse error is the text's);
    a timeout or any other failure is not kept, as it may be the machine's."""
    figures = listing_cache(settings)
    key = listing_key(text)
    found = _listing_figure(figures.get(key))
    if found is not None:
        return found
    workdir = scratch_dirs.make("listing")
    try:
        report = run_mca(text, LISTING_ITERATIONS, workdir, settings, untrusted=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if isinstance(report, bytes):
        lines = report.decode(errors="replace").strip().splitlines()
        first = lines[0] if lines else ""
        message = re.sub(r"^\S+?:(\d+)", r"line \1", first)[:200]
        if _ERROR_LINE.match(first.encode()) and message.strip():
            _keep(figures, key, f"refused {message}")
        return _listing_refused(message)
    regions = report.get("CodeRegions", [])
    total = sum(int(r["SummaryView"]["TotalCycles"]) for r in regions)
    _keep(figures, key, f"cycles {len(regions)} {total}")
    return _listing_total(len(regions), total)


def _keep(figures: FigureCache, key: str, value: str) -> None:
    with contextlib.suppress(OSError):  # unwritten: analysed again next time
        figures.put(key, value + "\n")
