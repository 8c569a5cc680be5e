"""A simulated training run through the farm, to see the client and the reports at work without
a GPU: every step, each prompt gets a group of completions whose quality improves with the step
the way a learning policy's would (no tags -> hostile -> broken -> correct -> faster), and the
whole step is scored with one client call. The history it leaves is what `python -m reports`
plots.

    .venv/bin/python examples/simulated_run.py --data-dir /tmp/armgym-sim --steps 10
    .venv/bin/python -m reports plots sim --data-dir /tmp/armgym-sim --out /tmp/sim-report

Deterministic for a given --seed (choices and per-attempt seeds); the verdicts are real.
"""

from __future__ import annotations

import argparse
import random
import sys

from _farm import ROOT, farm
from armgym_client import Client, Submission

from toolchain.settings import Settings, get_settings

VARIANTS = ("vec_add_n1024_float32", "dot_n1024_float32", "relu_n256_float32",
            "saxpy_n256_float32", "l2_norm_sq_n256_float32", "max_reduce_n256_float32")
HEADER = "    .text\n    .globl kernel\n    .type kernel, %function\nkernel:\n"


def ladder(variant: str, settings: Settings) -> list[str]:
    """Completions for one prompt, from worst to best."""
    sys.path.insert(0, str(ROOT))
    from toolchain import baselines, kernels
    from toolchain.demo import DOT_1024_F32_NEON

    def tagged(body: str) -> str:
        return f"Here is my kernel.\n<assembly>\n{body}</assembly>"

    rungs = [
        "The loop can be vectorised with NEON; I would start from the C source.",
        tagged(HEADER + '    .incbin "/etc/passwd"\n    ret\n'),
        tagged(HEADER + "    fadd.x v0, v1\n    ret\n"),
        tagged(HEADER + "    mov x8, #93\n    svc #0\n    ret\n"),
        tagged(HEADER + "    ret\n"),
        tagged(HEADER + "    mov x19, #1\n    ret\n"),
        tagged(baselines.get(kernels.get(variant), "gcc", settings=settings).assembly),
        tagged(baselines.get(kernels.get(variant), "clang", settings=settings).assembly),
    ]
    if variant == "dot_n1024_float32":
        rungs.append(tagged(DOT_1024_F32_NEON))
    return rungs


def pick(rng: random.Random, rungs: list[str], skill: float) -> str:
    """Higher skill skews the choice towards the top of the ladder."""
    return rungs[min(len(rungs) - 1, int(len(rungs) * rng.random() ** (1 / (0.25 + 4 * skill))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="keep the embedded farm's database here")
    parser.add_argument("--run-id", default="sim")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = get_settings()
    rungs = {v: ladder(v, settings) for v in VARIANTS}
    with farm(args.data_dir) as (url, key), Client(url, key) as client:
        for step in range(args.steps):
            skill = step / max(1, args.steps - 1)
            items = [Submission(v, pick(rng, rungs[v], skill), seed=rng.randrange(2**32))
                     for v in VARIANTS for _ in range(args.group)]
            result = client.score_step(items, run_id=args.run_id, step=step, model="simulated")
            best = result.best_speedup
            print(f"step {step:2}: correctness {result.correctness_rate:.2f}, mean reward "
                  f"{result.mean_reward:.2f}, best speedup "
                  f"{'-' if best is None else f'{best:.2f}'}, dropped {len(result.dropped)}")
    if args.data_dir:
        print(f"report: .venv/bin/python -m reports plots {args.run_id} "
              f"--data-dir {args.data_dir}")


if __name__ == "__main__":
    main()
