"""Plot the cross-check's bands with the honest points they were calibrated on (and the held-out
ones they judge): `python -m bench.calibration_plot [--out docs/cross-check-bands.png]`.

Reads calibration.json and calibration-points.json (written by `armgym calibrate`); measures
nothing. One column per band that judges a point (a template's kind of work, or a variant's
own band where its template's honest code of that kind spreads wider than 4x), OSACA / llvm-mca
on a log scale, the global band dashed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure

from toolchain import kernels
from toolchain.gates.performance import calibrate, crosscheck

STYLE = {  # (source is hand-written, held out) -> marker, colour, label
    (False, False): ("o", "#7f7f7f", "compiler output (calibration)"),
    (True, False): ("D", "#1f77b4", "hand-written (calibration)"),
    (False, True): ("x", "#d62728", "compiler output, odd shapes (held out)"),
    (True, True): ("P", "#ff7f0e", "hand-written (held out)"),
}


def judged_by(p: calibrate.Point, classes: dict[str, object]) -> str:
    """The class whose band judges the point (crosscheck.Bands.of's order)."""
    template = kernels.get(p.variant).template
    for key in (crosscheck.class_key(p.variant, p.kind), crosscheck.class_key(template, p.kind),
                crosscheck.class_key(template, "*")):
        if key in classes:
            return key
    return "global"


def draw(out: Path) -> None:
    data = json.loads(crosscheck.CALIBRATION.read_text())
    band = data["band"]
    points, held = calibrate.read_points()
    columns: dict[str, list[tuple[calibrate.Point, bool]]] = {}
    for p, is_held in [(p, False) for p in points] + [(p, True) for p in held]:
        columns.setdefault(judged_by(p, band["classes"]), []).append((p, is_held))
    names = sorted(columns)
    fig = Figure(figsize=(max(12.0, 0.17 * len(names)), 6.5), layout="constrained")
    ax = fig.add_subplot()
    for x, name in enumerate(names):
        lo, hi = band["classes"][name]["ratio"] if name in band["classes"] else band["ratio"]
        ax.vlines(x, lo, hi, color="#2ca02c", linewidth=4, alpha=0.35)
    seen = set()
    for x, name in enumerate(names):
        for p, is_held in columns[name]:
            style = (p.source == calibrate.HAND, is_held)
            marker, colour, label = STYLE[style]
            ax.scatter([x], [p.ratio], marker=marker, color=colour, s=14 if style[0] else 8,
                       linewidths=0.8, label=None if style in seen else label, zorder=3)
            seen.add(style)
    for y in band["ratio"]:
        ax.axhline(y, color="black", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
    ax.set_xlim(-1, len(names))
    ax.set_ylabel("OSACA / llvm-mca cycles")
    fp, held_fp = data["false_positives"], data["held_out"]["false_positives"]
    cv = data["cross_validated"]
    ax.set_title(f"Cross-check bands (green, each at most {data['max_width']:g}x unless reported "
                 f"too wide; dashed: global band {band['ratio'][0]}-{band['ratio'][1]}); "
                 f"flagged: {fp['count']}/{fp['of']} calibration points, "
                 f"{held_fp['count']}/{held_fp['of']} held out, {cv['count']}/{cv['of']} "
                 f"compiler points by bands calibrated without them ({cv['folds']}-fold)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(out, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/cross-check-bands.png"))
    draw(parser.parse_args().out)


if __name__ == "__main__":
    main()
