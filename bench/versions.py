"""The same mix through `verify()` of several checkouts, interleaved in one run: the cost of a
gate change, before against after, on one machine under the same load.

    .venv/bin/python -m bench.versions TREE [TREE ...] [--n 256] [--mix-seed 8]

Each tree (a checkout, e.g. `git worktree add --detach /tmp/before <commit>`) gets one worker
process: this venv's Python with the tree first on sys.path, so the toolchain imported is that
tree's. The mix is built once, here; every item goes to every worker in turn, the order rotated
per item, one verification at a time, after every variant of the mix was verified once per tree
(its harness and baseline measurements cached). A worker reports per verification its wall time
and its CPU time (its own and its children's: the tools; and its own alone, the Python's),
verdict cache off. CPU time is the
figure to compare on a shared machine (wall time includes waiting for a core); the ratios are
against the first tree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import mix

WARM_SEED = 2**62 + 7
WORKER = r"""
import dataclasses, json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["ARMGYM_VERDICT_CACHE"] = "0"
from toolchain import VERIFIER_VERSION
from toolchain.settings import get_settings
from toolchain.verify import verify
base = get_settings()  # a dataclass in older checkouts, a validated model with replace() now
settings = base.replace(verdict_cache=False) if hasattr(base, "replace") else \
    dataclasses.replace(base, verdict_cache=False)
def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
def own():
    a = resource.getrusage(resource.RUSAGE_SELF)
    return a.ru_utime + a.ru_stime
print(json.dumps({"version": VERIFIER_VERSION}), flush=True)
for line in sys.stdin:
    item = json.loads(line)
    c0, p0, t0 = cpu(), own(), time.perf_counter()
    v = verify(item["variant_id"], item["assembly"], item["seed"], settings=settings)
    kind = "pass" if v.passed else str(v.error_kind.value if v.error_kind else "unknown")
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0,
                      "python": own() - p0, "outcome": kind}), flush=True)
"""


class Worker:
    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tree)], cwd=tree,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = self._read()["version"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the worker of {self.tree} died")
        return json.loads(line)

    def verify(self, item: mix.Submission, seed: int | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"variant_id": item.variant_id, "assembly": item.assembly,
                                          "seed": item.seed if seed is None else seed}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.versions", description=__doc__)
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--mix-seed", type=int, default=8)
    p.add_argument("--variants", type=int, default=48)
    p.add_argument("--json", type=Path, help="also write the per-item figures here")
    args = p.parse_args(argv)
    items = mix.build(args.n, args.mix_seed, args.variants)
    workers = [Worker(t.resolve()) for t in args.trees]
    # Every variant once per tree on a throwaway seed before the clock starts: the harness
    # builds and baseline measurements each tree caches are not what is compared.
    warm: dict[str, mix.Submission] = {}
    for s in sorted(items, key=lambda s: s.category not in ("compiler", "hand")):
        warm.setdefault(s.variant_id, s)  # every variant, by an honest item where there is one
    for w in workers:
        for s in tqdm(warm.values(), desc=f"warm {w.tree.name}", unit="variant"):
            w.verify(s, WARM_SEED)
    rows: list[list[dict[str, Any]]] = [[] for _ in workers]
    for i, item in enumerate(tqdm(items, desc="versions", unit="item")):
        order = list(range(len(workers)))
        order = order[i % len(order):] + order[: i % len(order)]
        for k in order:
            rows[k].append(workers[k].verify(item))
    for w in workers:
        w.close()
    first_cpu = sum(r["cpu"] for r in rows[0])
    first_py = sum(r["python"] for r in rows[0])
    first_wall = sum(r["wall"] for r in rows[0])
    print(f"{len(items)} items ({mix.composition(items)}), one verification at a time")
    for w, r in zip(workers, rows, strict=True):
        cpu, wall = sum(x["cpu"] for x in r), sum(x["wall"] for x in r)
        py = sum(x["python"] for x in r)
        per = statistics.median(x["cpu"] / max(y["cpu"], 1e-9) for x, y in zip(r, rows[0],
                                                                                  strict=True))
        differ = sum(x["outcome"] != y["outcome"] for x, y in zip(r, rows[0], strict=True))
        print(f"  {w.tree} (verifier {w.version}): CPU {cpu:7.1f} s (x{cpu / first_cpu:.3f}, "
              f"median per item x{per:.3f}; the worker's own, Python, {py:6.1f} s, "
              f"x{py / first_py:.3f}), wall {wall:7.1f} s (x{wall / first_wall:.3f}); "
              f"outcomes differing from the first tree: {differ}")
    if args.json:
        args.json.write_text(json.dumps({"trees": [str(w.tree) for w in workers],
                                         "items": [s.label for s in items], "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
