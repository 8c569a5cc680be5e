"""The example queries the README documents (section "Store and example queries").

Each is plain SQL that runs unchanged on PostgreSQL and on the embedded SQLite database; the test
suite runs every one against both and checks that the README shows exactly this text.
"""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
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
