"""The cost model against published Neoverse V2 figures: one micro-kernel per row.

Each row is a loop body that isolates one figure: a throughput (many independent instances,
cycles per instruction = 1 / instructions per cycle) or a latency (a dependency chain through
the instruction, cycles per instruction). The model's prediction is llvm-mca's steady-state
cost per iteration (the same marginal (C(2k) - C(k)) / k the gate charges) divided by the
instances in the body. `published` is the Neoverse V2 figure and `source` where it comes from:
"SWOG" is Arm's Neoverse V2 Software Optimization Guide (document 109898), section and row as
named there; "SWOG 4.1" its dispatch constraints. `band` is the agreed range of prediction /
published; a row whose band is wider than +-25% says why in `note`.

`armgym fidelity` prints the table for the configured llvm-mca (and any other given), the test
suite checks every row against its band, and docs/cost-model.md carries the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from . import mca
from .trace import Insn, normalise


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "throughput" or "latency"
    body: tuple[str, ...]  # one iteration: instances of the measured instruction
    published: float  # cycles per instance
    source: str
    band: tuple[float, float] = (0.75, 1.25)
    note: str = ""


def _indep(template: str, n: int, start: int = 0) -> tuple[str, ...]:
    return tuple(template.format(r=start + i, o=8 * i, q=16 * i, p=32 * i) for i in range(n))


def _chain(text: str, n: int) -> tuple[str, ...]:
    return (text,) * n


ROWS: tuple[Row, ...] = (
    # loads and stores in every addressing form
    Row("ldr x, [x, #imm]", "throughput", _indep("ldr x{r}, [x20, #{o}]", 12), 1 / 3,
        "SWOG 3.9 Load register, unsigned immed: 3/cycle (L01, L2)"),
    Row("ldr x, [x, x, lsl #3]", "throughput", _indep("ldr x{r}, [x20, x21, lsl #3]", 12),
        1 / 3, "SWOG 3.9 Load register, register offset, scaled: 3/cycle"),
    Row("ldr x, [x], #8 (post-index)", "throughput",
        tuple(f"ldr x{i}, [x{20 + i % 6}], #8" for i in range(12)), 1 / 3,
        "SWOG 3.9 Load register, immed post-index: 3/cycle (+ I for the base)"),
    Row("ldp x, x, [x, #imm]", "throughput",
        tuple(f"ldp x{2 * i}, x{2 * i + 1}, [x20, #{16 * i}]" for i in range(6)), 1 / 3,
        "SWOG 3.9 Load pair, immed offset, X-form: 3/cycle",
        band=(0.75, 1.6), note="LLVM's model notes the guide's 3/cycle may be 2 in practice"),
    Row("ldp x, x, [x], #16 (post-index)", "throughput",
        tuple(f"ldp x{2 * i}, x{2 * i + 1}, [x{20 + i}], #16" for i in range(6)), 1 / 3,
        "SWOG 3.9 Load pair, immed post-index, X-form: 3/cycle (+ I for the base)",
        band=(0.75, 1.6), note="LLVM's model notes the guide's 3/cycle may be 2 in practice"),
    Row("ldr q, [x], #16 (post-index)", "throughput",
        tuple(f"ldr q{i}, [x{20 + i % 6}], #16" for i in range(12)), 1 / 3,
        "SWOG 3.11 Load vector reg, immed post-index: 3/cycle (+ I for the base)"),
    Row("ldr q, [x, #16]! (pre-index)", "throughput",
        tuple(f"ldr q{i}, [x{20 + i % 6}, #16]!" for i in range(12)), 1 / 3,
        "SWOG 3.11 Load vector reg, immed pre-index: 3/cycle (+ I for the base)"),
    Row("ldr q, [x, #imm]", "throughput", _indep("ldr q{r}, [x20, #{q}]", 12), 1 / 3,
        "SWOG 3.11 Load vector reg, unsigned immed: 3/cycle"),
    Row("ldp q, q, [x, #imm]", "throughput",
        tuple(f"ldp q{2 * i}, q{2 * i + 1}, [x20, #{32 * i}]" for i in range(6)), 2 / 3,
        "SWOG 3.11 Load vector pair, immed offset, Q-form: 3/2 per cycle"),
    Row("ldp q, q, [x], #32 (post-index)", "throughput",
        tuple(f"ldp q{2 * i}, q{2 * i + 1}, [x{20 + i % 3}], #32" for i in range(6)), 2 / 3,
        "SWOG 3.11 Load vector pair, immed post-index, Q-form: 3/2 per cycle"),
    Row("ld1 {v.4s}, [x], #16 (post-index)", "throughput",
        tuple(f"ld1 {{v{i}.4s}}, [x{20 + i % 6}], #16" for i in range(12)), 1 / 3,
        "SWOG 3.16 ASIMD load, 1 element, multiple, 1 reg, Q-form: 3/cycle"),
    Row("ld1 {4 x v.4s}, [x]", "throughput",
        tuple(f"ld1 {{v{4 * i}.4s-v{4 * i + 3}.4s}}, [x20]" for i in range(6)), 4 / 3,
        "SWOG 3.16 ASIMD load, 1 element, multiple, 4 reg, Q-form: 3/4 per cycle"),
    Row("str x, [x, #imm]", "throughput", _indep("str x{r}, [x20, #{o}]", 12), 1 / 2,
        "SWOG 3.10 Store register, unsigned immed: 2/cycle (L01, D)"),
    Row("str x, [x], #8 (post-index)", "throughput",
        tuple(f"str x{i}, [x{20 + i % 6}], #8" for i in range(12)), 1 / 2,
        "SWOG 3.10 Store register, immed post-index: 2/cycle"),
    Row("stp x, x, [x, #-16]! (pre-index)", "throughput",
        tuple(f"stp x{2 * i}, x{2 * i + 1}, [x{20 + i}, #-16]!" for i in range(6)), 1 / 2,
        "SWOG 3.10 Store pair, immed pre-index, X-form: 2/cycle"),
    Row("str q, [x], #16 (post-index)", "throughput",
        tuple(f"str q{i}, [x{20 + i % 6}], #16" for i in range(12)), 1 / 2,
        "SWOG 3.12 Store vector reg, immed post-index, Q-form: 2/cycle"),
    Row("st1 {2 x v.4s}, [x], #32 (post-index)", "throughput",
        tuple(f"st1 {{v{2 * i}.4s, v{2 * i + 1}.4s}}, [x{20 + i % 3}], #32" for i in range(6)),
        1.0, "SWOG 3.17 ASIMD store, 1 element, multiple, 2 reg, Q-form: 1/cycle"),
    Row("str q, [x, #imm]", "throughput", _indep("str q{r}, [x20, #{q}]", 12), 1 / 2,
        "SWOG 3.12 Store vector reg, unsigned immed, Q-form: 2/cycle"),
    Row("stp q, q, [x, #imm]", "throughput",
        tuple(f"stp q{2 * i}, q{2 * i + 1}, [x20, #{32 * i}]" for i in range(6)), 1.0,
        "SWOG 3.12 Store vector pair, immed offset, Q-form: 1/cycle"),
    Row("stp q, q, [x], #32 (post-index)", "throughput",
        tuple(f"stp q{2 * i}, q{2 * i + 1}, [x{20 + i % 3}], #32" for i in range(6)), 1.0,
        "SWOG 3.12 Store vector pair, immed post-index, Q-form: 1/cycle"),
    Row("prfm pldl1keep, [x, #imm]", "throughput", _indep("prfm pldl1keep, [x20, #{p}]", 12),
        1 / 3, "SWOG 3.9 Load register (prefetch uses a load pipe): 3/cycle"),
    Row("ldr x0, [x0] (pointer chase)", "latency", _chain("ldr x0, [x0]", 8), 4.0,
        "SWOG 3.9 Load register: latency 4 (L1 hit)"),
    # integer
    Row("add x (independent)", "throughput", _indep("add x{r}, x20, #1", 12), 1 / 6,
        "SWOG 3.4 ALU, basic: 6/cycle (I: S0-S3, M0-M1)"),
    Row("dispatch: 6 add + 4 fadd + 2 ldr", "throughput",
        _indep("add x{r}, x20, #1", 6) + _indep("fadd v{r}.4s, v20.4s, v21.4s", 4)
        + _indep("ldr x{r}, [x21, #{o}]", 2, 6), 1 / 8,
        "SWOG 4.1 Dispatch constraints: 8 MOPs/cycle (llvm issue #136374: the model's 16 is 2x)"),
    Row("mul x (chain)", "latency", _chain("mul x0, x0, x1", 8), 2.0,
        "SWOG 3.5 Multiply, X-form: latency 2"),
    Row("sdiv w (chain)", "latency", _chain("sdiv w0, w0, w1", 4), 12.0,
        "SWOG 3.5 Divide, W-form: latency 12"),
    Row("sdiv x (chain)", "latency", _chain("sdiv x0, x0, x1", 4), 20.0,
        "SWOG 3.5 Divide, X-form: latency 20"),
    # FP and SIMD
    Row("fadd v.4s (independent)", "throughput", _indep("fadd v{r}.4s, v20.4s, v21.4s", 12),
        1 / 4, "SWOG 3.15 ASIMD FP arith: 4/cycle (V0-V3)"),
    Row("fadd v.4s (chain)", "latency", _chain("fadd v0.4s, v0.4s, v1.4s", 8), 2.0,
        "SWOG 3.15 ASIMD FP arith: latency 2"),
    Row("fmul v.4s (chain)", "latency", _chain("fmul v0.4s, v0.4s, v1.4s", 8), 3.0,
        "SWOG 3.15 ASIMD FP multiply: latency 3"),
    Row("fmla v.4s (independent)", "throughput",
        _indep("fmla v{r}.4s, v20.4s, v21.4s", 12), 1 / 4,
        "SWOG 3.15 ASIMD FP multiply accumulate: 4/cycle"),
    Row("fmla v.4s (accumulator chain)", "latency", _chain("fmla v0.4s, v1.4s, v2.4s", 8),
        2.0, "SWOG 3.15 ASIMD FP multiply accumulate: latency 4, accumulator forwarded in 2"),
    Row("fmla v.4s (multiplicand chain)", "latency", _chain("fmla v0.4s, v0.4s, v2.4s", 8),
        4.0, "SWOG 3.15 ASIMD FP multiply accumulate: latency 4"),
    Row("fdiv s (chain)", "latency", _chain("fdiv s0, s0, s1", 4), 10.0,
        "SWOG 3.13 FP divide, S-form: latency 7-10", band=(0.7, 1.1),
        note="data-dependent latency; the band spans the guide's range"),
    Row("fdiv d (chain)", "latency", _chain("fdiv d0, d0, d1", 4), 15.0,
        "SWOG 3.13 FP divide, D-form: latency 7-15", band=(0.47, 1.1),
        note="data-dependent latency; the band spans the guide's range"),
    Row("fsqrt d (chain)", "latency", _chain("fsqrt d0, d0", 4), 16.0,
        "SWOG 3.13 FP square root, D-form: latency 7-16", band=(0.44, 1.1),
        note="data-dependent latency; the band spans the guide's range"),
    Row("fdiv v.4s (independent)", "throughput", _indep("fdiv v{r}.4s, v20.4s, v21.4s", 8),
        5.0, "SWOG 3.15 ASIMD FP divide, Q-form, F32: 1/5 per cycle (V0, V2)"),
    Row("fsqrt v.2d (independent)", "throughput", _indep("fsqrt v{r}.2d, v20.2d", 8), 7.5,
        "SWOG 3.15 ASIMD FP square root, Q-form, F64: 2/15 per cycle (V0, V2)",
        band=(0.75, 1.25)),
    Row("fcsel s (independent)", "throughput", _indep("fcsel s{r}, s20, s21, gt", 12), 1 / 4,
        "SWOG 3.13 FP select: 4/cycle"),
    # SVE (128-bit vectors on V2) and predicates
    Row("sve fmla z.s (independent)", "throughput",
        _indep("fmla z{r}.s, p0/m, z20.s, z21.s", 12), 1 / 4,
        "SWOG 3.25 SVE FP multiply-add: 4/cycle"),
    Row("sve ld1w z.s, [x, x, lsl #2]", "throughput",
        _indep("ld1w {{z{r}.s}}, p0/z, [x20, x21, lsl #2]", 12), 1 / 3,
        "SWOG 3.27 SVE contiguous load, scalar + scalar: 3/cycle"),
    Row("sve gather ld1w z.s, [x, z.s, uxtw #2]", "throughput",
        _indep("ld1w {{z{r}.s}}, p0/z, [x20, z20.s, uxtw #2]", 6), 2.0,
        "SWOG 3.27 SVE gather load, 32-bit scaled offset: 1/2 per cycle",
        band=(0.75, 1.6), note="the guide's gather figures are per 128-bit vector of 4 lanes"),
    Row("sve whilelo p.s (independent)", "throughput",
        _indep("whilelo p{r}.s, x20, x21", 6, 1), 1.0,
        "SWOG 3.24 SVE loop control, based on GPR: 1/cycle (M)"),
    Row("ldp q, q, [x, #imm]! (pre-index)", "throughput",
        tuple(f"ldp q{2 * i}, q{2 * i + 1}, [x{20 + i % 3}, #32]!" for i in range(6)), 2 / 3,
        "SWOG 3.11 Load vector pair, immed pre-index, Q-form: 3/2 per cycle"),
    # branches
    Row("cbnz not taken (independent)", "throughput", _indep("cbnz x{r}, .+8", 8, 1), 1 / 2,
        "SWOG 3.3 Branch, immed / compare and branch: 2/cycle (B0, B1)"),
)


def cost_lines(body: tuple[str, ...]) -> list[str]:
    """The body as the cost layer hands it to llvm-mca (mca.mca_lines: its adjustments)."""
    return mca.mca_lines([Insn(4 * i, 0, *normalise(t)) for i, t in enumerate(body)])


def _per_iteration(mca_path: str, body: tuple[str, ...], k: int = 100) -> Fraction:
    """llvm-mca's steady-state cycles per iteration of `body` as the gate prices it:
    (C(2k) - C(k)) / k."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "row.s")
        src.write_text("\n".join(cost_lines(body)) + "\n")
        for n in (k, 2 * k):
            out = subprocess.run([mca_path, *mca.MCA_FLAGS, f"-iterations={n}", "-json",
                                  str(src)], capture_output=True, text=True, timeout=120,
                                 check=True, env={**os.environ, "LC_ALL": "C"})
            totals.append(int(json.loads(out.stdout)["CodeRegions"][0]["SummaryView"]
                              ["TotalCycles"]))
    return Fraction(totals[1] - totals[0], k)


