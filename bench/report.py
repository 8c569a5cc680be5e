"""The suite's results.json (written after every part, a crashed part marked with its error), its
final table (absolute figures, ratios, targets met or not) and its plot. `python -m bench.report
[results.json]` prints the table and redraws the plot of a saved run."""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# §8 of the brief, with issue 15's stricter thresholds where it sets them (the issue wins):
# (key in the ratios, comparison, threshold, what it means)
TARGETS: dict[str, tuple[str, float, str]] = {
    "launches_per_verification": ("<=", 2.5, "at most 2.5 tool launches per fresh verification"),
    "farm_over_floor": (">=", 0.85, "farm >= 85% of the 2-lane sandboxed floor"),
    "farm_over_original": (">=", 75.0, "farm >= 75x the original's design"),
    "core_2w_over_1w": (">=", 1.8, "2 workers >= 1.8x one (tool runs one after another)"),
    "step_over_floor": ("<=", 1.3, "/step <= 1.3x its floor (median)"),
    "duplicate_speedup_step": (">=", 50.0, "duplicate /step >= 50x faster than fresh (median)"),
    "duplicate_speedup_core": (">=", 50.0, "duplicate verify() >= 50x faster than fresh"),
    "duplicate_speedup_batch": (">=", 50.0, "resubmitted batch >= 50x faster per attempt"),
    # issue 15's memory parts (MiB and fractions, judged like the ratios)
    "soak_rss_max_mib": ("<=", 400.0, "every worker process under 400 MiB over the soak"),
    "soak_growth_max": ("<=", 0.10, "RSS flat within 10% after warm-up, every process"),
    "soak_leftovers": ("<=", 0.0, "no file in the scratch, no process beyond the pool and its "
                       "bounded reference servers, no server once the worker stopped"),
    "load_api_rss_mib": ("<=", 300.0, "API under 300 MiB with the clients waiting"),
}


