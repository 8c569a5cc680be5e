"""The C reference's cache (toolchain/execution/runs.py) and group seeds (toolchain/verify.py):
one reference run serves every attempt with the same (variant, seed), across worker processes,
and what comes back from the cache is exactly what the run gave."""

from __future__ import annotations

import json
import multiprocessing
import secrets
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import HONEST, asm, baseline

from bench.floor import Recorder
from toolchain import kernels
from toolchain.execution import harness, runs
from toolchain.settings import Settings, get_settings
from toolchain.verify import MIN_GROUP_SECRET, derive_seed, group_seed, verify

SECRET = "s" * MIN_GROUP_SECRET


def _fresh_seed() -> int:
    """A seed no earlier run of the suite has cached a reference for."""
    return secrets.randbits(62)


def _reference_runs(rec: Recorder, seeds: set[int]) -> int:
    """The C reference's launches with one of `seeds` (the performance gate's baseline probes
    run it with seeds of their own)."""
    return sum(1 for launch in rec.launches
               if any(a.endswith("/reference.elf") for a in launch.argv)
               and any(f"{seed:016x}" in launch.argv for seed in seeds))


def _entry(variant_id: str, seed: int, settings: Settings) -> Path:
    variant = kernels.get(variant_id)
    return runs._entry(variant, harness.build(variant, settings), seed,
                       harness.test_count(variant, settings), settings)


def _group_texts() -> list[str]:
    """Four different attempts at one variant: three honest, one wrong."""
    honest = baseline(HONEST, "gcc")
    return [honest, baseline(HONEST, "clang"), asm("    ret"), honest + "\n    // a comment\n"]


def _verify_counting(job: tuple[list[tuple[str, str, int]], Settings, str]
                     ) -> tuple[int, list[str]]:
    """Pool task: verify `items` in this process, counting the C reference's launches."""
    items, settings, blobs = job
    with Recorder(Path(blobs)) as rec:
        verdicts = [verify(v, text, seed, settings=settings).canonical()
                    for v, text, seed in items]
    return _reference_runs(rec, {seed for _, _, seed in items}), verdicts


def test_a_group_across_two_processes_runs_the_reference_once(tmp_path: Path) -> None:
    settings = get_settings()
    seed = _fresh_seed()
    texts = _group_texts()
    jobs = [([(HONEST, t, seed) for t in texts[i::2]], settings, str(tmp_path)) for i in (0, 1)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_verify_counting, jobs))
    assert sum(runs_ for runs_, _ in done) == 1
    verdicts = [v for _, vs in done for v in vs]
    assert [json.loads(v)["passed"] for v in verdicts] == [True, False, True, True]
    # the same verdicts as each attempt verified with a reference run of its own
    for text, got in zip(texts[0::2] + texts[1::2], verdicts, strict=True):
        _entry(HONEST, seed, settings).unlink(missing_ok=True)
        runs._REFERENCES._memory.clear()
        assert verify(HONEST, text, seed, settings=settings).canonical() == got


def test_distinct_seeds_run_one_reference_each(tmp_path: Path) -> None:
    settings = get_settings()
    seeds = [_fresh_seed() for _ in range(3)]
    text = baseline(HONEST, "gcc")
    runs_, verdicts = _verify_counting(([(HONEST, text, s) for s in seeds] * 2, settings,
                                        str(tmp_path)))
    assert runs_ == 3
    assert verdicts[:3] == verdicts[3:]


def _with_header(data: bytes, **changes: Any) -> bytes:
    """A reference's file with fields of its JSON line changed, the bytes after it kept."""
    _, line, body = data.split(b"\n", 2)
    return runs.FILE_MAGIC + json.dumps({**json.loads(line), **changes}).encode() + b"\n" + body


def _moved_bytes(data: bytes) -> bytes:
    """The same size in all, but 8 bytes of the stream claimed by the first test's inputs."""
    _, line, _ = data.split(b"\n", 2)
    doc = json.loads(line)
    (test, n), *rest = doc["inputs"]
    return _with_header(data, stream=doc["stream"] - 8, inputs=[[test, n + 8], *rest])


