"""Verdict equivalence: verify() over a fixed sample, recorded, and two recordings compared.

A refactoring of the pipeline must not change what it decides. This runs the bench mix (a
reduced one by default), the demo set and a few inputs that stop early (empty, unknown variant,
raw completions, no seed) through `verify()` with the verdict cache off, and records per item the
outcome, the error kind, the cycles, the speedup and the reward (components and every profile),
floats as exact hex, plus a hash of the whole canonical verdict. `compare` says which items
differ in those figures (a failure) and which differ only elsewhere in the verdict's document.

    .venv/bin/python -m bench.verdicts record before.json [--n 80] [--variants 16]
    .venv/bin/python -m bench.verdicts compare before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ["ARMGYM_VERDICT_CACHE"] = "0"  # every item is verified, none answered from a cache

from toolchain import demo  # noqa: E402
from toolchain.settings import get_settings  # noqa: E402
from toolchain.verify import verify  # noqa: E402

from . import mix  # noqa: E402

KEYS = ("passed", "error_kind", "cycles", "speedup", "reward")


def _exact(value: Any) -> Any:
    """Floats as their exact hex form, so a comparison is bit for bit."""
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    return value


def sample(n: int, variants: int) -> list[dict[str, Any]]:
    """(label, variant, text, seed, completion) items: the mix, the demo set, early stops."""
    items = [{"label": s.label, "variant_id": s.variant_id, "assembly": s.assembly,
              "seed": s.seed, "completion": False} for s in mix.build(n, 8, variants)]
    for i, case in enumerate(demo.CASES):
        items.append({"label": f"demo: {case.label}", "variant_id": case.variant_id,
                      "assembly": case.make(get_settings()), "seed": 7000 + i,
                      "completion": False})
    honest = demo.DOT_1024_F32_NEON
    items += [
        {"label": "empty", "variant_id": "dot_n1024_float32", "assembly": "  \n",
         "seed": 1, "completion": False},
        {"label": "unknown variant", "variant_id": "no_such_variant", "assembly": honest,
         "seed": 2, "completion": False},
        {"label": "completion", "variant_id": "dot_n1024_float32",
         "assembly": f"I think.\n<assembly>\n{honest}</assembly>\n", "seed": 3,
         "completion": True},
        {"label": "completion without a block", "variant_id": "dot_n1024_float32",
         "assembly": honest, "seed": 4, "completion": True},
        {"label": "no seed (derived)", "variant_id": "dot_n1024_float32", "assembly": honest,
         "seed": None, "completion": False},
    ]
    return items


def figures(verdict: Any) -> dict[str, Any]:
    doc = verdict.to_json(with_timings=False)
    perf = next((g for g in doc["gates"] if g["name"] == "performance"), None)
    details = perf["details"] if perf else {}
    return _exact({
        "passed": doc["passed"], "error_kind": doc["error_kind"],
        "cycles": details.get("cycles"), "speedup": details.get("speedup"),
        "reward": doc.get("reward"),
        "gates": [(g["name"], g["passed"], g["error_kind"]) for g in doc["gates"]],
        "canonical": hashlib.sha256(verdict.canonical().encode()).hexdigest(),
    })


def record(path: Path, n: int, variants: int) -> int:
    items = sample(n, variants)
    out = []
    start = time.perf_counter()
    for i, item in enumerate(items):
        verdict = verify(item["variant_id"], item["assembly"], item["seed"],
                         completion=item["completion"], settings=get_settings())
        out.append({"label": item["label"], "variant_id": item["variant_id"],
                    "seed": verdict.seed, **figures(verdict)})
        print(f"\r{i + 1}/{len(items)}", end="", file=sys.stderr, flush=True)
    print(f"\n{len(items)} verdicts in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    path.write_text(json.dumps(out, indent=1))
    return 0


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    if [(x["variant_id"], x["seed"]) for x in a] != [(x["variant_id"], x["seed"]) for x in b]:
        print("the two recordings are not of the same sample")
        return 2
    differ = [(x, y) for x, y in zip(a, b, strict=True) if any(x[k] != y[k] for k in KEYS)]
    other = [(x, y) for x, y in zip(a, b, strict=True)
             if all(x[k] == y[k] for k in KEYS) and x["canonical"] != y["canonical"]]
    for x, y in differ:
        print("DIFFERS:", x["label"], x["variant_id"],
              {k: (x[k], y[k]) for k in KEYS if x[k] != y[k]})
    renamed = sum(x["gates"] != y["gates"] for x, y in other)
    print(f"{len(a)} verdicts: {len(a) - len(differ)} identical in {', '.join(KEYS)}; "
          f"{len(differ)} differ; of the identical, {len(other)} differ elsewhere in the "
          f"document ({renamed} in gate names)")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("--n", type=int, default=80)
    rec.add_argument("--variants", type=int, default=16)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        return record(args.out, args.n, args.variants)
    return compare(args.before, args.after)


if __name__ == "__main__":
    raise SystemExit(main())