def save(results: dict[str, Any], out: Path) -> None:
    """results.json as it stands, written whole to a temporary name and renamed over the old one
    (a kill while writing leaves the previous parts' file, not a torn one)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.part"
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out / "results.json")


@contextmanager
def part(results: dict[str, Any], name: str, out: Path) -> Iterator[None]:
    """One part of the suite: an exception in it is recorded under results["crashed"][name]
    (the report shows it) instead of ending the run, and results.json is written after it."""
    try:
        yield
    except Exception as exc:  # any failure of a part is reported, not raised
        results.setdefault("crashed", {})[name] = f"{type(exc).__name__}: {exc}"
        print(f"{name}: CRASHED: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc()
    finally:
        save(results, out)


def farm_lanes(farm: dict[str, Any], floor: dict[str, Any]) -> int:
    """The floor's lanes the farm is judged against: as many as its pool processes, where the
    floor was replayed so (results of earlier runs have 2 lanes only)."""
    lanes = int(farm.get("concurrency", 2))
    return lanes if f"sandboxed_{lanes}" in floor and f"bare_{lanes}" in floor else 2


def floor_keys(floor: dict[str, Any]) -> list[str]:
    """The floor's replays, sandboxed first, each by lanes."""
    found = [k for k in floor if k.startswith(("sandboxed_", "bare_"))
             and k.split("_")[1].isdigit()]
    return sorted(found, key=lambda k: (not k.startswith("sandboxed"), int(k.split("_")[1])))


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Every ratio the parts that ran allow."""
    out: dict[str, float] = {}
    floor, core, farm = results.get("floor"), results.get("core"), results.get("farm")
    orig = results.get("original")
    if floor and "launches" in floor:
        out["launches_per_verification"] = floor["launches"] / results["n"]
    if farm and floor:
        lanes = farm_lanes(farm, floor)
        out["farm_over_floor"] = farm["per_s"] / floor[f"sandboxed_{lanes}"]["per_s"]
        out["farm_over_bare_floor"] = farm["per_s"] / floor[f"bare_{lanes}"]["per_s"]
        out["farm_over_floor_2_lanes"] = farm["per_s"] / floor["sandboxed_2"]["per_s"]
    if core:
        out["core_2w_over_1w"] = core.get("ratio_2w_1w_sequential", core["ratio_2w_1w"])
        out["core_2w_over_1w_overlapped"] = core["ratio_2w_1w"]
    if core and floor:
        out["core_2w_over_floor"] = core["two"]["per_s"] / floor["sandboxed_2"]["per_s"]
    if orig:
        if farm:
            out["farm_over_original"] = farm["per_s"] / orig["per_s"]
        if "core_subset_mean_s" in orig:
            out["original_over_core_1w_subset"] = orig["mean_s"] / orig["core_subset_mean_s"]
    if "step" in results:
        out["step_over_floor"] = results["step"]["median_ratio"]
    if "duplicates" in results:
        out["duplicate_speedup_core"] = results["duplicates"]["core"]["median_ratio"]
        out["duplicate_speedup_step"] = results["duplicates"]["step"]["median_ratio"]
        if "batch" in results["duplicates"]:
            out["duplicate_speedup_batch"] = results["duplicates"]["batch"]["ratio"]
    if soak := results.get("soak"):
        out["soak_rss_max_mib"] = soak["rss_max_mib"]
        out["soak_growth_max"] = max(abs(g) for g in soak["growth_after_warmup"].values())
        left = soak["leftovers"]
        out["soak_leftovers"] = (len(left["scratch_entries"]) + len(left["extra_processes"])
                                 + len(left.get("reference_servers_over_bound", []))
                                 + len(left.get("servers_after_stop", [])))
    if load := results.get("load"):
        out["load_api_rss_mib"] = load["waiting"]["api_rss_mib_max"]
    return out


def verdicts(found: dict[str, float]) -> dict[str, bool]:
    return {k: (found[k] >= t if op == ">=" else found[k] <= t)
            for k, (op, t, _) in TARGETS.items() if k in found}


def _mark(found: dict[str, float], key: str) -> str:
    if key not in found or key not in TARGETS:
        return ""
    op, threshold, _ = TARGETS[key]
    ok = verdicts(found)[key]
    return f"[{'met' if ok else 'NOT met'}: {op} {threshold:g}]"


def table(results: dict[str, Any]) -> str:
    """The final table as text."""
    r = ratios(results)
    lines = [f"ARM-Gym benchmark suite: n={results['n']} ({results['composition']}), "
             f"{results['cpus']} CPUs, {results['elapsed_s'] / 60:.1f} min"]
    if code := results.get("code"):
        same = code["start"] == code["end"] and "uncommitted" not in code["start"]
        lines.append(f"  code: {code['start']}" + ("" if same else
                     f" -> {code['end']}: the core changed or was dirty during the run; "
                     "ratios may compare different code"))

    def row(label: str, figure: str, ratio: str = "") -> None:
        lines.append(f"  {label:34} {figure:34} {ratio}")

    for name, error in results.get("crashed", {}).items():
        row(f"{name}: CRASHED", error[:200], "(its figures are missing or partial)")

    if floor := results.get("floor"):
        for key in floor_keys(floor):
            f = floor[key]
            kind, lanes = key.split("_")
            label = (f"floor, {'sandboxed' if kind == 'sandboxed' else 'bare (no bwrap)'}, "
                     f"{lanes} lane{'s' if lanes != '1' else ''}")
            row(label, f"{f['per_s']:7.2f} verif/s  ({1000 / f['per_s']:.0f} ms each)")
        row("  tool launches per verification", f"{r['launches_per_verification']:.2f}",
            f"{floor['launches_by_tool']} {_mark(r, 'launches_per_verification')}")
        if paths := floor.get("reference_paths"):
            row("  C reference runs, by path", f"{paths.get('served', 0)} served",
                str(dict(sorted(paths.items()))))
    if scopes := results.get("scopes"):
        a, g = scopes["attempt"], scopes["group"]
        row("tool launches per verification,",
            f"per-attempt seeds {a['per_verification']:.2f}",
            str(a["by_tool"]))
        row(f"  group seeds ({scopes['groups']} groups, "
            f"mean {scopes['mean_group']:.1f})", f"{g['per_verification']:.2f}",
            f"group/attempt = {scopes['launch_ratio']:.3f}x {g['by_tool']}")
        row("  CPU per verification (mean)",
            f"{a['cpu_s'] / results['n'] * 1000:.0f} ms vs "
            f"{g['cpu_s'] / results['n'] * 1000:.0f} ms",
            f"group/attempt = {scopes['cpu_ratio']:.3f}x (medians {a['cpu_median_s'] * 1000:.0f}"
            f" / {g['cpu_median_s'] * 1000:.0f} ms)")
    if core := results.get("core"):
        row("core, 1 worker / 2 workers",
            f"{core['one']['per_s']:7.2f} / {core['two']['per_s']:.2f} verif/s",
            f"2w/1w = {r['core_2w_over_1w_overlapped']:.2f}x (tool runs overlapped)")
        if "one_sequential" in core:
            row("  the same, tool runs in sequence",
                f"{core['one_sequential']['per_s']:7.2f} / "
                f"{core['two_sequential']['per_s']:.2f} verif/s",
                f"2w/1w = {r['core_2w_over_1w']:.2f}x {_mark(r, 'core_2w_over_1w')}")
        if "core_2w_over_floor" in r:
            row("  core 2 workers / floor (2 lanes)", f"{r['core_2w_over_floor'] * 100:.0f}%")
    if farm := results.get("farm"):
        eff = (f"farm/floor = {r['farm_over_floor'] * 100:.0f}% {_mark(r, 'farm_over_floor')}"
               f" ({farm_lanes(farm, floor)} lanes), vs bare floor "
               f"{r['farm_over_bare_floor'] * 100:.0f}%, vs 2 lanes "
               f"{r['farm_over_floor_2_lanes'] * 100:.0f}%"
               if floor and "farm_over_floor" in r else "")
        row(f"farm, {farm.get('concurrency', 2)} pool processes",
            f"{farm['per_s']:7.2f} verif/s", eff)
        if len(farm.get("passes_per_s", [])) > 1:
            row("  median of passes", " / ".join(f"{x:.2f}" for x in farm["passes_per_s"]),
                f"outcomes the same every pass: {farm.get('outcomes_same_every_pass')}")
        row("  outcomes", str(farm["outcome_counts"]),
            f"same as core: {results.get('farm_matches_core', 'n/a')}")
        if farm.get("reference_paths_per_pass"):
            row("  C reference runs, last pass", "", str(farm["reference_paths_per_pass"][-1]))
        row("  RSS MiB: worker main / pools / API",
            f"{farm['worker_main_rss_mib'].get('max')} / "
            f"{[p.get('max') for p in farm['pool_process_rss_mib']]} / "
            f"{farm['api_rss_mib'].get('max')}")
    if orig := results.get("original"):
        text = (f"farm/original = {r['farm_over_original']:.1f}x "
                f"{_mark(r, 'farm_over_original')}" if "farm_over_original" in r else "")
        row(f"original design (first {orig['n']})",
            f"{orig['per_s']:7.2f} verif/s  ({orig['mean_s'] * 1000:.0f} ms each)", text)
        if "original_over_core_1w_subset" in r:
            row("  same subset, mean time per verif",
                f"original {orig['mean_s'] * 1000:.0f} ms, core 1w "
                f"{orig['core_subset_mean_s'] * 1000:.0f} ms",
                f"original/core = {r['original_over_core_1w_subset']:.1f}x")
        row("  outcomes equal the core's", str(orig.get("matches_core", "n/a")))
    if step := results.get("step"):
        row(f"/step p50 vs floor ({step['n']} items)",
            f"{step['median_step_s'] * 1000:.0f} ms vs {step['median_floor_s'] * 1000:.0f} ms",
            f"median ratio = {r['step_over_floor']:.2f}x {_mark(r, 'step_over_floor')}")
    if dup := results.get("duplicates"):
        row("duplicate vs fresh: verify()",
            f"x{r['duplicate_speedup_core']:.1f} (median of {len(dup['core']['rows'])})",
            _mark(r, "duplicate_speedup_core"))
        row("duplicate vs fresh: /step",
            f"x{r['duplicate_speedup_step']:.1f} (median of {len(dup['step']['rows'])})",
            _mark(r, "duplicate_speedup_step"))
        if "median_ratio_httpx" in dup["step"]:  # results written before it was measured
            step_dup = dup["step"]
            row("  the duplicate through httpx",
                f"x{step_dup['median_ratio_httpx']:.1f}",
                f"{step_dup['median_duplicate_s'] * 1000:.2f} ms with http.client, "
                f"{step_dup['median_duplicate_httpx_s'] * 1000:.2f} ms with httpx")
        if batch := dup.get("batch"):
            row(f"duplicate vs fresh: /batches of {batch['n']}",
                f"x{r['duplicate_speedup_batch']:.1f} "
                f"({batch['fresh_per_attempt_s'] * 1000:.1f} vs "
                f"{batch['duplicate_per_attempt_s'] * 1000:.2f} ms per attempt)",
                _mark(r, "duplicate_speedup_batch"))
    if soak := results.get("soak"):
        first, last = soak["samples"][0], soak["samples"][-1]
        row(f"soak: n={soak['n']} ({soak['variants']} variants, batches of {soak['batch']})",
            f"{soak['verifications_per_s']} verif/s", str(soak["outcomes"]))
        row("  RSS MiB: main / pools, first->last",
            f"{first['main']}->{last['main']} / {first['pools']}->{last['pools']}",
            f"max {r['soak_rss_max_mib']} a process {_mark(r, 'soak_rss_max_mib')}, "
            f"worker in all {soak['worker_total_max_mib']}")
        row("  growth after warm-up", str(soak["growth_after_warmup"]),
            _mark(r, "soak_growth_max"))
        row("  left behind", f"{soak['leftovers']['scratch_entries']} files, "
            f"{soak['leftovers']['extra_processes']} processes, "
            f"{soak['leftovers'].get('servers_after_stop', [])} servers after the stop",
            _mark(r, "soak_leftovers"))
    if load := results.get("load"):
        w = load["waiting"]
        row(f"load: {w['clients']} clients waiting {w['seconds']:g} s",
            f"API RSS {w['api_rss_mib_first']} -> {w['api_rss_mib_max']} MiB at most",
            _mark(r, "load_api_rss_mib"))
        row("  open at once / /health p50, p99",
            f"{w['waiting_min']}-{w['waiting_max']} / {w['health_p50_ms']}, "
            f"{w['health_p99_ms']} ms", f"errors {w['errors']}")
        if over := load.get("overload"):
            row("  overload: answers", str(over["answers"]),
                f"429s with Retry-After: {over['all_429_with_retry_after']}")
    if br := results.get("breakdown"):
        lines.append("  per gate (core, 1 worker):      reached  mean ms  median ms  share")
        for name, g in br["gates"].items():
            lines.append(f"    {name:28} {g['count']:9} {g['mean_s'] * 1000:8.1f} "
                         f"{g['median_s'] * 1000:10.1f} {g['share'] * 100:5.1f}%")
        lines.append(f"    {'(outside the gates)':28} {'':9} {'':8} {'':10} "
                     f"{br['outside_gates_share'] * 100:5.1f}%")
    if floor:
        share = floor["recorded_tool_s"] / floor["recorded_wall_s"]
        row("time in tool launches / in Python", f"{share * 100:.0f}% / {(1 - share) * 100:.0f}%",
            "(recording pass, launch wall incl. sandbox set-up)")
    if (prof := results.get("profile")) and "self" in prof:
        lines.append(f"  py-spy over {prof['count']} verifications ({prof['samples']} on-CPU "
                     "samples at 100 Hz), top self time:")
        for name, share in list(prof["self"].items())[:10]:
            lines.append(f"    {share * 100:5.1f}%  {name}")
    elif prof:
        lines.append(f"  profile: {prof['skipped']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughputs, /step latencies against their floors, the per-gate means, and the soak's
    RSS per worker process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(24, 5.5))
    bars: list[tuple[str, float]] = []
    if floor := results.get("floor"):
        bars += [(f"floor {k.replace('_', ' ')} lane(s)", floor[k]["per_s"])
                 for k in floor_keys(floor)]
    if core := results.get("core"):
        bars += [("core 1 worker", core["one"]["per_s"]), ("core 2 workers", core["two"]["per_s"])]
        if "one_sequential" in core:
            bars += [("core 1 worker, in sequence", core["one_sequential"]["per_s"]),
                     ("core 2 workers, in sequence", core["two_sequential"]["per_s"])]
    if farm := results.get("farm"):
        bars.append((f"farm, {farm.get('concurrency', 2)} pool processes", farm["per_s"]))
    if orig := results.get("original"):
        bars.append((f"original design (first {orig['n']})", orig["per_s"]))
    ax = axes[0]
    ax.barh([b[0] for b in bars][::-1], [b[1] for b in bars][::-1], color="tab:blue")
    ax.set_xlabel("verifications / s")
    ax.set_title(f"throughput (n={results['n']}, {results['cpus']} CPUs)")
    ax = axes[1]
    if step := results.get("step"):
        rows = step["rows"]
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["floor_s"] * 1000 for r in rows], 0.4, label="floor")
        ax.bar([x + 0.2 for x in xs], [r["step_s"] * 1000 for r in rows], 0.4, label="/step")
        ax.set_xticks(list(xs), [r["variant_id"] for r in rows], rotation=90, fontsize=7)
        ax.set_ylabel("ms")
        ax.legend()
        ax.set_title(f"/step vs its floor (median ratio {step['median_ratio']:.2f}x)")
    ax = axes[2]
    if br := results.get("breakdown"):
        names = list(br["gates"])
        xs = range(len(names))
        for shift, stat in ((-0.2, "mean_s"), (0.2, "median_s")):
            ax.bar([x + shift for x in xs], [br["gates"][n][stat] * 1000 for n in names], 0.4,
                   label=stat.removesuffix("_s"))
        ax.set_xticks(list(xs), names, rotation=45)
        ax.set_ylabel("ms (over verifications reaching the gate)")
        ax.legend()
        ax.set_title("per-gate time, core 1 worker")
    ax = axes[3]
    if soak := results.get("soak"):
        done = [s["done"] for s in soak["samples"]]
        ax.plot(done, [s["main"] for s in soak["samples"]], marker="o", label="worker main")
        for i in range(len(soak["samples"][0]["pools"])):
            ax.plot(done, [s["pools"][i] if i < len(s["pools"]) else None
                           for s in soak["samples"]], marker="o", label=f"pool process {i + 1}")
        ax.axhline(400, color="tab:red", linestyle="--", label="400 MiB")
        ax.set_ylim(0, 450)
        ax.set_xlabel("verifications done")
        ax.set_ylabel("RSS MiB")
        ax.legend()
        ax.set_title(f"soak: RSS per worker process (n={soak['n']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """The table of a saved run (judged by today's targets) and its plot, redrawn beside it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", nargs="?", type=Path, default=Path("bench/results/results.json"))
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    print(table(results))
    plot(results, args.results.with_name("results.png"))


if __name__ == "__main__":
    main()
