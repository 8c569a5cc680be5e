"""The cross-check's second model: OSACA's Neoverse V2 port model on the same loop cycles.

OSACA (an independent analytical model with its own instruction database, measured on V2
hardware) estimates one steady-state iteration of a cycle as max(port-pressure throughput,
loop-carried dependency), and its first pass as max(throughput, critical path), mirroring how the
llvm-mca figure charges C(1) + (n - 1) x steady state. Differences from the `osaca` command, each
for determinism or speed:

* Port pressure is OSACA's fixed (uniform) split across eligible ports (`--fixed`), not its
  iterative balancing, whose result depends on search order and is exponential in the worst case.
* The loop-carried dependency is the longest path from an instruction to its own copy in the next
  iteration over OSACA's dependency graph of two back-to-back copies, and the critical path the
  longest path in one copy, both computed exactly by dynamic programming on that acyclic graph,
  instead of OSACA's path enumeration with a wall-clock timeout (a timeout would make the figure
  depend on machine load). Cycles longer than LCD_LIMIT instructions are costed by throughput
  alone (the dependency graph is quadratic to build).
* OSACA's V2 database holds a few hundred instruction forms. An instruction it lacks would cost
  0 cycles, so it falls back to a form of the same mnemonic in the database (best matching
  register classes), else to one generic micro-op on the integer or FP/SIMD pipes; loads and
  stores add OSACA's default load/store pipes and load latency. How many instructions needed a
  fallback is reported with every estimate.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from ... import tools
from ...errors import InfraError
from .trace import Insn

ARCH = "V2"
LCD_LIMIT = 256
LRU_SIZE = 65536
METHOD_VERSION = "2"  # bump when the estimate below changes
_GPR_PORTS = [[1, "234567"]]  # one micro-op on any integer pipe
_FP_PORTS = [[1, ["8", "9", "10", "11"]]]  # one micro-op on any FP/SIMD pipe
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Estimate:
    cycles: float  # one iteration, steady state
    first: float  # the first pass
    unknown: int  # instructions that needed a fallback


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
                             str(LCD_LIMIT))[:16]


_LRU: OrderedDict[str, Estimate] = OrderedDict()


def estimates(cycles: Sequence[Sequence[Insn]]) -> list[Estimate]:
    """OSACA's estimate of one iteration of each cycle, memoised per cycle text."""
    out = []
    for insns in cycles:
        text = "\n".join(i.text for i in insns)
        key = hashlib.sha256(f"{model_key()}\n{text}".encode()).hexdigest()
        with _LOCK:
            hit = _LRU.get(key)
            if hit is None:
                hit = _LRU[key] = estimate([i.text for i in insns])
            _LRU.move_to_end(key)
            while len(_LRU) > LRU_SIZE:
                _LRU.popitem(last=False)
        out.append(hit)
    return out


def estimate(lines: Sequence[str]) -> Estimate:
    """max(throughput, loop-carried dependency) of the lines as one loop body."""
    with warnings.catch_warnings():
        # OSACA 0.7.1 calls pyparsing APIs that pyparsing 3.2 deprecates, once per line.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _estimate(lines)


def _estimate(lines: Sequence[str]) -> Estimate:
    parser, model, semantics_cls, _, flags = _osaca()
    kernel, unparsed = [], set()
    for number, line in enumerate(lines, 1):
        form = _parse(parser, line, number)
        if form is None:  # OSACA's parser does not know the syntax: a generic micro-op
            unparsed.add(number)
            form = _parse(parser, "nop", number)
        kernel.append(form)
    sem = semantics_cls(parser, model)
    sem.normalize_instruction_forms(kernel)
    for form in kernel:
        sem.assign_src_dst(form)
        try:
            sem.assign_tp_lt(form)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError):
            unparsed.add(form.line_number)  # a database entry OSACA cannot use
    unknown = 0
    for form in kernel:
        generic = form.line_number in unparsed
        if generic or flags.TP_UNKWN in form.flags or flags.LT_UNKWN in form.flags:
            unknown += 1
            _fallback(form, model, flags, generic)
    throughput = max(sem.get_throughput_sum(kernel) or [0.0])
    lcd, critical = dependencies(kernel) if len(kernel) <= LCD_LIMIT else (0.0, 0.0)
    return Estimate(round(max(throughput, lcd), 4), round(max(throughput, critical), 4), unknown)


def _parse(parser: Any, line: str, number: int) -> Any:
    try:
        forms = [f for f in parser.parse_file(line) if f.mnemonic]
    except Exception:  # noqa: BLE001 - OSACA's parser raises anything on unknown syntax
        return None
    if len(forms) != 1:
        return None
    forms[0].line_number = number
    return forms[0]


def _fallback(form: Any, model: Any, flags: Any, generic: bool) -> None:
    """Give an instruction OSACA's database lacks the data of its nearest relative (module doc)."""
    relatives = [] if generic else model["instruction_forms_dict"].get(form.mnemonic.upper(), [])
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


def dependencies(kernel: list[Any]) -> tuple[float, float]:
    """(longest path from an instruction to its own copy one iteration later, longest path within
    one iteration including its last instruction's latency)."""
    parser, model, semantics_cls, dg_cls, _ = _osaca()
    offset = max(1000, max(f.line_number for f in kernel))
    doubled = list(kernel)
    for form in kernel:
        twin = copy(form)
        twin.line_number += offset
        doubled.append(twin)
    builder = dg_cls.__new__(dg_cls)  # only create_DG: skip the constructor's path enumeration
    builder.model, builder.parser, builder.arch_sem = model, parser, semantics_cls(parser, model)
    graph = builder.create_DG(doubled)
    order = sorted(graph.nodes)
    position = {n: i for i, n in enumerate(order)}
    return _loop_carried(kernel, graph, order, position, offset), _critical(graph, order, offset)


def _critical(graph: Any, order: list[float], offset: float) -> float:
    reach: dict[float, float] = {}
    best = 0.0
    for node in order:
        if node > offset:
            break
        here = reach.get(node, 0.0)
        form = graph.nodes[node].get("instruction_form")
        # a separate load node already carries the load's part of an instruction's latency
        own = getattr(form, "latency_wo_load", None)
        own = getattr(form, "latency", 0.0) if own is None else own
        best = max(best, here + float(own or 0.0))
        for succ, edge in graph.adj[node].items():
            if succ <= offset:
                reach[succ] = max(reach.get(succ, 0.0), here + float(edge.get("latency", 0.0)))
    return best


def _loop_carried(kernel: list[Any], graph: Any, order: list[float],
                  position: dict[float, int], offset: float) -> float:
    best = 0.0
    for source in (f.line_number for f in kernel):
        target = source + offset
        if target not in position:
            continue
        dist = {source: 0.0}
        for node in order[position[source]: position[target] + 1]:
            here = dist.get(node)
            if here is None:
                continue
            for succ, edge in graph.adj[node].items():
                if position[succ] <= position[target]:
                    length = here + float(edge.get("latency", 0.0))
                    if length > dist.get(succ, -1.0):
                        dist[succ] = length
        best = max(best, dist.get(target, 0.0))
    return best
