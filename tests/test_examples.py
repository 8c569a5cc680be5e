"""The trainer examples against a running farm (ARMGYM_URL), each in a fresh interpreter that may
import armgym-client and its HTTP library but none of the farm's own packages: what a trainer
machine with only `pip install armgym-client` runs. (openenv_session.py also uses openenv-core,
the OpenEnv client.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from farm.conftest import USER_KEY, Api, embedded_server, logs  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FARM_PACKAGES = ("toolchain", "api", "store", "workers", "reports", "bench", "deploy")
GUARD = f"""
import runpy, sys
class FarmCode:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FARM_PACKAGES!r}:
            raise ImportError(f"an example imported the farm's own package {{name}}")
sys.meta_path.insert(0, FarmCode())
sys.argv = [sys.argv[1]]
sys.path.insert(0, {str(ROOT / "examples")!r})
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("example, expected", [
    ("trl_grpo.py", ["correct            reward 3.0", "no tags            reward 0.0",
                     "metric armgym/pass_rate: 0.333"]),
    ("verl_reward.py", ["correct            {'score': 3.0, 'acc': 1.0",
                        "computes nothing   {'score': 2.0, 'acc': 0.0"]),
    ("openrlhf_remote_rm.py", ["correct            reward 3.0  score 1.0",
                               "computes nothing   reward 2.0  score 0.0"]),
    ("openenv_session.py", ["reward 3.0, done True, speedup 1.0", "'step_count': 1"]),
])
def test_example_with_only_the_client(example: str, expected: list[str],
                                      embedded_server: Api, tmp_path: Path) -> None:  # noqa: F811
    env = {**os.environ, "ARMGYM_URL": embedded_server.url, "ARMGYM_API_KEY": USER_KEY}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", GUARD, str(ROOT / "examples" / example)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for line in expected:
        assert line in done.stdout, done.stdout
