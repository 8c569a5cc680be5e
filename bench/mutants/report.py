"""Figures of a mutation run: kill rates per template, dtype and class, the equivalent mutants
the gate rejected, the survivors; as JSON, a table, a plot and a survivors' digest."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .run import INFRA, Mutant

TARGET_OVERALL, TARGET_TEMPLATE = 0.995, 0.98


def rates(mutants: list[Mutant], key: str) -> dict[str, dict[str, Any]]:
    """Per value of `key`: non-equivalent mutants, how many the gate killed, the rate."""
    table: dict[str, dict[str, Any]] = defaultdict(lambda: {"non_equivalent": 0, "killed": 0,
                                                            "equivalent": 0})
    for m in mutants:
        if m.verdict == INFRA:
            continue
        row = table[str(getattr(m, key))]
        if m.equivalent:
            row["equivalent"] += 1
        else:
            row["non_equivalent"] += 1
            row["killed"] += m.killed
    for row in table.values():
        n = row["non_equivalent"]
        row["kill_rate"] = row["killed"] / n if n else None
    return dict(sorted(table.items()))


def summary(result: dict[str, Any]) -> dict[str, Any]:
    mutants: list[Mutant] = result["mutants"]
    scored = [m for m in mutants if m.verdict != INFRA]
    non_eq = [m for m in scored if not m.equivalent]
    killed = sum(m.killed for m in non_eq)
    per_template = rates(mutants, "template")
    worst = min((r["kill_rate"] for r in per_template.values() if r["kill_rate"] is not None),
                default=None)
    rejected_eq = [m for m in scored if m.equivalent and m.verdict != "pass"]
    overall = killed / len(non_eq) if non_eq else None
    return {
        "mutants": len(mutants),
        "infra_errors": len(mutants) - len(scored),
        "equivalent": len(scored) - len(non_eq),
        "non_equivalent": len(non_eq),
        "killed": killed,
        "kill_rate": overall,
        "worst_template_rate": worst,
        "equivalent_by_split": sum(m.equivalent and m.by_split > 0 for m in scored),
        "equivalent_rejected": len(rejected_eq),
        "equivalent_rejected_for_output": sum(m.verdict == "wrong_output" for m in rejected_eq),
        # A mutant the gate could not judge is a hole in the measurement, not a kill or a
        # survivor: one is enough to withhold the verdict (a missing tool once gave 3759).
        "targets_met": bool(len(scored) == len(mutants)
                            and overall is not None and overall >= TARGET_OVERALL
                            and worst is not None and worst >= TARGET_TEMPLATE
                            and not any(m.verdict == "wrong_output" for m in rejected_eq)),
        "per_template": per_template,
        "per_dtype": rates(mutants, "dtype"),
        "per_class": rates(mutants, "cls"),
        "per_compiler": rates(mutants, "compiler"),
        "oracle_reasons": _count(m.oracle_reason.split(" on ")[0] for m in non_eq),
        "verdicts_of_non_equivalent": _count(m.verdict for m in non_eq),
        "verdicts_of_equivalent": _count(m.verdict for m in scored if m.equivalent),
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in items:
        out[item] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def document(result: dict[str, Any]) -> dict[str, Any]:
    mutants: list[Mutant] = result["mutants"]
    doc = {k: v for k, v in result.items() if k != "mutants"}
    doc["summary"] = summary(result)
    doc["equivalent_rejected"] = [m.to_json() for m in mutants
                                  if m.equivalent and m.verdict not in ("pass", INFRA)]
    doc["survivors"] = [m.to_json(with_text=True) for m in mutants
                        if not m.equivalent and not m.killed and m.verdict != INFRA]
    doc["mutants"] = [m.to_json() for m in mutants]
    return doc


def write(doc: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    plot(doc["summary"], out / "kill_rate.png")
    (out / "survivors.txt").write_text(digest(doc))


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:6.2f}"


def table(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    lines = [f"{'template':20} {'non-eq':>6} {'killed':>6} {'rate %':>7} {'equiv':>6}"]
    for name, row in s["per_template"].items():
        lines.append(f"{name:20} {row['non_equivalent']:6d} {row['killed']:6d} "
                     f"{_pct(row['kill_rate']):>7} {row['equivalent']:6d}")
    lines.append("")
    lines.append(f"{'class':20} {'non-eq':>6} {'killed':>6} {'rate %':>7} {'equiv':>6}")
    for name, row in s["per_class"].items():
        lines.append(f"{name:20} {row['non_equivalent']:6d} {row['killed']:6d} "
                     f"{_pct(row['kill_rate']):>7} {row['equivalent']:6d}")
    lines.append("")
    lines.append(
        f"{s['mutants']} mutants ({doc['drawn']} drawn: {doc['not_assembling']} did not assemble, "
        f"{doc['identical_objects']} gave their baseline's object), {s['equivalent']} equivalent "
        f"({s.get('equivalent_by_split', 0)} by a partly contracted evaluation), "
        f"{s['non_equivalent']} not; killed {s['killed']} = {_pct(s['kill_rate']).strip()}% "
        f"(worst template {_pct(s['worst_template_rate']).strip()}%); equivalent rejected: "
        f"{s['equivalent_rejected']} ({s['equivalent_rejected_for_output']} for their output); "
        f"infra errors {s['infra_errors']}; {doc['seconds']['total']:.0f} s "
        f"(oracle {doc['seconds']['oracle']:.0f} s, gate {doc['seconds']['gate']:.0f} s)")
    incomplete = (f" (incomplete: {s['infra_errors']} mutants not judged, see their messages)"
                  if s["infra_errors"] else "")
    lines.append("targets (>= 99.5% overall, >= 98% per template, no equivalent rejected for "
                 f"its output, every mutant judged): "
                 f"{'MET' if s['targets_met'] else 'NOT MET'}{incomplete}")
    return "\n".join(lines)


def digest(doc: dict[str, Any]) -> str:
    """The survivors and the rejected equivalents, readable: what kind of wrong kernel passes."""
    out = ["# Non-equivalent mutants the gate accepted (survivors)", ""]
    for m in doc["survivors"]:
        d = m["deviation"]
        out.append(f"{m['id']}  [{m['cls']}] line {m['line']}: `{m['before']}` -> "
                   f"`{m['after'] if m['after'] is not None else '(deleted)'}`  ({m['what']})")
        detail = ""
        if d.get("tests_differing"):
            ulps = f", max {d['max_ulps']:.0f} ulps" if d.get("max_ulps") is not None else ""
            detail = (f"; differs from clang on {d['tests_differing']}/{d['of']} tests{ulps}, "
                      f"at {', '.join(d.get('positions', []))}")
        out.append(f"    oracle: {m['oracle_reason']}{detail}; gate: {m['verdict']}")
    out += ["", "# Equivalent mutants the gate rejected", ""]
    for m in doc["equivalent_rejected"]:
        out.append(f"{m['id']}  [{m['cls']}] `{m['before']}` -> `{m['after']}`: "
                   f"{m['verdict']}: {m['message'][:200]}")
    return "\n".join(out) + "\n"


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(16, 6), gridspec_kw={"width_ratios": [3, 1]})
    for axis, rows, title in ((ax, s["per_template"], "per template"),
                              (bx, s["per_class"], "per mutation class")):
        names = [n for n, r in rows.items() if r["kill_rate"] is not None]
        values = [100 * rows[n]["kill_rate"] for n in names]
        colours = ["tab:green" if v >= 100 * TARGET_TEMPLATE else "tab:red" for v in values]
        axis.bar(names, values, color=colours)
        for i, n in enumerate(names):
            axis.text(i, values[i] + 0.05, f"{rows[n]['killed']}/{rows[n]['non_equivalent']}",
                      ha="center", va="bottom", fontsize=7, rotation=90)
        axis.axhline(100 * TARGET_TEMPLATE, color="tab:red", linestyle="--", linewidth=1,
                     label="98% (per template)")
        axis.axhline(100 * TARGET_OVERALL, color="tab:blue", linestyle=":", linewidth=1,
                     label="99.5% (overall)")
        low = min([*values, 100 * TARGET_TEMPLATE])
        axis.set_ylim(max(0.0, low - 2), 100.9)
        axis.set_ylabel("non-equivalent mutants killed (%)")
        axis.set_title(f"Kill rate {title}")
        axis.tick_params(axis="x", rotation=70, labelsize=8)
    ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{s['mutants']} mutants, {s['non_equivalent']} non-equivalent: "
                 f"{_pct(s['kill_rate']).strip()}% killed; {s['equivalent_rejected']} of "
                 f"{s['equivalent']} equivalent rejected")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
