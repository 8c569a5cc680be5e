"""Content-addressed verdicts: an identical attempt is answered without verifying it again.

The key covers everything a verdict depends on: the verifier's version, the variant's C, the
seed, whether the text is a raw completion, the submitted bytes, and the settings that change
what the gates decide. A verdict is a pure function of those (verdict.py), so serving it again
is exact, not an approximation. `infra_error` is never stored: it says nothing about the
submission. Two layers: a bounded in-process map, and files under the cache directory shared by
every worker process on the machine (written atomically, so a reader never sees half a file).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import VERIFIER_VERSION, kernels, tools
from .cache import DiskCache, prune
from .errors import ErrorKind
from .settings import Settings
from .verdict import Verdict

MEMORY_ENTRIES = 4096
# On disk: files are spread over 256 directories by the key's first two hex digits, and a
# directory holding more than its share is pruned (oldest first) now and then, so a long run
# keeps about DISK_ENTRIES verdicts (a few kB each), not one file per attempt it ever saw.
DISK_ENTRIES = 100_000
PRUNE_EVERY = 64  # puts between two checks of the directory written to
# Settings that change what a gate decides (limits, budgets, test count); paths and pool sizes
# do not.
DECIDING = ("tests_per_attempt", "max_source_bytes", "max_source_lines", "max_object_bytes",
            "assemble_timeout_s", "link_timeout_s", "run_timeout_base_s", "run_timeout_factor",
            "memory_limit_mb", "output_limit_bytes", "trace_limit_blocks", "sandbox",
            "branch_prediction")


def key(variant_id: str, assembly: str | bytes, seed: int, completion: bool,
        settings: Settings) -> str:
    """The content address of an attempt's verdict (hex sha256)."""
    try:
        c_source = kernels.get(variant_id).c_source
    except KeyError:
        c_source = ""
    text = assembly if isinstance(assembly, bytes) else assembly.encode("utf-8", "surrogatepass")
    knobs = json.dumps({name: str(getattr(settings, name)) for name in DECIDING}, sort_keys=True)
    return tools.fingerprint(VERIFIER_VERSION, variant_id, c_source, str(seed),
                             str(int(completion)), knobs, text)


class VerdictCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._docs: DiskCache[dict] = DiskCache(
            MEMORY_ENTRIES, lambda doc: json.dumps(doc, sort_keys=True), json.loads)
        self._puts = 0

    def _path(self, k: str) -> Path:
        return self.directory / k[:2] / f"{k}.json"

    def get(self, k: str) -> Verdict | None:
        doc = self._docs.get(self._path(k))
        if doc is None:
            return None
        verdict = Verdict.from_json(doc)
        verdict.cached = True
        return verdict

    def put(self, k: str, verdict: Verdict) -> None:
        if verdict.error_kind is ErrorKind.infra_error:
            return
        path = self._path(k)
        try:
            self._docs.put(path, verdict.to_json())
            self._puts += 1
            if self._puts % PRUNE_EVERY == 0:
                prune(path.parent, max(1, DISK_ENTRIES // 256), ".json")
        except OSError:
            pass  # a full or read-only disk costs speed, never a verdict


_CACHES: dict[Path, VerdictCache] = {}


def for_settings(settings: Settings) -> VerdictCache | None:
    """The cache `settings` select, or None when it is switched off (ARMGYM_VERDICT_CACHE=0)."""
    if not settings.verdict_cache:
        return None
    directory = settings.cache_dir / "verdicts"
    if directory not in _CACHES:
        _CACHES[directory] = VerdictCache(directory)
    return _CACHES[directory]
