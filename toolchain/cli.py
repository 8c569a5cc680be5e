"""`armgym`: list and show tasks, verify assembly, build and check baselines, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from tqdm import tqdm

from . import baselines, kernels, tools, warm
from .errors import InfraError
from .prepare import prepare
from .settings import Settings, SettingsError, get_settings
from .verdict import DirectivesDetails, SyntaxDetails, Verdict
from .verify import verify


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    found = kernels.filter_variants(args.template, args.dtype, args.difficulty, args.split)
    if args.json:
        _print_json([v.to_json(with_source=False) for v in found])
        return 0
    for v in found:
        print(f"{v.id:40} {v.template:18} d{v.difficulty} {v.split}")
    print(f"{len(found)} variants", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    variant = _variant(args.variant)
    base = baselines.get(variant, args.compiler, args.opt, settings=settings)
    if args.json:
        _print_json({**variant.to_json(), "baseline": {"compiler": base.compiler, "opt": base.opt,
                     "toolchain": base.toolchain, "flags": list(base.flags),
                     "assembly": base.assembly}})
        return 0
    print(f"# {variant.id}  template={variant.template} difficulty={variant.difficulty} "
          f"split={variant.split}\n# {variant.signature.c_prototype()}\n")
    print(variant.c_source)
    print(f"# baseline: {base.toolchain} {' '.join(base.flags)}\n")
    print(base.assembly)
    return 0


def summary(verdict: Verdict) -> str:
    lines = [f"{verdict.variant_id}: {'PASS' if verdict.passed else 'FAIL'}"
             + ("" if verdict.passed else f" [{verdict.error_kind.value}]")
             + f"  seed={verdict.seed}", f"  {verdict.message}"]
    for gate in verdict.gates:
        mark = "ok " if gate.passed else "ERR"
        lines.append(f"  {mark} {gate.name:12} {gate.seconds * 1000:8.1f} ms  {gate.message}")
        details = gate.details
        errors = details.errors if isinstance(details, SyntaxDetails | DirectivesDetails) else None
        for err in (errors or [])[:5]:
            lines.append(f"        line {err.line}:{err.column}: {err.message}")
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    verdict = verify(args.variant, data, args.seed, completion=args.completion,
                     settings=settings)
    if args.json:
        _print_json(verdict.to_json())
    else:
        print(summary(verdict))
    return 0 if verdict.passed else 1


def _baseline_variants(args: argparse.Namespace) -> list[kernels.Variant]:
    """The variants `baselines build/check` and `calibrate` work on: --template, then
    --shapes."""
    variants = kernels.filter_variants(args.template)
    if args.shapes == "all":
        return variants
    return [v for v in variants if kernels.odd_shaped(v) == (args.shapes == "odd")]


def cmd_baselines_build(args: argparse.Namespace, settings: Settings) -> int:
    variants = _baseline_variants(args)
    start = time.perf_counter()
    stats = baselines.build(variants, args.compiler, args.opt, jobs=args.jobs,
                            settings=settings)
    print(f"{stats['built']} built, {stats['cached']} cached, {stats['total']} total in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _check_one(job: tuple[str, str, str, int], settings: Settings
               ) -> tuple[str, str, bool, str, dict[str, float]]:
    variant_id, compiler, opt, seed = job
    base = baselines.get(kernels.get(variant_id), compiler, opt, settings=settings)
    verdict = verify(variant_id, base.assembly, seed, settings=settings)
    kind = verdict.error_kind.value if verdict.error_kind else ""
    return variant_id, compiler, verdict.passed, f"{kind} {verdict.message}", verdict.timings


def cmd_baselines_check(args: argparse.Namespace, settings: Settings) -> int:
    """Every baseline through every gate: the suite's own proof that honest code passes."""
    variants = _baseline_variants(args)
    baselines.build(variants, args.compiler, [args.opt], jobs=args.jobs, settings=settings)
    jobs = [(v.id, c, args.opt, args.seed) for c in args.compiler for v in variants]
    start = time.perf_counter()
    failures, walls = [], []
    per_gate: dict[str, list[float]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for vid, comp, ok, msg, timings in tqdm(pool.map(partial(_check_one, settings=settings),
                                                          jobs, chunksize=4),
                                                 total=len(jobs), desc="verify", unit="kernel"):
            walls.append(sum(timings.values()))
            for gate, seconds in timings.items():
                per_gate.setdefault(gate, []).append(seconds)
            if not ok:
                failures.append(f"{comp:5} {vid}: {msg}")
    elapsed = time.perf_counter() - start
    for line in failures:
        print("FAIL", line)
    print(f"{len(jobs) - len(failures)}/{len(jobs)} baselines passed ({len(variants)} variants x "
          f"{len(args.compiler)} compilers) in {elapsed:.1f} s; median verification "
          f"{statistics.median(walls) * 1000:.0f} ms")
    print("median per gate: " + ", ".join(
        f"{gate} {statistics.median(values) * 1000:.1f} ms" for gate, values in per_gate.items()))
    return 1 if failures else 0


def calibrate_opts() -> tuple[str, ...]:
    return ("-O0", "-O1", "-O2", "-O3")


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    """Measure honest code and record the cross-check bands (calibration.json, and every point
    in calibration-points.json)."""
    from .gates.performance import calibrate, honest

    opts, extra = args.opt or ["-O3"], args.extra_opt or []
    command = "armgym calibrate" + (" --sample" if args.sample else "") + (
        f" --template {args.template}" if args.template else "") + (
        f" --shapes {args.shapes}" if args.shapes != "all" else "") + f" --margin {args.margin}" + (
        "".join(f" --opt={o}" for o in opts)) + "".join(f" --extra-opt={o}" for o in extra) + (
        f" --held-out-shapes {args.held_out_shapes}" if args.held_out_shapes else "")
    start = time.perf_counter()
    if args.judge:
        return _judge(args, opts, extra, settings)
    if args.from_points:
        points, held = calibrate.read_points()
        command += " --from-points"
        if args.remeasure or args.remeasure_longer is not None:
            points, again = calibrate.remeasured(points, args.remeasure, args.remeasure_longer,
                                                 args.jobs, settings=settings)
            held, again_held = calibrate.remeasured(held, args.remeasure, args.remeasure_longer,
                                                    args.jobs, settings=settings)
            command += (f" --remeasure '{args.remeasure}'" if args.remeasure else "") + (
                f" --remeasure-longer {args.remeasure_longer}"
                if args.remeasure_longer is not None else "")
            print(f"re-measured {again} of {len(points)} points and {again_held} of "
                  f"{len(held)} held out", file=sys.stderr)
    else:
        variants = _baseline_variants(args)
        if args.sample:
            variants = calibrate.sample(variants)
        jobs = calibrate.jobs_for(variants, opts, extra)
        held_jobs: list[tuple[str, str, str]] = []
        if args.held_out_shapes:
            others = [v for v in kernels.filter_variants(args.template)
                      if kernels.odd_shaped(v) == (args.held_out_shapes == "odd")]
            held_jobs = calibrate.jobs_for(calibrate.sample(others), [*opts, *extra])
        if args.from_cache:
            points = calibrate.cached_points(jobs, settings=settings)
            held = calibrate.cached_points(held_jobs, settings=settings)
            command += " --from-cache"
        else:
            points = calibrate.points_of(jobs, args.jobs, settings=settings)
            held = calibrate.points_of(held_jobs, args.jobs, settings=settings) \
                if held_jobs else []
        points += calibrate.hand_written(honest.calibration(), settings=settings)
        held += calibrate.hand_written(honest.held_out(), settings=settings)
    report = calibrate.report(points, held, args.margin, command,
                              "the recorded points" if args.from_points else
                              "what the cache held" if args.from_cache else
                              "one variant per template x dtype" if args.sample else "all",
                              [*opts, *extra])
    report["seconds"] = round(time.perf_counter() - start, 1)
    if not args.dry_run:
        calibrate.write(report, points, held)
    _print_json({k: report[k] for k in ("widths", "too_wide", "classes", "false_positives",
                                        "cross_validated", "held_out", "distribution",
                                        "population", "extremes")})
    return 0


def _judge(args: argparse.Namespace, opts: Sequence[str], extra: Sequence[str],
           settings: Settings) -> int:
    """Measure the chosen baselines and judge them by the recorded bands (calibration.json),
    writing nothing: honest code flagged is a false positive of the bands in force."""
    from .gates.performance import calibrate, crosscheck

    jobs = calibrate.jobs_for(_baseline_variants(args), opts, extra)
    start = time.perf_counter()
    points = calibrate.cached_points(jobs, settings=settings) if args.from_cache else \
        calibrate.points_of(jobs, args.jobs, settings=settings)
    band = json.loads(crosscheck.CALIBRATION.read_text())["band"]
    found = calibrate.flagged(points, band)
    _print_json({"jobs": len(jobs), "judged": len(points), "false_positives": len(found),
                 "which": found,
                 "by_opt": {o: len([p for p in points if p.detail == o]) for o in opts},
                 "seconds": round(time.perf_counter() - start, 1)})
    return 1 if found else 0


def cmd_faithfulness(args: argparse.Namespace, settings: Settings) -> int:
    """Brief §8 cost-model faithfulness: vec_add scaling and clang -O0 vs -O3."""
    from .gates.performance import calibrate

    rows = calibrate.scaling(settings)
    print("vec_add float32, clang -O3, executed-blocks model vs whole listing (100 iterations):")
    for row in rows:
        extra = (f"  x{row['ratio']:.3f} per doubling (whole listing x"
                 f"{row['whole_listing_ratio']:.3f})" if "ratio" in row else "")
        print(f"  {row['variant']:24} {row['cycles']:10.1f} cycles   whole listing "
              f"{row['whole_listing']:6d}{extra}")
    scaling_ok = all(1.7 <= r["ratio"] <= 2.3 for r in rows[1:])
    br = calibrate.branchy_vs_branchless(settings)
    print(f"relu float32 n=1024, random input: branchy {br['branchy']['cycles']:.1f} cycles "
          f"({br['branchy']['conditional_mispredicted']}/{br['branchy']['conditional']} "
          f"branches mispredicted), fcsel {br['fcsel']['cycles']:.1f}: x{br['ratio']:.2f} "
          f"(pipeline alone x{br['pipeline_ratio']:.2f}; the predictor's factor on the branchy "
          f"form x{br['predictor_factor']:.2f})")
    branch_ok = br["ratio"] >= 2 and br["pipeline_ratio"] < br["ratio"]
    variants = kernels.filter_variants(args.template)
    if args.sample:
        variants = variants[:: max(1, len(variants) // args.sample)][: args.sample]
    result = calibrate.o0_vs_o3(variants, args.jobs, settings=settings)
    print(f"clang -O0 estimated slower than -O3: {result['o0_slower']}/{result['variants']} "
          f"variants ({100 * result['share']:.1f}%)" + (" [sample]" if args.sample else ""))
    if result["exceptions"]:
        print("  not slower: " + ", ".join(result["exceptions"][:20]))
    ok = scaling_ok and branch_ok and result["share"] >= 0.95
    print("faithfulness: " + ("OK" if ok else "NOT MET"))
    return 0 if ok else 1


def cmd_fidelity(args: argparse.Namespace, settings: Settings) -> int:
    """The cost model against published Neoverse V2 figures (performance/fidelity.py)."""
    from .gates.performance import fidelity

    rows = fidelity.table(tools.tool("mca").path)
    others = {Path(p).name: fidelity.table(p) for p in args.mca or ()}
    if args.json:
        _print_json({"model": tools.tool("mca").version, "rows": rows, "others": others})
    else:
        print(fidelity.markdown(rows, others))
    outside = [r["name"] for r in rows if not r["inside"]]
    print(f"{len(rows) - len(outside)}/{len(rows)} rows inside their band"
          + (": outside " + ", ".join(map(str, outside)) if outside else ""), file=sys.stderr)
    return 1 if outside else 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import CASES

    print(f"{'submission':38} {'variant':24} {'verdict':18} {'expected':16} ms")
    mismatches = 0
    for case in CASES:
        verdict = verify(case.variant_id, case.make(settings), args.seed, settings=settings)
        got = "pass" if verdict.passed else verdict.error_kind.value  # type: ignore[union-attr]
        mismatches += got != case.expect
        ms = sum(verdict.timings.values()) * 1000
        print(f"{case.label:38} {case.variant_id:24} {got:18} {case.expect:16} {ms:6.0f}")
        if args.verbose:
            print(summary(verdict))
    print(f"{len(CASES) - mismatches}/{len(CASES)} verdicts as expected")
    return 1 if mismatches else 0


def _variant(variant_id: str) -> kernels.Variant:
    try:
        return kernels.get(variant_id)
    except KeyError as exc:
        raise SystemExit(str(exc.args[0])) from None


def cmd_prepare(args: argparse.Namespace, settings: Settings) -> int:
    try:
        done = prepare(settings.cache_dir)
    except InfraError as exc:
        print(f"execution guard: unavailable: {exc}", file=sys.stderr)
        return 1
    helper = done.spawn_helper or "unavailable (limits fall back to a Python preexec_fn)"
    print(f"spawn helper: {helper}\nexecution guard: {done.guard}")
    if not args.warm:
        return 0
    chosen = kernels.filter_variants(template=args.template)
    if args.variants:
        wanted = set(args.variants.split(","))
        chosen = [v for v in chosen if v.id in wanted]
    opts = tuple(args.opts.split(","))
    total = len(chosen) * len(baselines.COMPILERS) * len(opts)
    count = 0

    def progress(w: warm.Warmed) -> None:
        nonlocal count
        count += 1
        if w.error or count % 50 == 0 or count == total:
            print(f"warm {count}/{total}" + (f": {w.variant_id} {w.compiler} {w.opt}: "
                                             f"{w.error}" if w.error else ""), flush=True)

    results = warm.warm(chosen, settings, opts, args.jobs, progress)
    failed = sum(1 for w in results if w.error)
    print(f"warmed the caches from {len(results) - failed} of {len(results)} baselines")
    return 1 if results and failed == len(results) else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="armgym", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tasks", help="list variants")
    t.add_argument("--template")
    t.add_argument("--dtype")
    t.add_argument("--difficulty", type=int)
    t.add_argument("--split", choices=["train", "eval"])
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tasks)

    s = sub.add_parser("show", help="C source, signature and baseline assembly of a variant")
    s.add_argument("variant")
    s.add_argument("--compiler", default="clang", choices=baselines.COMPILERS)
    s.add_argument("--opt", default="-O3", choices=baselines.OPT_LEVELS)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    v = sub.add_parser("verify", help="verify an assembly file ('-' for stdin) against a variant")
    v.add_argument("variant")
    v.add_argument("file")
    v.add_argument("--seed", type=int,
                   help="per-attempt seed (derived from the content if omitted)")
    v.add_argument("--completion", action="store_true",
                   help="the file is a raw completion with <assembly> tags")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)

    b = sub.add_parser("baselines", help="build or check compiler baselines")
    bsub = b.add_subparsers(dest="action", required=True)
    for name, func in (("build", cmd_baselines_build), ("check", cmd_baselines_check)):
        x = bsub.add_parser(name)
        x.add_argument("--template")
        x.add_argument("--shapes", choices=["all", "pow2", "odd"], default="all",
                       help="only power-of-two shapes, or only odd ones (a side not a power of 2)")
        x.add_argument("--compiler", nargs="+", default=list(baselines.COMPILERS),
                       choices=baselines.COMPILERS)
        x.add_argument("--jobs", type=int, default=None)
        if name == "build":
            x.add_argument("--opt", nargs="+", default=["-O3"], choices=baselines.OPT_LEVELS)
        else:
            x.add_argument("--opt", default="-O3", choices=baselines.OPT_LEVELS)
            x.add_argument("--seed", type=int, default=1)
        x.set_defaults(func=func)

    c = sub.add_parser("calibrate", help="calibrate the cross-check band on compiler output")
    c.add_argument("--sample", action="store_true",
                   help="one variant per template x dtype instead of all variants")
    c.add_argument("--template")
    c.add_argument("--shapes", choices=["all", "pow2", "odd"], default="all")
    c.add_argument("--margin", type=float, default=0.15)
    c.add_argument("--opt", action="append", choices=calibrate_opts(),
                   help="levels to measure every variant at (repeatable; default -O3)")
    c.add_argument("--extra-opt", action="append", choices=calibrate_opts(),
                   help="levels to measure one variant per template x dtype at (repeatable)")
    c.add_argument("--held-out-shapes", choices=["pow2", "odd"],
                   help="judge one variant per template x dtype of these shapes, at every "
                        "level, without calibrating on them")
    c.add_argument("--jobs", type=int, default=None)
    c.add_argument("--dry-run", action="store_true", help="print, do not write calibration.json")
    c.add_argument("--from-cache", action="store_true",
                   help="bands from the measurements already cached (an interrupted run's)")
    c.add_argument("--judge", action="store_true",
                   help="measure the chosen baselines and report those the recorded bands "
                        "flag (false positives), writing nothing; with --from-cache, judge the "
                        "measurements already cached")
    c.add_argument("--from-points", action="store_true",
                   help="bands from the points calibration-points.json records (no measuring)")
    c.add_argument("--remeasure", metavar="REGEX",
                   help="with --from-points: measure again the points whose code (compiler "
                        "output or hand-written kernel) matches REGEX, keep the others")
    c.add_argument("--remeasure-longer", type=int, metavar="N",
                   help="with --from-points: measure again the points whose code has more "
                        "than N instructions too")
    c.set_defaults(func=cmd_calibrate)

    f = sub.add_parser("faithfulness", help="cost-model faithfulness report (brief §8)")
    f.add_argument("--sample", type=int, default=None, help="only this many variants (spread)")
    f.add_argument("--template")
    f.add_argument("--jobs", type=int, default=None)
    f.set_defaults(func=cmd_faithfulness)

    fi = sub.add_parser("fidelity", help="the cost model against published Neoverse V2 figures")
    fi.add_argument("--mca", action="append", help="another llvm-mca to compare (repeatable)")
    fi.add_argument("--json", action="store_true")
    fi.set_defaults(func=cmd_fidelity)

    r = sub.add_parser("prepare", help="build what verification needs ahead of first use "
                                       "(the static spawn helper, the execution guard)")
    r.add_argument("--warm", action="store_true",
                   help="also fill the decoder's, llvm-mca's and the whole-listing caches from "
                        "the compiler baselines")
    r.add_argument("--template", help="with --warm: only this template's variants")
    r.add_argument("--variants", help="with --warm: only these variant ids (comma-separated)")
    r.add_argument("--opts", default=",".join(warm.OPTS),
                   help="with --warm: the optimisation levels (default %(default)s)")
    r.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="with --warm: baselines warmed at a time (default: the CPUs)")
    r.set_defaults(func=cmd_prepare)

    d = sub.add_parser("demo", help="score the demo submissions and print their verdicts")
    d.add_argument("--seed", type=int, default=2026)
    d.add_argument("--verbose", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:  # built once and validated before any work: a mistyped ARMGYM_* value stops here
        settings = get_settings()
    except SettingsError as exc:
        print(f"armgym: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args, settings))


if __name__ == "__main__":
    raise SystemExit(main())
