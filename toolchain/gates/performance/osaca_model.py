"""The cross-check's second model: OSACA's Neoverse V2 port model on the same loop cycles.

OSACA (an independent analytical model with its own instruction database, measured on V2
hardware) estimates one steady-state iteration of a cycle as max(port-pressure throughput,
loop-carried dependency), and its first pass as max(throughput, critical path), mirroring how the
llvm-mca figure charges C(1) + (n - 1) x steady state. Differences from the `osaca` command, each
for determinism or speed:

* Port pressure is OSACA's fixed (uniform) split across eligible ports (`--fixed`), not its
  iterative balancing, whose result depends on search order and is exponential in the worst case.
* Dependencies are read-after-write edges between register operands as OSACA's semantics
  assign them (sources, destinations, write-back of indexed addressing), weighted by OSACA's
  latencies, built in one pass (each read depends on the last earlier write of that register)
  rather than by OSACA's quadratic search; flags are not dependencies (OSACA's default), memory
  only through fixed slots, as for llvm-mca (memory.py). The loop-carried dependency is the
  longest path from an instruction to its own copy in the next iteration over two back-to-back
  copies, the critical path the longest path in one, both exact by dynamic programming, instead
  of OSACA's path enumeration with a wall-clock timeout (which would make the figure depend on
  machine load). A cycle longer than LCD_LIMIT instructions gets no loop-carried dependency
  (its steady state is its throughput), but its first pass still takes its critical path:
  straight-line code that runs once is mostly that path (clang's unrolled layernorm n=64, 389
  instructions, was priced at its throughput, 83 cycles, against llvm-mca's 381).
* Multiply-accumulate forwarding, which OSACA's database does not model: the accumulator of a
  multiply-accumulate written by one of the same family is ready after the forwarded latency
  the SWOG gives (3.5, 3.13, 3.15, 3.25: FP 4(2), ASIMD and SVE integer 4(1), SVE integer on
  D elements 5(3), scalar integer 2(1)), not the full one. Without it a reduction's
  accumulator chain was priced 2x (FP) to 4x (integer) llvm-mca's, the largest systematic
  difference between the two models, so honest reductions fell out of any band narrow enough
  to catch a kernel that hides work. SVE `mla`/`mls` on D elements take the guide's figures
  (those of OSACA's own `mad`): the database gave them the S form's single micro-op.
* Reads OSACA's semantics leave out: the register a lane load or insert keeps the other lanes
  of, a merging-predicated (`p0/m`) destination, and a register post-increment.
* A writeback access is two nodes of the graph, the access and its base update (`_nodes`), so a
  post-indexed store's base update does not wait for the data it stores.
* Lines are parsed with integer immediates canonicalised (OSACA prices operand kinds, not
  values), each distinct shape once per process (OSACA's parser takes milliseconds a line); a
  cycle with more than DISTINCT_LIMIT distinct shapes is declined rather than parsed for minutes.
* OSACA's V2 database holds a few hundred instruction forms. An instruction it lacks would cost
  0 cycles, so it falls back to a form of the same mnemonic in the database (best matching
  register classes), or of the database's instruction of the same kind (`_RELATIVES`), else to
  one generic micro-op on the integer or FP/SIMD pipes; loads and stores add OSACA's default
  load/store pipes and load latency. How many instructions needed a fallback is reported with
  every estimate.
* FP/SIMD-to-general `fmov` takes the guide's V0/V1 pipes (`_FP_TO_GPR_PORTS`), not the
  integer pipe OSACA's database gives it.
* An alias is priced as the instruction it encodes (`_ENCODES`): `sxtb`/`sxth`/`sxtw` are `sbfm`.
* The SVE element counts write (`cntb`) or step (`incw`, `uqdecb`) their register (`_COUNTS`,
  `_STEPS`), a dot product reads its accumulator (`_ACCUMULATES`).
"""

from __future__ import annotations

import base64
import hashlib
import pickle
import re
import threading
import warnings
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from ... import tools
from ...errors import InfraError
from ...settings import Settings
from . import cache as figure_cache
from . import memory
from .trace import Insn

