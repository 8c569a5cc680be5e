"""`python -m reports`: the command line of the reports package.

    python -m reports runs
    python -m reports plots RUN_ID [--out DIR]    # 3 PNGs + summary.txt + summary.json
    python -m reports export RUN_ID --out attempts.parquet   # or .csv; RUN_ID "all" for every run
    python -m reports best [--run RUN_ID] [--variant V] --out DIR   # <variant>.s + .verdict.json

The database is --db URL, or the embedded farm's SQLite file in --data-dir, or else whatever the
ARMGYM_* environment selects (ARMGYM_DATABASE_URL, or the embedded default under
ARMGYM_DATA_DIR), the same database the API writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from store import db

from . import data, export, plots, summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--db", help="SQLAlchemy URL of the farm's database")
    where.add_argument("--data-dir", help="an embedded farm's data directory (farm.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("runs", parents=[where], help="list runs")
    p = sub.add_parser("plots", parents=[where], help="plots and summary of a run")
    p.add_argument("run_id")
    p.add_argument("--out", type=Path, default=None, help="directory (default report-<run>)")
    e = sub.add_parser("export", parents=[where], help="attempts to CSV or Parquet")
    e.add_argument("run_id", help='a run id, or "all"')
    e.add_argument("--out", type=Path, required=True, help="file.csv or file.parquet")
    e.add_argument("--format", choices=sorted(export.WRITERS), default=None)
    e.add_argument("--with-verdict", action="store_true", help="add the verdict as JSON")
    e.add_argument("--with-assembly", action="store_true", help="add the submitted text")
    b = sub.add_parser("best", parents=[where], help="best verified kernels as files")
    b.add_argument("--run", default=None, help="only kernels this run found")
    b.add_argument("--variant", default=None)
    b.add_argument("--out", type=Path, required=True)
    return parser


def _best(session: Session, run: str | None, variant: str | None, out: Path) -> int:
    found = data.best_kernels(session, run, variant)
    out.mkdir(parents=True, exist_ok=True)
    for kernel in found:
        name = kernel["variant_id"]
        (out / f"{name}.s").write_text(kernel["assembly"])
        record = {k: v for k, v in kernel.items() if k != "assembly"}
        (out / f"{name}.verdict.json").write_text(
            json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    print(f"{len(found)} kernels written to {out}")
    return 0 if found else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    engine = data.engine(data.database_url(args.db, args.data_dir))
    try:
        with db.sessions(engine)() as session:
            if args.command == "runs":
                for run in data.runs(session):
                    print(f"{run['run_id']:40} {run['attempts']:8} attempts, steps "
                          f"{run['first_step']}-{run['last_step']}")
                return 0
            if args.command == "plots":
                history = data.run_history(session, args.run_id)
                out = args.out or Path(f"report-{args.run_id}")
                written = [*plots.draw_all(history, out), *summary.write(history, out)]
                sys.stdout.write(summary.text(history))
                print("wrote " + ", ".join(str(p) for p in written))
                return 0
            if args.command == "export":
                run = None if args.run_id == "all" else args.run_id
                rows = export.export(data.attempts(session, run, args.with_assembly), args.out,
                                     args.format, args.with_verdict, args.with_assembly)
                print(f"{rows} attempts written to {args.out}")
                return 0 if rows else 1
            return _best(session, args.run, args.variant, args.out)
    except LookupError as exc:
        print(f"reports: {exc.args[0]}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
