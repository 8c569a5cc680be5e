"""Where a worker process's memory goes: `verify()` over the mix in this one process, its RSS
sampled as it goes, and with `--trace` tracemalloc's largest live allocations at the end (by
source line), so a rise in RSS can be matched with the Python objects that hold it.

    .venv/bin/python -m bench.rss [--n 512] [--variants 48] [--every 64] [--trace]

Run it with ARMGYM_LINK_IN_PROCESS=0 and =1 (or any other setting) to see what a feature keeps.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from typing import Any

os.environ["ARMGYM_VERDICT_CACHE"] = "0"  # every item verified

from deploy.measure import rss_mib  # noqa: E402
from toolchain.settings import get_settings  # noqa: E402
from toolchain.verify import verify  # noqa: E402

from . import mix  # noqa: E402


def run(n: int, variants: int, every: int, trace: bool, top: int = 12) -> dict[str, Any]:
    items = mix.build(n, 8, variants)
    settings = get_settings()
    if trace:
        tracemalloc.start()
    samples = []
    started = time.perf_counter()
    for i, item in enumerate(items, 1):
        verify(item.variant_id, item.assembly, seed=item.seed, settings=settings)
        if i % every == 0 or i == len(items):
            samples.append({"done": i, "rss_mib": round(rss_mib(os.getpid()), 1),
                            "seconds": round(time.perf_counter() - started, 1)})
            print(json.dumps(samples[-1]), flush=True)
    out: dict[str, Any] = {"n": len(items), "variants": len({s.variant_id for s in items}),
                           "link_in_process": settings.link_in_process, "samples": samples}
    if trace:
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("lineno")
        out["traced_mib"] = round(sum(s.size for s in stats) / 2**20, 1)
        out["top"] = [(str(s.traceback), round(s.size / 2**20, 2), s.count)
                      for s in stats[:top]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--variants", type=int, default=48)
    parser.add_argument("--every", type=int, default=64)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.variants, args.every, args.trace), indent=1))


if __name__ == "__main__":
    main()
