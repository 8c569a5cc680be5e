"""Where a worker process's memory goes: `verify()` over the mix in this one process, its RSS
sampled as it goes, and with `--trace` tracemalloc's live size at each sample and its largest live
allocations at the end (by source line), so a rise in RSS can be matched with the Python objects
that hold it (or shown not to be Python's: live size flat while RSS rises is the allocator).

    .venv/bin/python -m bench.rss [--n 512] [--variants 48] [--every 64] [--trace]
                                  [--soak] [--trim]

--soak verifies the soak's attempts instead (bench.soak: its 32 variants, every attempt distinct,
a seed of its own); --trim calls glibc's malloc_trim(0) after each verification. Run it with
ARMGYM_LINK_IN_PROCESS=0 and =1, MALLOC_ARENA_MAX=2 (or any other setting) to see what it keeps.
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
from workers import heap  # noqa: E402

from . import mix  # noqa: E402


def attempts(n: int, variants: int, soak_texts: bool) -> list[tuple[str, str, int]]:
    """(variant, assembly, seed) for each verification: the mix's or the soak's."""
    if not soak_texts:
        return [(s.variant_id, s.assembly, s.seed) for s in mix.build(n, 8, variants)]
    from . import soak

    chosen = soak.variants()
    return [(chosen[i % len(chosen)], soak.text_for(i, chosen), i) for i in range(n)]


def run(n: int, variants: int, every: int, trace: bool, soak_texts: bool = False,
        trim: bool = False, top: int = 12) -> dict[str, Any]:
    items = attempts(n, variants, soak_texts)
    settings = get_settings()
    if trace:
        tracemalloc.start()
    samples = []
    started = time.perf_counter()
    cpu = time.process_time()
    for i, (variant, text, seed) in enumerate(items, 1):
        verify(variant, text, seed=seed, settings=settings)
        if trim:
            heap.trim()  # what a pool process does after each attempt (workers.heap)
        if i % every == 0 or i == len(items):
            sample = {"done": i, "rss_mib": round(rss_mib(os.getpid()), 1),
                      "seconds": round(time.perf_counter() - started, 1),
                      "cpu_s": round(time.process_time() - cpu, 2)}
            if trace:
                sample["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            samples.append(sample)
            print(json.dumps(samples[-1]), flush=True)
    out: dict[str, Any] = {"n": len(items), "variants": len({v for v, _, _ in items}),
                           "soak_texts": soak_texts, "trim": trim,
                           "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
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
    parser.add_argument("--soak", action="store_true", help="the soak's attempts, not the mix")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each one")
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.variants, args.every, args.trace, args.soak, args.trim),
                     indent=1))


if __name__ == "__main__":
    main()