ARCH = "V2"
LCD_LIMIT = 256
PARSE_CACHE_SIZE = 4096  # parsed forms are a few kB each
METHOD_VERSION = "12"  # bump when the estimate below changes
# A cycle with more distinct instruction shapes than this is not priced (the cross-check then
# disagrees): compiler output stays far below it, a hostile unrolled kernel could not.
DISTINCT_LIMIT = 1024
_INT_IMMEDIATE = re.compile(r"#-?(?:0x[0-9a-f]+|\d+)(?![\d.xe])")
_GPR_PORTS = [[1, "234567"]]  # one micro-op on any integer pipe
_FP_PORTS = [[1, ["8", "9", "10", "11"]]]  # one micro-op on any FP/SIMD pipe
_LOCK = threading.Lock()
# Multiply-accumulates whose accumulator is forwarded from a previous one of the same family:
# mnemonic -> (family, the accumulator's operand index, its forwarded latency), SWOG 3.13
# (FP multiply accumulate 4(2)), 3.15 (ASIMD FP 4(2), ASIMD integer 4(1)), 3.25 (SVE alike).
_FORWARDED: dict[str, tuple[str, int, float]] = {
    **{m: ("fp", 0, 2.0) for m in ("fmla", "fmls", "fnmla", "fnmls")},
    **{m: ("fp", 3, 2.0) for m in ("fmadd", "fmsub", "fnmadd", "fnmsub")},
    **{m: ("fp", -1, 2.0) for m in ("fmad", "fmsb", "fnmad", "fnmsb")},
    **{m: ("int", 0, 1.0) for m in ("mla", "mls")},
    **{m: ("int", -1, 1.0) for m in ("mad", "msb")},
    # dot products accumulate too; llvm-mca's V2 model forwards their accumulator in 1 cycle
    **{m: ("dot", 0, 1.0) for m in ("sdot", "udot", "usdot", "sudot")},
    # scalar: SWOG 3.5 multiply accumulate, W- and X-form and long, 2(1) (LLVM's V2 model:
    # latency 2, the accumulator read 1 cycle late)
    **{m: ("gpr", 3, 1.0) for m in ("madd", "msub", "smaddl", "umaddl", "smsubl", "umsubl")},
}
# SVE integer multiply-accumulate on D elements: latency 5, the accumulator read 2 cycles late,
# 2 micro-ops on V0/V2 (SWOG 3.25 "Multiply accumulate, D element size", as LLVM's V2 model has
# it); the B/H/S forms are 4(1).
_SVE_D_FORWARDED = 3.0
_SVE_D_MLA = ("mla", "mls", "mad", "msb")
# Aliases priced as the instruction they encode (the same encoding has one cost). OSACA's
# database gives `sxtb x, w` one micro-op on the two multi-cycle integer pipes (M0/M1) and has
# no `sxtb w, w`, whose fallback took that form's figures, where the guide (SWOG, bitfield move,
# basic: latency 1 on any I pipe), llvm-mca and the database's own `sbfm` agree on any of
# the six integer pipes. gcc -O1's int8 abs_diff, two `sxtb w` an iteration on a loop of
# twelve, was 1.72x llvm-mca's cycles (2.92 cycles an iteration on M0/M1 against 1.69).
_ENCODES = {m: "sbfm" for m in ("sxtb", "sxth", "sxtw")}
# Instructions the database lacks, priced as the database's instruction of the same kind: the
# SVE element counts, saturating scalar increments and vector-length reads are, as `addvl`,
# one micro-op on M with latency 2 (the guide's figures, as LLVM's V2 model has them). Their
# generic fallback, one micro-op of latency 1 on any integer pipe, left out half of the M-pipe
# work of gcc's SVE straight-line code (transpose_m8_n16_int8 gcc -O3: 23 `cntb`/`uqdecb`
# among 167 instructions, OSACA 18.6 cycles against llvm-mca's 55, ratio 0.34; now 26.3, 0.48).
_RELATIVES = {m: "addvl" for m in (
    "addpl", "rdvl", *(f"{op}{e}" for e in "bhwd"
                      for op in ("cnt", "sqinc", "sqdec", "uqinc", "uqdec")))}