def predict(row: Row, mca_path: str) -> float:
    """The model's cycles per instance of the row's instruction."""
    return float(_per_iteration(mca_path, row.body) / len(row.body))


def table(mca_path: str) -> list[dict[str, object]]:
    out = []
    for row in ROWS:
        got = predict(row, mca_path)
        ratio = got / row.published
        out.append({"name": row.name, "kind": row.kind, "published": round(row.published, 3),
                    "model": round(got, 3), "ratio": round(ratio, 3),
                    "band": list(row.band), "inside": row.band[0] <= ratio <= row.band[1],
                    "source": row.source, "note": row.note})
    return out


def markdown(rows: list[dict[str, object]], others: dict[str, list[dict[str, object]]]) -> str:
    """The table as docs/cost-model.md carries it; `others` adds a model column per extra
    llvm-mca."""
    extra = "".join(f" {name} |" for name in others)
    lines = [f"| micro-kernel | figure | published V2 (cycles) | model |{extra} band | source |",
             "| --- | --- | --- | --- |" + " --- |" * len(others) + " --- | --- |"]
    for i, r in enumerate(rows):
        cells = "".join(f" {o[i]['model']} |" for o in others.values())
        mark = "" if r["inside"] else " **outside**"
        band = r["band"]
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| `{r['name']}` | {r['kind']} | {r['published']} | {r['model']}{mark} |"
                     f"{cells} {band[0]}-{band[1]} | {r['source']}{note} |")  # type: ignore[index]
    return "\n".join(lines)
