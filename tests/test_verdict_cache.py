"""The content-addressed verdict cache and content-derived seeds, with the real gates."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from conftest import HONEST, asm, baseline

from toolchain import verdict_cache
from toolchain.errors import ErrorKind
from toolchain.settings import Settings, get_settings
from toolchain.verify import derive_seed, verify


def cached_settings(tmp_path: Path) -> Settings:
    """The session's settings with the cache on, in a directory of this test's own (the tool
    caches stay shared: only the verdicts move)."""
    settings = get_settings().replace(verdict_cache=True)
    verdict_cache._CACHES[settings.cache_dir / "verdicts"] = verdict_cache.VerdictCache(
        tmp_path / "verdicts")
    return settings


def test_identical_attempt_is_answered_from_the_cache(tmp_path: Path) -> None:
    settings = cached_settings(tmp_path)
    seed = secrets.randbits(63)
    text = baseline(HONEST, "gcc")
    fresh = verify(HONEST, text, seed, settings=settings)
    again = verify(HONEST, text, seed, settings=settings)
    assert fresh.passed and not fresh.cached
    assert again.cached and again.to_json()["cached"] is True
    assert again.canonical() == fresh.canonical()
    assert again.timings == fresh.timings  # the original verification's figures, not zeros
    other_seed = verify(HONEST, text, seed + 1, settings=settings)
    assert not other_seed.cached and other_seed.seed == seed + 1


def test_wrong_kernels_are_cached_too_and_infra_errors_never(tmp_path: Path) -> None:
    settings = cached_settings(tmp_path)
    seed = secrets.randbits(63)
    wrong = asm("    ret")
    first = verify(HONEST, wrong, seed, settings=settings)
    assert first.error_kind is ErrorKind.wrong_output and not first.cached
    assert verify(HONEST, wrong, seed, settings=settings).cached
    broken = settings.replace(bwrap_path="/nonexistent/bwrap")
    for _ in range(2):
        v = verify(HONEST, baseline(HONEST, "clang"), seed, settings=broken)
        assert v.error_kind is ErrorKind.infra_error and not v.cached


def test_a_corrupt_cache_file_is_a_miss_not_an_error(tmp_path: Path) -> None:
    settings = cached_settings(tmp_path)
    seed = secrets.randbits(63)
    text = asm("    ret")
    key = verdict_cache.key(HONEST, text, seed, False, settings)
    path = tmp_path / "verdicts" / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"variant_id": ')
    v = verify(HONEST, text, seed, settings=settings)
    assert v.error_kind is ErrorKind.wrong_output and not v.cached
    assert verify(HONEST, text, seed, settings=settings).cached  # rewritten whole


def test_key_covers_what_decides_a_verdict() -> None:
    s = get_settings()
    base = verdict_cache.key(HONEST, "x", 1, False, s)
    assert base == verdict_cache.key(HONEST, b"x", 1, False, s)
    others = {
        verdict_cache.key(HONEST, "y", 1, False, s),
        verdict_cache.key(HONEST, "x", 2, False, s),
        verdict_cache.key(HONEST, "x", 1, True, s),
        verdict_cache.key("vec_add_n64_float32", "x", 1, False, s),
        verdict_cache.key(HONEST, "x", 1, False, s.replace(tests_per_attempt=5)),
    }
    assert base not in others and len(others) == 5
    assert base == verdict_cache.key(HONEST, "x", 1, False, s.replace(jobs=7))


def test_seed_from_content_is_stable_keyed_and_used_by_default() -> None:
    a = derive_seed(HONEST, "text", False, "")
    assert a == derive_seed(HONEST, b"text", False, "") and 0 <= a < 2 ** 63
    assert a != derive_seed(HONEST, "text", False, "deployment secret")
    assert a != derive_seed(HONEST, "text ", False, "")
    assert a != derive_seed(HONEST, "text", True, "")
    text = asm("    ret")
    assert verify(HONEST, text, settings=get_settings()).seed == derive_seed(HONEST, text, False,
                                                    get_settings().seed_secret)


def test_disk_layer_is_pruned_to_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr(verdict_cache, "DISK_ENTRIES", 256 * 3)
    monkeypatch.setattr(verdict_cache, "PRUNE_EVERY", 1)
    cache = verdict_cache.VerdictCache(tmp_path)
    verdict = verify(HONEST, asm("    ret"), 7, settings=get_settings())
    keys = [f"00{i:062x}" for i in range(10)]  # all in one directory
    for k in keys:
        cache.put(k, verdict)
    kept = sorted(p.stem for p in (tmp_path / "00").glob("*.json"))
    assert kept == keys[-3:]  # the newest stay