# What the SVE element counts read and write, which OSACA's semantics get wrong: `cntb x3` and
# `rdvl x3, #1` write x3 (OSACA: read it), `incw x3` and the saturating `uqdecb x4` read and
# write it (OSACA: `incw x3` only reads it, `uqdecb x4, all, mul #3` only writes it). So the
# loop counter of every SVE loop was never written, and a chain of counts was not one.
_COUNTS = frozenset(("rdvl", *(f"cnt{e}" for e in "bhwd")))
_STEPS = frozenset(f"{op}{e}" for e in "bhwd"
                   for op in ("inc", "dec", "sqinc", "sqdec", "uqinc", "uqdec"))
# Dot products add into their destination, which OSACA's semantics (its database lacks them)
# give as written only: gcc -O3's int8 dot n256, 16 `sdot` into one accumulator, which llvm-mca
# chains, was priced as 16 independent instructions (ratio 0.37).
_ACCUMULATES = frozenset(("sdot", "udot", "usdot", "sudot"))
# FP/SIMD register to general register `fmov` (`fmov w, s`, `fmov x, d`, `fmov w, h`,
# `fmov x, v.d[1]`): SWOG 3.14 FP miscellaneous instructions, "FP transfer, from vec to gen
# reg" (FMOV): latency 2, throughput 1, pipes V01; LLVM's V2 model has the row as two micro-ops
# on V0/V1 (V2Write_2c_2V01), which gives that throughput. OSACA's database put `fmov w, s` and
# `fmov x, d` on one integer pipe (port 6, M0: the guide's row for the other direction, general
# to vector), which a loop's adds and compares share: clang -O1's popcount (an SVE `cnt`, an
# `fmov w, s` and two adds an element) was 1.75 cycles an iteration against llvm-mca's 1.07.
# `umov`/`smov` (and `mov w, v.s[i]`) are another row (ASIMD transfer, element to gen reg).
_FP_TO_GPR_PORTS = [[2, ["8", "9"]]]
_FP_TO_GPR_LATENCY = 2.0


@dataclass(frozen=True)
class Estimate:
    cycles: float  # one iteration, steady state
    first: float  # the first pass
    unknown: int  # instructions that needed a fallback
    declined: bool = False  # too many distinct instructions to parse within the budget


@cache
def _osaca() -> tuple[Any, Any, Any, Any, Any]:
    try:
        from osaca.parser import ParserAArch64  # type: ignore[import-untyped]
        from osaca.semantics import (  # type: ignore[import-untyped]
            INSTR_FLAGS,
            ArchSemantics,
            KernelDG,
            MachineModel,
        )
    except ImportError as exc:
        raise InfraError("OSACA (PyPI package osaca) is not installed") from exc
    model = MachineModel(arch=ARCH)
    _repair_ports(model)
    return ParserAArch64(), model, ArchSemantics, KernelDG, INSTR_FLAGS


@cache
def _semantics() -> Any:
    """OSACA's semantics object, built once: it keeps no state between kernels, and building it
    loads the ISA model from disk (7 ms, more than the rest of a typical estimate)."""
    parser, model, semantics_cls, _, _ = _osaca()
    return semantics_cls(parser, model)


def _repair_ports(model: Any) -> None:
    """OSACA 0.7.1's V2 file writes some port sets as ['67'] instead of '67' (ports 6 and 7;
    bfc/bfi/bfm), which OSACA itself rejects; split such unknown names into their ports."""
    known = set(model.get_ports())
    for forms in model["instruction_forms_dict"].values():
        for form in forms:
            pressure = form.port_pressure
            if isinstance(pressure, list):
                form.port_pressure = [
                    [c, [q for p in ports for q in ([p] if p in known else list(p))]]
                    if isinstance(ports, list) else [c, ports] for c, ports in pressure]


def model_key() -> str:
    return tools.fingerprint(tools.tool("osaca").version, ARCH, METHOD_VERSION,
                             str(LCD_LIMIT), str(DISTINCT_LIMIT))[:16]


def canonical(line: str) -> str:
    """The line with every integer immediate replaced by #1: OSACA's data depends on operand
    kinds, not immediate values, so unrolled code with many offsets parses once per shape."""
    return _INT_IMMEDIATE.sub("#1", line)


