"""The mutation-testing instrument (issue 12): how many wrong kernels does the gate let through?

    .venv/bin/python -m bench.mutants [--mutants 3000] [--per-template K] [--seed 2026] [--jobs 2]
                                      [--template T ...] [--out bench/mutants/results]
                                      [--reuse OUT/phase1.json.gz] [--every K]

Mutants are one-edit changes of the clang and gcc -O3 baselines (mutate.py), drawn from one
power-of-two and one odd-shaped variant of every (template, dtype). An oracle independent of the
gate (oracle.py, its own harness and tests) classifies each as equivalent or not; `verify()`
scores each; the report gives the kill rate of non-equivalent mutants per template, dtype and
class, the equivalent mutants the gate rejected, and how each survivor is wrong. Run it by hand
whenever a gate changes: `--reuse` scores the mutants of an earlier run again (the oracle's
verdicts do not depend on the gate), so two runs compare mutant by mutant.
"""
