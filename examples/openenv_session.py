"""The farm as an OpenEnv environment: openenv-core's own client, over its WebSocket protocol.

    pip install armgym-client openenv-core==0.3.0
    ARMGYM_URL=http://farm:8000 ARMGYM_API_KEY=... python examples/openenv_session.py

The environment is served under /openenv (the farm's root /reset and /step keep the original
ARM-Gym's shape). One episode is one task: reset picks it (the same parameters as POST /reset,
plus `profile` and `api_key`: OpenEnv's client sends no headers), a step verifies a submission
and ends the episode.
"""

from __future__ import annotations

from _farm import candidates, farm
from openenv import GenericEnvClient


def main() -> None:
    with farm() as (url, key):
        answer = candidates(url)["correct"]
        with GenericEnvClient(base_url=f"{url}/openenv").sync() as env:
            first = env.reset(variant_id="relu_n64_float32", seed=1, api_key=key)
            task = first.observation
            print(f"task {task['variant_id']}: beat {task['baseline_cycles']} cycles "
                  f"({task['baseline_compiler']})")
            result = env.step({"assembly": answer, "completion": True})
            seen = result.observation
            print(f"reward {result.reward}, done {result.done}, speedup {seen['speedup']}, "
                  f"cycles {seen['cycles']} vs {seen['baseline_cycles']}, "
                  f"error {seen['error_kind']}")
            print("state", env.state())


if __name__ == "__main__":
    main()