def estimates(cycles: Sequence[Sequence[Insn]], settings: Settings) -> list[Estimate]:
    """OSACA's estimate of each cycle, cached per cycle text (cache.py)."""
    figures = figure_cache.at(settings.cache_dir / "osaca" / model_key())
    out = []
    for insns in cycles:
        lines = [i.text for i in insns]
        key = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        try:
            cycles_, first, unknown, declined = (figures.get(key) or "").split()
            out.append(Estimate(float(cycles_), float(first), int(unknown), declined == "1"))
            continue
        except ValueError:
            pass
        with _LOCK:
            found = estimate(lines, settings.cache_dir / "osaca" / model_key() / "forms")
        figures.put(key, f"{found.cycles!r} {found.first!r} {found.unknown} "
                         f"{int(found.declined)}\n")
        out.append(found)
    return out


def estimate(lines: Sequence[str], forms: Path | None = None) -> Estimate:
    """max(throughput, loop-carried dependency) of the lines as one loop body; `forms` is where
    processed lines are kept on disk (for every process on the machine), None for memory only."""
    with warnings.catch_warnings():
        # OSACA 0.7.1 calls pyparsing APIs that pyparsing 3.2 deprecates, once per line.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _estimate(lines, forms)


def _estimate(lines: Sequence[str], forms: Path | None) -> Estimate:
    shapes = [canonical(line) for line in lines]
    if len(set(shapes)) > DISTINCT_LIMIT:  # parsing costs milliseconds a line: bound the work
        return Estimate(0.0, 0.0, len(lines), declined=True)
    kernel, unknown = [], 0
    for number, shape in enumerate(shapes, 1):
        form, guessed = _processed(shape, forms)
        form = copy(form)  # shared operands and figures, its own line number
        form.line_number = number
        kernel.append(form)
        unknown += guessed
    throughput = max(_semantics().get_throughput_sum(kernel) or [0.0])
    lcd, critical = dependencies(kernel, lines, loop=len(kernel) <= LCD_LIMIT)
    return Estimate(round(max(throughput, lcd), 4), round(max(throughput, critical), 4), unknown)


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _processed(shape: str, forms: Path | None) -> tuple[Any, bool]:
    """One line parsed and given OSACA's figures (or a relative's, `_fallback`), and whether they
    are guessed. Every step is per instruction, so the result is cached per line and a kernel
    only copies it: parsing and assigning cost milliseconds, a copy microseconds. On disk too
    (pickled, in the verifier's own cache directory), so a new worker process starts warm."""
    store = figure_cache.at(forms, size=0) if forms else None
    key = hashlib.sha256(shape.encode()).hexdigest()
    stored = store.get(key) if store else None
    if stored:
        try:
            form, guessed = pickle.loads(base64.b64decode(stored))
            return form, bool(guessed)
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed and rewritten
            pass
    found = _process(shape)
    if store:
        store.put(key, base64.b64encode(pickle.dumps(found)).decode())
    return found


def _process(shape: str) -> tuple[Any, bool]:
    parser, model, _, _, flags = _osaca()
    sem = _semantics()
    form = _parse(parser, shape)
    generic = form is None  # OSACA's parser does not know the syntax: a generic micro-op
    if form is None:
        form = _parse(parser, "nop")
    sem.normalize_instruction_forms([form])
    sem.assign_src_dst(form)
    _count_semantics(form)
    try:
        sem.assign_tp_lt(form)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError):
        generic = True  # a database entry OSACA cannot use
    guessed = generic or flags.TP_UNKWN in form.flags or flags.LT_UNKWN in form.flags
    encoded = _ENCODES.get(str(form.mnemonic).lower())
    if _fp_to_gpr(form) and not generic:
        form.port_uops = _FP_TO_GPR_PORTS
        form.port_pressure = model.average_port_pressure(form.port_uops)
        form.latency = form.latency_wo_load = _FP_TO_GPR_LATENCY
        form.throughput = max(form.port_pressure)
        guessed = False
    elif encoded and not generic:
        _borrow(form, model, flags, model["instruction_forms_dict"].get(encoded.upper(), []))
        guessed = False
    elif guessed:
        _fallback(form, model, flags, generic)
    elif _sve_d(form) and str(form.mnemonic).lower() in ("mla", "mls"):
        # OSACA's database gives mla/mls on D elements one micro-op on any of the four FP
        # pipes, latency 4 (the S form's pipes), and its own mad/msb on D elements the guide's
        # figures, which the guide gives all four in one row: those
        form.port_uops = [[2, ["8", "10"]]]
        form.port_pressure = model.average_port_pressure(form.port_uops)
        form.latency = form.latency_wo_load = 5.0
        form.throughput = max(form.port_pressure)
    return form, guessed


