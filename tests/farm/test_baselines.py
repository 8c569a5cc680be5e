"""Baselines in the database: built once per toolchain, stored, served by the API from the table,
their cycles filled in by the workers' own performance gates (and by the bulk builder)."""

from __future__ import annotations

import subprocess
import sys
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import baselines as stored
from store.models import BaselineRow, utcnow
from toolchain import baselines, kernels
from toolchain.settings import get_settings

from .conftest import FARM, Api
from .mix import VARIANTS, honest

pytestmark = FARM


def rows(api: Api, variant_id: str) -> list[BaselineRow]:
    engine = api.engine()
    try:
        with Session(engine) as session:
            return list(session.scalars(select(BaselineRow).where(
                BaselineRow.variant_id == variant_id).order_by(BaselineRow.compiler)))
    finally:
        engine.dispose()


def test_baselines_are_stored_once_and_served_from_the_table(api: Api) -> None:
    client = api.client(None)
    variant = kernels.get(VARIANTS[2])
    body = client.get(f"/baselines/{variant.id}").json()
    assert body["c_source"] == variant.c_source
    assert body["prototype"] == variant.signature.c_prototype()
    served = {b["compiler"]: b for b in body["baselines"]}
    assert set(served) == set(baselines.COMPILERS)
    for compiler, base in served.items():
        assert base["assembly"] == baselines.get(variant, compiler,
                                                 settings=get_settings()).assembly
        assert base["toolchain_key"] == baselines.toolchain_key(compiler, "-O3")
    found = rows(api, variant.id)
    assert [r.compiler for r in found] == sorted(baselines.COMPILERS)
    # a second request reads the same rows (not rebuilt); /reset offers the same assembly
    again = client.get(f"/baselines/{variant.id}").json()
    assert [b["built_at"] for b in again["baselines"]] == [b["built_at"]
                                                            for b in body["baselines"]]
    reset = client.post("/reset", params={"variant_id": variant.id}).json()
    assert [b["assembly"] for b in reset["baselines"]] == [b["assembly"]
                                                           for b in body["baselines"]]


def test_the_served_row_is_the_current_toolchains(api: Api) -> None:
    """A row left by another compiler version is kept, never served (and the table is what is
    served: a row edited in the database is what the API answers)."""
    variant = kernels.get(VARIANTS[3])
    client = api.client(None)
    client.get(f"/baselines/{variant.id}")
    engine = api.engine()
    try:
        with Session(engine) as session, session.begin():
            session.add(BaselineRow(variant_id=variant.id, compiler="gcc", opt="-O3",
                                    toolchain_key="0" * 12, toolchain="gcc 1.0", flags=[],
                                    c_source="old", assembly="old", built_at=utcnow()))
            row = session.get(BaselineRow, (variant.id, "clang", "-O3",
                                            baselines.toolchain_key("clang", "-O3")))
            assert row is not None
            row.assembly = row.assembly + "\n// stored\n"
    finally:
        engine.dispose()
    served = {b["compiler"]: b for b in client.get(f"/baselines/{variant.id}").json()
              ["baselines"]}
    assert served["clang"]["assembly"].endswith("// stored\n")
    assert served["gcc"]["assembly"] == baselines.get(variant, "gcc",
                                                      settings=get_settings()).assembly
    assert len(rows(api, variant.id)) == 3


def test_workers_fill_in_the_cycles_their_gates_measured(api: Api) -> None:
    variant = VARIANTS[0]
    client = api.client()
    verdict = client.post("/step", json={"variant_id": variant,
                                         "assembly": honest(variant, "gcc"), "seed": 11}).json()
    assert verdict["passed"] is True, verdict
    perf = next(g for g in verdict["gates"] if g["name"] == "performance")
    measured = perf["details"]["baselines"]
    deadline = time.monotonic() + 30  # stored right after the verdict, by the worker
    while any(r.measured_at is None for r in rows(api, variant)) or not rows(api, variant):
        assert time.monotonic() < deadline, "baseline cycles never stored"
        time.sleep(0.2)
    for row in rows(api, variant):
        m = measured[row.compiler]
        assert row.data_dependent is m["data_dependent"]
        assert row.cycles == (None if m["data_dependent"] else m["cycles"])
    served = client.get(f"/baselines/{variant}").json()["baselines"]
    assert {b["compiler"]: b["cycles"] for b in served} == {r.compiler: r.cycles
                                                            for r in rows(api, variant)}


def test_bad_variant_ids_are_refused(api: Api) -> None:
    client = api.client(None)
    for bad in ("nope", "../../etc/passwd", "x" * 5000, "relu_n64_float32'--", "%00"):
        res = client.get(f"/baselines/{bad}")
        assert res.status_code == 404, (bad, res.text)
        detail = res.json()["detail"]  # a path that leaves /baselines/ matches no route at all
        assert ("unknown variant_id" in detail or detail == "Not Found") and len(res.text) < 400


def test_bulk_builder_measures_cycles(farm_server: Api, farm_env: dict[str, str]) -> None:
    variant = kernels.get(VARIANTS[1])
    out = subprocess.run([sys.executable, "-m", "store.baselines", "--cycles", "--variant",
                          variant.id], env=farm_env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    found = rows(farm_server, variant.id)
    assert len(found) == 2 and all(r.measured_at is not None for r in found), out.stdout
    assert all(r.cycles and r.cycles > 0 for r in found if not r.data_dependent)
    bad = subprocess.run([sys.executable, "-m", "store.baselines", "--variant", "nope"],
                         env=farm_env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "unknown variant" in bad.stderr
    assert stored.OPT == "-O3"
