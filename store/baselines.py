"""Compiler baselines in the database: built once per toolchain, stored, and served from there.

A row is keyed by variant, compiler, level and the toolchain key (compiler version and flags,
the same key toolchain/baselines.py caches files under), so a new compiler adds rows instead of
serving stale assembly. The API builds a missing row on first request (compiling is a fraction
of a second, and the API image has the compilers); cycles need the emulator and the cost model,
so workers fill them in: from the baseline measurements every performance gate makes anyway
(`measurements`, `record_found`), or all at once with `python -m store.baselines --cycles` on a
worker.

  python -m store.baselines [--cycles] [--variant ID ...]     (settings from ARMGYM_*)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from toolchain import baselines as compiled
from toolchain import kernels
from toolchain.errors import GateName, InfraError
from toolchain.kernels.model import Variant
from toolchain.settings import Settings
from toolchain.verdict import PerformanceDetails, Verdict

from .models import BaselineRow, utcnow

log = logging.getLogger(__name__)
OPT = "-O3"  # the level the performance gate compares against
Sessions = Callable[[], Session]
_measured: set[tuple[str, str, str, str]] = set()  # rows this process knows are measured
_KEY = ("variant_id", "compiler", "opt", "toolchain_key")  # the table's primary key


def toolchain_key(compiler: str, opt: str = OPT) -> str:
    return compiled.toolchain_key(compiler, opt)


def _insert(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(BaselineRow)


def get_or_build(session: Session, variant: Variant, compiler: str, settings: Settings,
                 opt: str = OPT) -> BaselineRow:
    """This toolchain's row, compiled and stored first if nobody has yet (concurrent builders
    insert the same bytes; the first wins). Raises InfraError when the compiler is missing."""
    key = toolchain_key(compiler, opt)
    row = session.get(BaselineRow, (variant.id, compiler, opt, key))
    if row is not None:
        return row
    base = compiled.get(variant, compiler, opt, settings=settings)
    session.execute(_insert(session).values(
        variant_id=variant.id, compiler=compiler, opt=opt, toolchain_key=key,
        toolchain=base.toolchain[:300], flags=list(base.flags), c_source=variant.c_source,
        assembly=base.assembly, built_at=utcnow()).on_conflict_do_nothing())
    session.commit()
    row = session.get(BaselineRow, (variant.id, compiler, opt, key))
    assert row is not None
    return row


def row_json(row: BaselineRow) -> dict[str, Any]:
    return {"compiler": row.compiler, "opt": row.opt, "toolchain": row.toolchain,
            "toolchain_key": row.toolchain_key, "flags": list(row.flags),
            "assembly": row.assembly, "cycles": row.cycles,
            "data_dependent": row.data_dependent, "cost_model": row.cost_model,
            "built_at": row.built_at, "measured_at": row.measured_at}


def for_variant(session: Session, variant: Variant, settings: Settings) -> list[dict[str, Any]]:
    """Every compiler's baseline this host can produce, from the table (built when missing)."""
    found = []
    for compiler in compiled.COMPILERS:
        try:
            found.append(row_json(get_or_build(session, variant, compiler, settings)))
        except InfraError:
            continue  # this host has no such compiler; the others still serve
    return found


def record_measured(session: Session, variant: Variant, compiler: str, cycles: float,
                    data_dependent: bool, settings: Settings, opt: str = OPT,
                    commit: bool = True) -> bool:
    """Store a measurement in the row (built first if missing); True when this call stored it.
    A data-dependent baseline keeps cycles NULL: its cost depends on the input. One upsert
    (INSERT ... ON CONFLICT DO UPDATE ... WHERE not yet measured), so a worker storing these
    between two verifications makes one round trip per row however the table stands, and
    none for a row this process knows is measured."""
    key = (variant.id, compiler, opt, toolchain_key(compiler, opt))
    if key in _measured:
        return False
    from toolchain.gates.performance.gate import model_key

    base = compiled.get(variant, compiler, opt, settings=settings)  # the gate's, in memory
    now = utcnow()
    figures = {"cycles": None if data_dependent else cycles, "data_dependent": data_dependent,
               "cost_model": model_key(settings), "measured_at": now}
    stmt = _insert(session).values(
        variant_id=variant.id, compiler=compiler, opt=opt, toolchain_key=key[3],
        toolchain=base.toolchain[:300], flags=list(base.flags), c_source=variant.c_source,
        assembly=base.assembly, built_at=now, **figures)
    # RETURNING, not the row count, says whether a row was written: psycopg counts a
    # conflict whose update the WHERE skipped as a row.
    written = session.execute(stmt.on_conflict_do_update(
        index_elements=list(_KEY), set_=figures, where=BaselineRow.measured_at.is_(None))
        .returning(BaselineRow.variant_id)).first()
    if commit:
        session.commit()
    _measured.add(key)
    return written is not None


