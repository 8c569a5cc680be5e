"""Adapters for RL frameworks. None of them imports its framework: each reproduces the call shape
the framework uses, so importing them never pulls torch in.

- `trl`: a `GRPOTrainer` reward function (sync and async).
- `verl`: `compute_score` (per sample) and `compute_score_batch` (the batch reward manager).
- OpenRLHF needs no client code: point `--remote_rm_url` at the farm's `/openrlhf/get_reward`.
"""
