"""SQL views answering the questions researchers ask of the attempt history.

Written in the SQL that PostgreSQL and SQLite (>= 3.25, window functions) both accept, so the
embedded mode has the same views; the migrations create them from these strings. `infra_error`
attempts say nothing about the model, so rates and means leave them out.
"""

from __future__ import annotations

SCORED = "(status = 'done' AND (error_kind IS NULL OR error_kind <> 'infra_error'))"

RUN_STEP_SUMMARY = f"""
CREATE VIEW run_step_summary AS
SELECT run_id,
       step,
       COUNT(*) AS attempts,
       SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done,
       SUM(CASE WHEN error_kind = 'infra_error' THEN 1 ELSE 0 END) AS infra_errors,
       SUM(CASE WHEN passed THEN 1 ELSE 0 END) AS passed,
       CAST(SUM(CASE WHEN passed THEN 1 ELSE 0 END) AS FLOAT)
           / NULLIF(SUM(CASE WHEN {SCORED} THEN 1 ELSE 0 END), 0) AS correctness_rate,
       AVG(CASE WHEN {SCORED} THEN reward END) AS mean_reward,
       MAX(CASE WHEN passed THEN speedup END) AS best_speedup,
       MIN(created_at) AS first_submitted_at,
       MAX(finished_at) AS last_finished_at
FROM attempts
GROUP BY run_id, step
"""

# The best verified kernel per variant: passed every gate; fastest by speedup, then by cycles,
# then the earliest found (so the finder keeps the credit for a tie).
VARIANT_BEST = """
CREATE VIEW variant_best AS
SELECT variant_id, attempt_id, speedup, cycles, reward, run_id, step, model, found_by,
       found_at, assembly_sha256
FROM (
    SELECT a.variant_id,
           a.id AS attempt_id,
           a.speedup,
           a.cycles,
           a.reward,
           a.run_id,
           a.step,
           a.model,
           k.name AS found_by,
           a.finished_at AS found_at,
           a.assembly_sha256,
           ROW_NUMBER() OVER (
               PARTITION BY a.variant_id
               ORDER BY CASE WHEN a.speedup IS NULL THEN 1 ELSE 0 END, a.speedup DESC,
                        CASE WHEN a.cycles IS NULL THEN 1 ELSE 0 END, a.cycles ASC,
                        a.finished_at ASC, a.id ASC
           ) AS position
    FROM attempts a
    JOIN api_keys k ON k.id = a.api_key_id
    WHERE a.status = 'done' AND a.passed
) ranked
WHERE position = 1
"""

ERROR_KIND_HISTOGRAM = """
CREATE VIEW error_kind_histogram AS
SELECT run_id,
       step,
       COALESCE(error_kind, 'pass') AS outcome,
       COUNT(*) AS attempts
FROM attempts
WHERE status = 'done'
GROUP BY run_id, step, COALESCE(error_kind, 'pass')
"""

VIEWS: dict[str, str] = {
    "run_step_summary": RUN_STEP_SUMMARY,
    "variant_best": VARIANT_BEST,
    "error_kind_histogram": ERROR_KIND_HISTOGRAM,
}
