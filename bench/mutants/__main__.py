"""python -m bench.mutants: see the package docstring."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import report, run

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mutants", description=__doc__)
    p.add_argument("--mutants", type=int, default=3000, help="at least this many (default 3000)")
    p.add_argument("--seed", type=int, default=2026, help="draws variants, mutants, gate seeds")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--template", action="append", help="only these templates (repeatable; "
                   "with --reuse, only the saved mutants of these)")
    p.add_argument("--variant", action="append", help="only these variants (repeatable)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--survivors", type=Path, help="also copy the survivors' digest here")
    p.add_argument("--reuse", type=Path, help="phase 1 (mutants and oracle classes) saved by an "
                   "earlier run (its OUT/phase1.json.gz): score the same mutants again")
    p.add_argument("--per-template", type=int, default=0, metavar="K", help="at least K mutants "
                   "per template (its variants' quotas raised; --mutants stays a lower bound)")
    p.add_argument("--every", type=int, default=1, help="score only every k-th mutant")
    p.add_argument("--recheck-equivalent", action="store_true", help="with --reuse: judge the "
                   "equivalent mutants again with today's oracle tests (saved as OUT/phase1)")
    p.add_argument("--verdicts-from", type=Path, help="take the gate's verdicts from this "
                   "results.json instead of scoring (to re-read an earlier run)")
    args = p.parse_args(argv)
    result = run.execute(args.seed, args.mutants, args.jobs, args.template, args.variant,
                         reuse=args.reuse, save=args.out / "phase1.json.gz", every=args.every,
                         recheck_equivalent=args.recheck_equivalent,
                         verdicts_from=args.verdicts_from, per_template=args.per_template)
    doc = report.document(result)
    report.write(doc, args.out)
    if args.survivors:
        args.survivors.write_text((args.out / "survivors.txt").read_text())
    print(report.table(doc))
    print(f"results: {args.out / 'results.json'}, plot: {args.out / 'kill_rate.png'}, "
          f"survivors: {args.out / 'survivors.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
