"""The README's run command: start the embedded farm (SQLite, in-process workers), score the
demo submissions (toolchain.demo.CASES) as one batch through the HTTP API, print the results.

  .venv/bin/python -m api.demo [--seed N] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import httpx

from store.keys import new_plaintext
from toolchain.demo import CASES
from toolchain.settings import get_settings

from . import process


def _row(label: str, variant: str, got: str, expect: str, speedup: str, reward: str, ms: str,
         worker: str) -> str:
    return (f"{label:38} {variant:24} {got:18} {expect:16} {speedup:>7} {reward:>6} {ms:>6} "
            f"{worker}")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def score(base_url: str, key: str, seed: int | None) -> int:
    """Submit CASES as one batch, wait for it, print the table; return the mismatch count."""
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                          timeout=120)
    settings = get_settings()  # baselines come from this process's cache
    attempts = [{"variant_id": c.variant_id, "assembly": c.make(settings), "seed": seed,
                 "meta": {"label": c.label}} for c in CASES]
    accepted = client.post("/batches", json={"run_id": "demo", "step": 0, "model": "demo",
                                             "attempts": attempts})
    accepted.raise_for_status()
    batch_id = accepted.json()["batch_id"]
    result = client.get(f"/batches/{batch_id}", params={"wait": 110}).json()
    print(_row("submission", "variant", "verdict", "expected", "speedup", "reward", "ms",
               "worker"))
    mismatches = 0
    for case, res in zip(CASES, result["results"], strict=True):
        got = "pending" if res["status"] != "done" else \
            ("pass" if res["passed"] else str(res["error_kind"]))
        mismatches += got != case.expect
        ms = f"{(res['verify_seconds'] or 0) * 1000:.0f}"
        print(_row(case.label, case.variant_id, got, case.expect, _num(res["speedup"], ".2f"),
                   _num(res["reward"], ".2f"), ms, str(res["worker"])))
    print(f"{len(CASES) - mismatches}/{len(CASES)} verdicts as expected "
          f"(batch {batch_id}, {base_url}/batches/{batch_id})")
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="per-attempt seed for every case")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite database")
    args = parser.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="armgym-demo-"))
    key, port = new_plaintext(), process.free_port()
    server = process.start(process.embedded_env(data, ARMGYM_API_KEYS=f"demo:{key}"), port,
                           log=data / "api.log")
    try:
        print(f"embedded farm at http://127.0.0.1:{port} (SQLite in {data})")
        return 1 if score(f"http://127.0.0.1:{port}", key, args.seed) else 0
    finally:
        process.stop(server)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
