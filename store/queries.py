"""The example queries docs/store.md documents (section "Store and example queries").

Each is plain SQL that runs unchanged on PostgreSQL and on the embedded SQLite database; the test
suite runs every one against both and checks that docs/store.md shows exactly this text.
"""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
    # Runs, most recently started first: what a run picker lists.
    "runs": """
SELECT run_id,
       COUNT(*) AS steps,
       SUM(attempts) AS attempts,
       MIN(first_submitted_at) AS first_submitted_at,
       MAX(last_finished_at) AS last_finished_at
FROM run_step_summary
WHERE run_id IS NOT NULL
GROUP BY run_id
ORDER BY MIN(first_submitted_at) DESC, run_id
""",
    # Learning curve of one run: what a training dashboard plots per step.
    "run_curve": """
SELECT step, attempts, correctness_rate, mean_reward, best_speedup
FROM run_step_summary
WHERE run_id = :run_id
ORDER BY step
""",
    # What the model gets wrong in a run, most frequent first.
    "run_errors": """
SELECT outcome, SUM(attempts) AS attempts
FROM error_kind_histogram
WHERE run_id = :run_id
GROUP BY outcome
ORDER BY attempts DESC, outcome
""",
    # The outcome mix of every step of a run (pass or an error kind): a stacked chart's data.
    "run_error_mix": """
SELECT step, outcome, attempts
FROM error_kind_histogram
WHERE run_id = :run_id
ORDER BY step, outcome
""",
    # The best verified kernel of every variant so far, who found it and when.
    "best_kernels": """
SELECT variant_id, speedup, cycles, reward, found_by, run_id, step, attempt_id
FROM variant_best
ORDER BY variant_id
""",
    # The best verified kernel of a variant, who found it, and its assembly.
    "best_kernel": """
SELECT b.variant_id, b.speedup, b.cycles, b.found_by, b.run_id, b.step, s.text AS assembly
FROM variant_best b
JOIN assemblies s ON s.sha256 = b.assembly_sha256
WHERE b.variant_id = :variant_id
""",
    # Which gate rejects most, and why.
    "gate_failures": """
SELECT name AS gate, error_kind, COUNT(*) AS failures
FROM gate_results
WHERE NOT passed
GROUP BY name, error_kind
ORDER BY failures DESC, gate
""",
    # Per template: how often the model solves it and what a verification costs.
    "template_pass_rate": """
SELECT template,
       COUNT(*) AS attempts,
       AVG(CAST(CASE WHEN passed THEN 1 ELSE 0 END AS FLOAT)) AS pass_rate,
       AVG(verify_seconds) AS mean_verify_seconds
FROM attempts
WHERE status = 'done' AND (error_kind IS NULL OR error_kind <> 'infra_error')
GROUP BY template
ORDER BY pass_rate DESC, template
""",
    # Variants a run attempted but never solved.
    "unsolved_variants": """
SELECT variant_id, COUNT(*) AS attempts
FROM attempts
WHERE run_id = :run_id AND status = 'done'
GROUP BY variant_id
HAVING SUM(CASE WHEN passed THEN 1 ELSE 0 END) = 0
ORDER BY attempts DESC, variant_id
""",
}
