"""Part 7, where the time goes: the share of a verification spent in tool launches (from the
floor's recording), the per-gate breakdown from the verdicts' gate timings, and py-spy over the
core library verifying part of the mix in one process: on-CPU samples only, so it shows where
the Python time goes, not the waits on tool processes (those are the launches' share).

py-spy comes from `.venv/bin/pip install py-spy` (not a project dependency); without it the
profile is skipped and the rest still runs. The process py-spy watches:

    python -m bench.profile ITEMS.pickle      (a pickled list of bench.mix.Submission)
"""

from __future__ import annotations

import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolchain.verify import verify

from . import core, mix

REPO = Path(__file__).resolve().parents[1]


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def _function(frame: str) -> str:
    """'name (path/to/file.py:123)' -> 'name (file.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name


def top_functions(raw: str, count: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        frames = [_function(f) for f in stack.split(";") if not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    share = {k: v / max(total, 1) for k, v in own.most_common(count)}
    incl = {k: v / max(total, 1) for k, v in inclusive.most_common(count)}
    return {"samples": total, "self": share, "inclusive": incl}


def profile(items: Sequence[mix.Submission]) -> dict[str, Any]:
    """py-spy's on-CPU samples over `items` verified one after another in one process (warmed
    first by a throwaway verification)."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy not installed (.venv/bin/pip install py-spy)"}
    tmp = Path(tempfile.mkdtemp(prefix="armgym-bench-spy-"))
    out, listed = tmp / "profile.txt", tmp / "items.pickle"
    listed.write_bytes(pickle.dumps(list(items)))
    try:
        subprocess.run([exe, "record", "--nonblocking", "--format", "raw", "--rate",
                        "100", "--output", str(out), "--", sys.executable, "-m", "bench.profile",
                        str(listed)], cwd=REPO, check=True, capture_output=True)
        return {"count": len(items), **top_functions(out.read_text())}
    except (OSError, subprocess.CalledProcessError) as exc:
        return {"skipped": f"py-spy failed: {exc}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gate_breakdown(gates: list[dict[str, float]], walls: list[float]) -> dict[str, Any]:
    """Per gate: how many verifications reached it, mean and median seconds, share of all
    verification time."""
    total = sum(walls)
    by_gate: dict[str, list[float]] = {}
    for timings in gates:
        for name, seconds in timings.items():
            by_gate.setdefault(name, []).append(seconds)
    rows = {name: {"count": len(s), "mean_s": statistics.fmean(s),
                   "median_s": statistics.median(s), "share": sum(s) / total}
            for name, s in by_gate.items()}
    accounted = sum(r["share"] for r in rows.values())
    return {"gates": rows, "outside_gates_share": 1 - accounted}


def main() -> int:
    os.environ.setdefault("ARMGYM_VERDICT_CACHE", "0")
    items: list[mix.Submission] = pickle.loads(Path(sys.argv[1]).read_bytes())
    warm = core.warm_item(items)
    if warm is not None:
        verify(warm.variant_id, warm.assembly, core.WARM_SEED, settings=core.bench_settings())
    for item in items:
        verify(item.variant_id, item.assembly, item.seed, settings=core.bench_settings())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