def _count_semantics(form: Any) -> None:
    """The register an SVE element count writes (`_COUNTS`) or steps (`_STEPS`), or a dot
    product accumulates into (`_ACCUMULATES`), its first operand, as the architecture has it;
    every other register operand is read."""
    mnemonic = str(form.mnemonic).lower()
    if mnemonic not in _COUNTS and mnemonic not in _STEPS and mnemonic not in _ACCUMULATES:
        return
    regs = [op for op in form.operands or [] if _key(op) is not None]
    if not regs:
        return
    first, rest = regs[0], regs[1:]
    form.semantic_operands = {"source": rest,
                              "destination": [first] if mnemonic in _COUNTS else [],
                              "src_dst": [first] if mnemonic not in _COUNTS else []}


def _fp_to_gpr(form: Any) -> bool:
    """Whether an instruction is `fmov` from an FP/SIMD register to a general one."""
    prefixes = [getattr(op, "prefix", None) for op in form.operands or []]
    return str(form.mnemonic).lower() == "fmov" and len(prefixes) == 2 and \
        prefixes[0] in ("w", "x") and prefixes[1] in ("h", "s", "d", "v")


def _sve_d(form: Any) -> bool:
    """Whether an instruction is an SVE integer multiply-accumulate on D elements."""
    ops = [op for op in form.operands or [] if getattr(op, "prefix", None) == "z"]
    return str(form.mnemonic).lower() in _SVE_D_MLA and bool(ops) and \
        all(str(getattr(op, "shape", "")).lower() == "d" for op in ops)


def _parse(parser: Any, line: str) -> Any:
    """OSACA's parse of one line, None when it does not know the syntax (parsing costs
    milliseconds: `_processed` caches the result per line)."""
    try:
        forms = [f for f in parser.parse_file(line) if f.mnemonic]
    except Exception:  # noqa: BLE001 - OSACA's parser raises anything on unknown syntax
        return None
    return forms[0] if len(forms) == 1 else None


def _fallback(form: Any, model: Any, flags: Any, generic: bool) -> None:
    """Give an instruction OSACA's database lacks the data of its nearest relative (module doc)."""
    mnemonic = str(form.mnemonic).lower()
    relatives = [] if generic else model["instruction_forms_dict"].get(
        _RELATIVES.get(mnemonic, mnemonic).upper(), [])
    _borrow(form, model, flags, relatives)


def _borrow(form: Any, model: Any, flags: Any, relatives: Sequence[Any]) -> None:
    """Give an instruction the figures of the relative whose register classes match it best
    (of none: one generic micro-op), with the default load/store pipes where it accesses
    memory."""
    prefixes = [getattr(op, "prefix", None) for op in form.operands]
    best = max(relatives, default=None, key=lambda r: sum(
        getattr(a, "prefix", None) == b for a, b in zip(r.operands, prefixes, strict=False)))
    fp = any(p in ("v", "q", "d", "s", "h", "b", "z", "p") for p in prefixes)
    uops = list(best.port_pressure) if best and best.port_pressure else (
        _FP_PORTS if fp else _GPR_PORTS)
    latency = float(best.latency) if best and best.latency else (2.0 if fp else 1.0)
    if flags.HAS_LD in form.flags:
        uops = uops + model["load_throughput_default"]
        latency += model.get_load_latency("v" if fp else "x")
    if flags.HAS_ST in form.flags:
        uops = uops + model["store_throughput_default"]
    form.port_uops = uops
    form.port_pressure = model.average_port_pressure(uops)
    form.latency = form.latency_wo_load = latency
    form.throughput = max(form.port_pressure or [0.0])
    form.flags = [f for f in form.flags if f not in (flags.TP_UNKWN, flags.LT_UNKWN)]


