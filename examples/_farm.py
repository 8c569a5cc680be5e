"""Where the examples find a farm: the one named by ARMGYM_URL (with ARMGYM_API_KEY: then only
armgym-client is needed), or else an embedded farm started from this checkout just for the
example (SQLite and in-process workers in a temporary directory, or in --data-dir to keep the
history) and stopped when it ends."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

try:
    import armgym_client  # noqa: F401  (installed by scripts/setup.sh)
except ImportError:  # a checkout without setup: use the source tree
    sys.path.insert(0, str(ROOT / "clients" / "python"))


@contextmanager
def farm(data_dir: str | None = None) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a running farm."""
    if os.environ.get("ARMGYM_URL"):
        yield os.environ["ARMGYM_URL"], os.environ.get("ARMGYM_API_KEY", "")
        return
    sys.path.insert(0, str(ROOT))
    from api import process
    from store.keys import new_plaintext

    data = Path(data_dir or tempfile.mkdtemp(prefix="armgym-example-"))
    data.mkdir(parents=True, exist_ok=True)
    key, port = new_plaintext(), process.free_port()
    server = process.start(process.embedded_env(data, ARMGYM_API_KEYS=f"example:{key}"), port,
                           log=data / "api.log")
    print(f"embedded farm at http://127.0.0.1:{port} (SQLite in {data})", file=sys.stderr)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        process.stop(server)
        if data_dir is None:
            shutil.rmtree(data, ignore_errors=True)


def candidates(url: str, variant_id: str = "relu_n64_float32") -> dict[str, str]:
    """Model outputs to score: a correct answer in <assembly> tags (the compiler's own, from the
    farm's /reset), one with no tags, one that assembles but computes nothing."""
    import httpx

    task = httpx.post(f"{url}/reset", json={"variant_id": variant_id}, timeout=120).json()
    asm = task["baseline"]["assembly"]
    return {"correct": f"Sure:\n<assembly>\n{asm}</assembly>",
            "no tags": "I think the loop should be unrolled.",
            "computes nothing": "<assembly>\n    .globl kernel\nkernel:\n    ret\n</assembly>"}