def test_a_stored_reference_is_what_the_run_gave(tmp_path: Path) -> None:
    settings = get_settings()
    variant = kernels.get("dot_n64_float32")
    seed = _fresh_seed()
    ran = runs.reference(variant, seed, settings)
    entry = _entry(variant.id, seed, settings)
    assert entry.suffix == runs.FILE_SUFFIX
    data = entry.read_bytes()
    assert data.startswith(runs.FILE_MAGIC)
    stored = runs._decode(data)
    assert stored.records == ran.records and stored.inputs == ran.inputs
    assert stored.wall_s == ran.wall_s and stored.stream == ran.stream
    assert stored.variant_id == variant.id
    assert runs._encode(stored) == data  # the round trip is exact
    # the raw bytes are the file: only the two lines ahead of them
    assert len(data) - data.index(b"\n", len(runs.FILE_MAGIC)) - 1 == len(ran.stream) + sum(
        len(b) for b in ran.inputs.values())


@pytest.mark.parametrize("damage", [
    lambda data: data[: len(data) // 2],  # cut short in the bytes
    lambda data: data[:-1],  # one byte short
    lambda data: data[: len(runs.FILE_MAGIC) + 10],  # cut inside the JSON line
    lambda data: data + b"\0",  # a byte more than the lengths say
    lambda data: _with_header(data, stream=json.loads(data.split(b"\n")[1])["stream"] + 1),
    _moved_bytes,
    lambda data: _with_header(data, stream=-1),
    lambda data: _with_header(data, tests=30),  # claims other records
    lambda data: _with_header(data, variant="nope"),
    lambda data: _with_header(data, inputs={"12": 5}),
    lambda data: data.replace(runs.FILE_MAGIC, b"armgym-reference 2\n", 1),  # another format
    lambda data: b'{"variant": "relu_n64_float32", "wall_s": 0.1, "tests": 31}',  # the old one
    lambda data: bytes(range(256)) * 64,  # foreign bytes
    lambda data: b"",
], ids=["truncated", "one-byte-short", "truncated-header", "one-byte-more", "stream-length",
        "moved-bytes", "negative-length", "record-count", "unknown-variant", "inputs-shape",
        "other-version", "old-format", "foreign", "empty"])
def test_a_damaged_file_is_a_miss_and_the_reference_runs_again(tmp_path: Path, damage: Any
                                                               ) -> None:
    settings = get_settings()
    variant = kernels.get(HONEST)
    seed = _fresh_seed()
    ran = runs.reference(variant, seed, settings)
    entry = _entry(HONEST, seed, settings)
    entry.write_bytes(damage(entry.read_bytes()))
    with pytest.raises(ValueError):
        runs._decode(entry.read_bytes())
    runs._REFERENCES._memory.clear()  # as a new worker process: only the file
    with Recorder(tmp_path) as rec:
        again = runs.reference(variant, seed, settings)
    assert _reference_runs(rec, {seed}) == 1
    assert again.records == ran.records and again.inputs == ran.inputs


def test_the_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(runs, "PRUNE_EVERY", 1)
    variant = kernels.get(HONEST)
    seeds = [_fresh_seed() for _ in range(4)]
    directory = _entry(HONEST, seeds[0], settings).parent
    directory.mkdir(parents=True, exist_ok=True)
    old = directory / f"{'0' * 64}.json"  # a file of the earlier text format
    old.write_text('{"variant": "relu_n64_float32", "stream": ""}')
    monkeypatch.setattr(runs, "REFERENCE_FILES", 2)
    for seed in seeds:
        runs.reference(variant, seed, settings)
    assert len(list(directory.glob(f"*{runs.FILE_SUFFIX}"))) <= 2
    assert _entry(HONEST, seeds[-1], settings).exists()  # the newest stays
    assert not old.exists()  # never read again: removed at the first pruning


def test_group_seeds_are_shared_per_run_step_and_variant() -> None:
    base = group_seed("run-a", 3, HONEST, SECRET)
    assert base == group_seed("run-a", 3, HONEST, SECRET)  # the group shares it
    others = {group_seed("run-a", 4, HONEST, SECRET),  # the next step draws new tests
              group_seed("run-b", 3, HONEST, SECRET),
              group_seed("run-a", 3, "dot_n64_float32", SECRET),
              group_seed("run-a", 3, HONEST, SECRET + "x")}  # another deployment
    assert base not in others and len(others) == 4
    assert 0 <= base < 2**63
    assert base != derive_seed(HONEST, "", False, SECRET)
    # the separator keeps (run, step) pairs apart: "run-a1", 2 is not "run-a", 12
    assert group_seed("run-a1", 2, HONEST, SECRET) != group_seed("run-a", 12, HONEST, SECRET)


@pytest.mark.parametrize("secret", ["", "short", "s" * (MIN_GROUP_SECRET - 1)])
def test_group_seeds_need_a_secret(secret: str) -> None:
    with pytest.raises(ValueError, match="ARMGYM_SEED_SECRET"):
        group_seed("run-a", 3, HONEST, secret)