def dependencies(kernel: list[Any], lines: Sequence[str],
                 loop: bool = True) -> tuple[float, float]:
    """(longest path from an instruction to its own copy one iteration later, longest path within
    one iteration including its last instruction's latency), over register and slot
    dependencies; a writeback access is two nodes, the access and its base update (_nodes).
    The critical path takes linear time and is always computed; the loop-carried dependency
    (quadratic) only with `loop`, else 0."""
    nodes = _nodes(kernel, memory.slot_dependencies(list(lines)))
    n = len(nodes)
    edges = _edges(nodes + nodes if loop else nodes)
    index_latency = float(_osaca()[1].get("p_index_latency", 1))
    latency = [index_latency if node.update else float(node.form.latency or 0.0)
               for node in nodes] * 2
    reach = [0.0] * n  # longest path ending where node i starts, within one iteration
    for i in range(n):
        for j, w in edges[i]:
            if j < n:
                reach[j] = max(reach[j], reach[i] + w)
    critical = max((reach[i] + latency[i] for i in range(n)), default=0.0)
    lcd = 0.0
    for source in range(n if loop else 0):
        dist: dict[int, float] = {source: 0.0}
        for i in range(source, source + n):
            here = dist.get(i)
            if here is not None:
                for j, w in edges[i]:
                    if j <= source + n and here + w > dist.get(j, -1.0):
                        dist[j] = here + w
        lcd = max(lcd, dist.get(source + n, 0.0))
    return lcd, critical


@dataclass(frozen=True)
class _Node:
    """One node of the dependency graph: an instruction, or the access or the base update of a
    writeback access (`update` is then its pre/post-indexed memory operand)."""

    form: Any
    slot: memory.Access | None
    writeback: Any = None  # the access of a writeback instruction: its memory operand
    update: Any = None  # the base update of one: its memory operand


def _writeback(form: Any) -> Any:
    """The pre- or post-indexed memory operand of an instruction, or None."""
    ops = form.semantic_operands or {}
    return next((op for op in ops.get("source", []) + ops.get("destination", [])
                 if _is_memory(op) and (getattr(op, "pre_indexed", False) or
                                        getattr(op, "post_indexed", False))), None)


def _nodes(kernel: list[Any], slots: list[memory.Access | None]) -> list[_Node]:
    """The graph's nodes in program order. OSACA's graph has one node per instruction, so the
    base update of a writeback store started when the stored data was ready: a loop whose
    stores post-increment their base carried the loads' and arithmetic's latency into the
    next iteration through the base register (clang's saxpy, `ldp`/`stp q, q, [x], #64`: 11
    cycles an iteration, where the core, the guide and llvm-mca update the base as soon as
    the old base is ready). The access and the base update are separate nodes, both reading
    the old base, as in the cost layer's split (mca.writeback); for a load the two coincide."""
    out = []
    for form, slot in zip(kernel, slots, strict=True):
        mem = _writeback(form)
        if mem is None:
            out.append(_Node(form, slot))
        else:
            out += [_Node(form, slot, writeback=mem), _Node(form, None, update=mem)]
    return out


