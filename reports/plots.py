"""The three plots of a run, drawn with matplotlib's object API (no pyplot state, no display):
the learning curve, the outcome mix over steps, and the speedup distribution per template."""

from __future__ import annotations

import math
from pathlib import Path

import numpy
from matplotlib.figure import Figure

from .data import RunHistory

DPI = 110
PASS_COLOUR = "#2e7d32"
# Outcomes in a stable order with fixed colours, so they mean the same in every report: the
# model's failures from "almost there" to "not even the format", then the farm's own failure
# (grey). Greens are kept for passing.
OUTCOME_COLOURS = {
    "pass": PASS_COLOUR, "cross_check_disagreement": "#17becf", "wrong_output": "#d62728",
    "abi_violation": "#ff7f0e", "memory_violation": "#ff9896", "input_modified": "#ffbb78",
    "timeout": "#9467bd", "crash": "#8c564b", "link_error": "#c49c94",
    "object_rejected": "#c5b0d5", "assemble_error": "#1f77b4", "forbidden_directive": "#e377c2",
    "input_rejected": "#bcbd22", "unknown_variant": "#dbdb8d", "format_error": "#aec7e8",
    "infra_error": "#7f7f7f",
}


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def learning_curve(history: RunHistory, path: Path) -> Path:
    """Correctness rate, mean reward and best speedup per step (view run_step_summary)."""
    steps = [s["step"] for s in history.steps]
    fig = Figure(figsize=(8, 7.5), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    series = (("correctness_rate", "correctness rate", "#1565c0"),
              ("mean_reward", "mean reward", "#6a1b9a"),
              ("best_speedup", "best speedup (x)", PASS_COLOUR))
    for ax, (column, label, colour) in zip(axes, series, strict=True):
        ax.plot(steps, [_nan(s[column]) for s in history.steps], marker="o", markersize=3,
                color=colour, label="per step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1)
    # The best kernel found up to each step: what the run has earned so far (fmax skips NaN).
    so_far = numpy.fmax.accumulate([_nan(s["best_speedup"]) for s in history.steps])
    axes[2].step(steps, so_far, where="post", color=PASS_COLOUR, alpha=0.5, linestyle=":",
                 label="best so far")
    axes[2].axhline(1.0, color="grey", linestyle="--", linewidth=1, label="compiler parity")
    axes[2].legend(loc="lower right", fontsize="small")
    axes[2].set_xlabel("step")
    fig.suptitle(f"run {history.run_id}: learning curve (infra errors excluded)")
    fig.savefig(path, dpi=DPI)
    return path


def error_mix(history: RunHistory, path: Path) -> Path:
    """Share of each outcome (pass or error kind) per step, stacked (view
    error_kind_histogram)."""
    steps = sorted(history.step_outcomes)
    seen = {o for mix in history.step_outcomes.values() for o in mix}
    outcomes = [o for o in OUTCOME_COLOURS if o in seen] + sorted(seen - set(OUTCOME_COLOURS))
    totals = [sum(history.step_outcomes[s].values()) or 1 for s in steps]
    shares = [[history.step_outcomes[s].get(o, 0) / t for s, t in zip(steps, totals,
                                                                      strict=True)]
              for o in outcomes]
    colours = [OUTCOME_COLOURS.get(o, "#000000") for o in outcomes]
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    if len(steps) > 1:
        ax.stackplot(steps, shares, labels=outcomes, colors=colours, alpha=0.9)
    else:
        bottom = 0.0
        for share, label, colour in zip(shares, outcomes, colours, strict=True):
            ax.bar(steps, share, bottom=bottom, label=label, color=colour)
            bottom += share[0]
    ax.set_ylim(0, 1)
    ax.set_xlabel("step")
    ax.set_ylabel("share of attempts")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    ax.set_title(f"run {history.run_id}: outcomes per step")
    fig.savefig(path, dpi=DPI)
    return path


def speedup_by_template(history: RunHistory, path: Path) -> Path:
    """Distribution of speedups over the faster compiler, per template, of verified attempts."""
    ordered = sorted(history.speedups.items(), key=lambda kv: sorted(kv[1])[len(kv[1]) // 2])
    fig = Figure(figsize=(9, max(3.0, 0.45 * len(ordered) + 1.5)), layout="constrained")
    ax = fig.subplots()
    if ordered:
        ax.boxplot([v for _, v in ordered], orientation="horizontal", widths=0.6,
                   tick_labels=[f"{t} ({len(v)})" for t, v in ordered], showfliers=False)
        for row, (_, values) in enumerate(ordered, start=1):  # every attempt, spread a little
            offsets = [((i * 7919) % 41 - 20) / 100 for i in range(len(values))]
            ax.scatter(values, [row + o for o in offsets], s=9, alpha=0.5, color=PASS_COLOUR,
                       zorder=3)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="compiler parity")
        ax.legend(loc="lower right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no verified attempt with a measured speedup", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("speedup over the faster of clang -O3 and gcc -O3 (x)")
    ax.set_title(f"run {history.run_id}: speedup of verified attempts per template")
    fig.savefig(path, dpi=DPI)
    return path


PLOTS = {"learning_curve.png": learning_curve, "error_mix.png": error_mix,
         "speedup_by_template.png": speedup_by_template}


def draw_all(history: RunHistory, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [draw(history, out / name) for name, draw in PLOTS.items()]