Measurement = tuple[str, float, bool]  # (compiler, cycles, data_dependent)


def measurements(verdict: Verdict | Mapping[str, Any]) -> list[Measurement]:
    """The baselines this verdict's performance gate measured that this process has not
    stored yet (a worker skips the session when there are none: once warm, nearly always)."""
    typed = Verdict.load(verdict)
    gate = typed.gate(GateName.performance) if typed else None
    if typed is None or gate is None or not gate.passed or \
            not isinstance(gate.details, PerformanceDetails) or not gate.details.baselines:
        return []
    return [(compiler, float(m.cycles), bool(m.data_dependent))
            for compiler, m in sorted(gate.details.baselines.items())
            if compiler in compiled.COMPILERS and m.cycles is not None
            and (typed.variant_id, compiler, OPT, toolchain_key(compiler)) not in _measured]


def record_found(session: Session, variant_id: str, found: Sequence[Measurement],
                 settings: Settings) -> int:
    """`measurements` of one verdict into the table, in one transaction."""
    if not found:
        return 0
    variant = kernels.get(variant_id)
    stored = sum(record_measured(session, variant, compiler, cycles, dependent, settings,
                                 commit=False) for compiler, cycles, dependent in found)
    session.commit()
    return stored


def measure(session: Session, variant: Variant, compiler: str, settings: Settings) -> bool:
    """Measure a baseline now (a worker's job: emulator and cost model) and store it."""
    from toolchain.gates.performance import gate as perf

    seed, test = perf.PROBES[0]
    found, dependent = perf.baseline_measurement(variant, compiler, seed, test, settings)
    return record_measured(session, variant, compiler, found.cycles, dependent, settings)


def build(sessions: Sessions, variants: Sequence[Variant], settings: Settings,
          cycles: bool = False, progress: bool = True) -> dict[str, int]:
    """Every missing row of this toolchain (and with `cycles`, every missing measurement)."""
    from tqdm import tqdm

    counts = {"rows": 0, "measured": 0, "unavailable": 0}
    work = [(v, c) for v in variants for c in compiled.COMPILERS]
    with sessions() as session:
        for variant, compiler in tqdm(work, desc="baselines", unit="row", disable=not progress):
            try:
                get_or_build(session, variant, compiler, settings)
                counts["rows"] += 1
                if cycles:
                    counts["measured"] += measure(session, variant, compiler, settings)
            except InfraError as exc:
                log.warning("%s %s: %s", variant.id, compiler, exc)
                counts["unavailable"] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    from store.db import make_engine, sessions
    from store.settings import FarmSettings

    parser = argparse.ArgumentParser(prog="python -m store.baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", action="store_true",
                        help="measure cycles too (needs the worker's tools)")
    parser.add_argument("--variant", action="append", default=[],
                        help="only these variants (repeatable); default every variant")
    args = parser.parse_args(argv)
    try:
        chosen = [kernels.get(v) for v in args.variant] if args.variant else list(kernels.suite())
    except KeyError as exc:
        print(f"unknown variant {exc}", file=sys.stderr)
        return 2
    farm = FarmSettings.from_env()
    engine = make_engine(farm.sqlalchemy_url, pool_size=1)
    try:
        counts = build(sessions(engine), chosen, farm.core, cycles=args.cycles)
    finally:
        engine.dispose()
    print(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