def _edges(nodes: list[_Node]) -> list[list[tuple[int, float]]]:
    """Read-after-write edges (writer, reader, the writer's latency; a pre/post-indexed base
    register's update takes OSACA's p_index_latency), from OSACA's source/destination
    operands; each read depends on the last earlier writer of that register (w/x, and
    b/h/s/d/q/v/z, alias). A load from a fixed slot depends on the last store to it with no
    extra latency: the load's own latency stands for the forwarding (memory.py)."""
    _, model, _, _, _ = _osaca()
    index_latency = float(model.get("p_index_latency", 1))
    last: dict[Any, tuple[int, float]] = {}
    edges: list[list[tuple[int, float]]] = [[] for _ in nodes]
    for j, node in enumerate(nodes):
        form, slot = node.form, node.slot
        if node.update is not None:  # reads the old base (and a register increment)
            base = _key(node.update.base)
            for key in dict.fromkeys([base, _increment(node.update)]):
                if key and key in last:
                    edges[last[key][0]].append((j, last[key][1]))
            if base:
                last[base] = (j, index_latency)
            continue
        ops = form.semantic_operands or {}
        # the written-back base register is the update node's (OSACA lists it in src_dst)
        written_back = _key(node.writeback.base) if node.writeback is not None else None
        src_dst = [op for op in ops.get("src_dst", []) if written_back not in _regs(op)]
        reads: list[Any] = [k for op in ops.get("source", []) + src_dst for k in _regs(op)]
        reads += [written_back] if written_back else []
        reads += [k for op in ops.get("destination", []) if _is_memory(op) for k in _regs(op)]
        merging = _merging(form)
        reads += [k for op in ops.get("destination", []) if _lane(op) or
                  (merging and not _is_memory(op)) for k in _regs(op)]
        if slot is not None and not slot.store:
            reads += [("slot", s) for s, _, _ in slot.pairs]
        accumulator = _accumulator(form)
        for key in dict.fromkeys(reads):
            if key in last:
                writer, w = last[key]
                if accumulator and key == accumulator[1]:
                    family = _FORWARDED.get(str(nodes[writer].form.mnemonic).lower())
                    if family and family[0] == accumulator[0]:
                        w = min(w, _SVE_D_FORWARDED if _sve_d(nodes[writer].form)
                                else family[2])
                edges[writer].append((j, w))
        own = float(form.latency or 0.0)
        if slot is not None and slot.store:
            for s, _, _ in slot.pairs:
                last[("slot", s)] = (j, 0.0)
        for op in ops.get("destination", []):
            if not _is_memory(op):
                for key in _regs(op):
                    last[key] = (j, own)
        for op in src_dst:
            for key in _regs(op):
                last[key] = (j, index_latency if _is_memory(op) else own)
    return edges


def _lane(op: Any) -> bool:
    """Whether a destination is one lane of a vector register (`ld1 {v2.b}[1], [x2]`,
    `ins v2.s[1], w3`): the other lanes are kept, so the register is read too, as llvm-mca and
    the architecture have it. OSACA's semantics give it as written only, so a transpose that
    fills vectors lane by lane (gcc's int8 transposes: 15 lane loads into one register, which
    llvm-mca chains at 8 cycles each) was priced as if every load were independent."""
    return not _is_memory(op) and getattr(op, "index", None) is not None and \
        str(getattr(op, "prefix", "")).lower() == "v"


def _merging(form: Any) -> bool:
    """Whether an SVE instruction is merging-predicated (`p0/m`): its inactive lanes keep the
    destination's values, so the destination is read too. OSACA's semantics read it only
    where the syntax repeats it (`fadd z0.s, p0/m, z0.s, z1.s`), not in `mad`, a merging
    `mov`/`movprfx`, or a unary operation (`frinta z0.s, p0/m, z1.s`)."""
    return any(getattr(op, "predication", None) == "m" for op in form.operands or [])


def _increment(mem: Any) -> tuple[str, str] | None:
    """The register a register post-increment (`[x0], x2`) adds to the base, or None."""
    post = getattr(mem, "post_indexed", None)
    name = post.get("identifier", {}).get("name") if isinstance(post, dict) else None
    m = re.fullmatch(r"[xw](\d+)", str(name or ""))
    return ("r", m.group(1)) if m else None


def _accumulator(form: Any) -> tuple[str, tuple[str, str]] | None:
    """(family, register) of a multiply-accumulate's accumulator operand (_FORWARDED)."""
    found = _FORWARDED.get(str(form.mnemonic).lower())
    operands = [op for op in form.operands or [] if _key(op) is None or _key(op)[0] != "p"]
    if not found or len(operands) < 3:
        return None
    key = _key(operands[found[1]])
    return (found[0], key) if key else None


def _is_memory(op: Any) -> bool:
    return hasattr(op, "base")


def _regs(op: Any) -> list[tuple[str, str]]:
    if _is_memory(op):
        return [k for k in (_key(op.base), _key(getattr(op, "index", None))) if k]
    key = _key(op)
    return [key] if key else []


def _key(reg: Any) -> tuple[str, str] | None:
    """A register's architectural identity; the zero register and non-registers have none."""
    name = getattr(reg, "name", None)
    if name is None or not hasattr(reg, "prefix") or str(name) == "zr":
        return None
    prefix = (reg.prefix or "").lower()
    if prefix in ("w", "x"):
        return ("r", str(name))
    if prefix in ("b", "h", "s", "d", "q", "v", "z"):
        return ("v", str(name))
    return (prefix, str(name))
