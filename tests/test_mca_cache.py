"""llvm-mca's caches (per loop cycle and per whole listing) and `armgym prepare --warm`, with
the real tools: a cached figure is the one a fresh run gives, a damaged or misplaced entry is
not believed, and a warmed machine verifies a baseline's text with no llvm-mca or llvm-objdump
launch and the same verdict as a cold one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VEC_ADD_1024_LOOP, asm, baseline

from toolchain import decoder, kernels, warm
from toolchain.gates.performance import cache as figure_cache
from toolchain.gates.performance import mca
from toolchain.gates.performance.trace import Insn
from toolchain.settings import Settings, get_settings
from toolchain.verify import verify

VARIANT = "vec_add_n1024_float32"
COLD = ("mca", "mca-listing", "decoder", "perf-baselines", "references")
LOOP = [Insn(0, 0, "fadd", "fadd v0.4s, v0.4s, v1.4s"), Insn(4, 0, "add", "add x3, x3, #16"),
        Insn(8, 0, "cmp", "cmp x3, #4096"), Insn(12, 0, "b.ne", "b.ne .")]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Beside the session's cache, not under pytest's private /tmp directory: the sandboxed
    tools run as another user and must reach the cache's files."""
    path = Path(tempfile.mkdtemp(prefix="test-mca-cache-", dir=get_settings().cache_dir))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cold(root: Path) -> Settings:
    """The session's settings with the tool-figure caches empty (the guard, spawn helper,
    harnesses and compiled baselines shared, so nothing is downloaded or rebuilt)."""
    real = get_settings().cache_dir
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    for entry in os.listdir(real):
        if entry not in COLD and not entry.startswith("test-mca-cache-"):
            # hard links: the sandbox binds the cache's directories, not a link's target
            try:
                if (real / entry).is_dir():
                    shutil.copytree(real / entry, root / entry, copy_function=os.link)
                else:
                    os.link(real / entry, root / entry)
            except (FileNotFoundError, shutil.Error):
                # Another test process's temporary entry, removed while it was linked.
                if (real / entry).exists():
                    raise
    return get_settings().replace(cache_dir=root)


def forget(settings: Settings) -> None:
    """Drop this process's in-memory figures: what a fresh worker process would know."""
    for path in list(figure_cache._CACHES):
        if str(path).startswith(str(settings.cache_dir)):
            del figure_cache._CACHES[path]


def listing_file(settings: Settings, text: str) -> Path:
    return mca.listing_cache(settings)._path(mca.listing_key(text))


def fresh_listing(text: str, scratch: Path, settings: Settings) -> int:
    report = mca.run_mca(text, mca.LISTING_ITERATIONS, scratch, settings, untrusted=True)
    assert isinstance(report, dict)
    return sum(int(r["SummaryView"]["TotalCycles"]) for r in report["CodeRegions"])


def test_a_cached_figure_is_a_fresh_runs(tmp_path: Path) -> None:
    settings = cold(tmp_path / "cache")
    text = baseline(VARIANT)
    first = mca.whole_listing(text, settings)
    assert listing_file(settings, text).exists()
    forget(settings)
    again = mca.whole_listing(text, settings)  # from the file
    assert again == first
    assert again["total_cycles"] == fresh_listing(text, tmp_path, settings)
    costs = mca.cycle_costs([LOOP], tmp_path, settings)
    forget(settings)
    assert mca.cycle_costs([LOOP], tmp_path, settings) == costs
    refused = mca.whole_listing(asm(VEC_ADD_1024_LOOP), settings)  # `1b`: llvm-mca refuses it
    assert refused["total_cycles"] is None and "line 12:" in str(refused["error"])
    assert listing_file(settings, asm(VEC_ADD_1024_LOOP)).exists()
    forget(settings)
    assert mca.whole_listing(asm(VEC_ADD_1024_LOOP), settings) == refused
    report = mca.run_mca(asm(VEC_ADD_1024_LOOP), mca.LISTING_ITERATIONS, tmp_path, settings,
                         untrusted=True)
    assert isinstance(report, bytes) and b":12:" in report.splitlines()[0]
    other = cold(tmp_path / "other")
    assert mca.cycle_costs([LOOP], tmp_path, other) == costs  # a fresh llvm-mca run


def test_a_damaged_or_misplaced_entry_is_not_believed(tmp_path: Path) -> None:
    settings = cold(tmp_path / "cache")
    text, other = baseline(VARIANT), baseline(VARIANT, "gcc")
    true, theirs = mca.whole_listing(text, settings), mca.whole_listing(other, settings)
    assert true != theirs
    path = listing_file(settings, text)
    sealed = path.read_text()
    digest, _, value = sealed.partition("\n")
    for damage in ("", "garbage", sealed[:-3], digest + "\n1 1\n",  # torn, forged figure
                   value,  # the old format, unsealed
                   listing_file(settings, other).read_text()):  # another text's entry
        path.write_text(damage)
        forget(settings)
        assert mca.whole_listing(text, settings) == true, damage
        assert path.read_text() == sealed  # analysed again, and rewritten
    mca.cycle_costs([LOOP], tmp_path, settings)
    key = mca.hashlib.sha256("\n".join(mca.mca_lines(LOOP)).encode()).hexdigest()
    cycle_file = mca.cache_for(settings)._path(key)
    good = cycle_file.read_text()
    cycle_file.write_text("1 1 100\n")  # an unsealed figure, as an older verifier wrote
    forget(settings)
    assert mca.cycle_costs([LOOP], tmp_path, settings) == \
        mca.cycle_costs([LOOP], tmp_path, cold(tmp_path / "fresh"))
    assert cycle_file.read_text() == good


def test_a_hostile_text_fills_its_own_entry_only(tmp_path: Path) -> None:
    """Regions and comments a submission writes change its own text, so its own key: the plain
    text's figure stays the fresh run's whichever comes first."""
    settings = cold(tmp_path / "cache")
    text = baseline(VARIANT)
    hostile = ("# LLVM-MCA-BEGIN a\n" + text + "# LLVM-MCA-END a\n# LLVM-MCA-BEGIN b\n"
               + "    fdiv d0, d0, d0\n" * 40 + "# LLVM-MCA-END b\n")
    mine = mca.whole_listing(hostile, settings)
    plain = mca.whole_listing(text, settings)
    assert mine["regions"] == 2 and mine["total_cycles"] != plain["total_cycles"]
    assert plain["total_cycles"] == fresh_listing(text, tmp_path, settings)
    forget(settings)
    assert mca.whole_listing(hostile, settings) == mine


def test_prepare_warm_fills_the_caches_an_attempt_reads(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """After warming a variant's baselines, verifying the clang -O2 text launches neither
    llvm-mca nor llvm-objdump, and its verdict is a cold machine's."""
    from toolchain import baselines

    text = baselines.get(kernels.get(VARIANT), "clang", "-O2", settings=get_settings()).assembly
    seed = 2027
    expected = verify(VARIANT, text, seed, settings=cold(tmp_path / "cold")).to_json(False)
    assert expected["passed"], expected["message"]
    settings = cold(tmp_path / "warm")
    done = warm.warm([kernels.get(VARIANT)], settings, ("-O2", "-O3"), jobs=2)
    assert [w.error for w in done] == [None] * 4
    for folder in ("mca", "mca-listing", "decoder", "perf-baselines"):
        assert any((settings.cache_dir / folder).rglob("*")), folder

    def launched(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tool launch the warm-up should have saved")

    monkeypatch.setattr(mca, "run_mca", launched)
    monkeypatch.setattr(decoder, "_run", launched)
    got = verify(VARIANT, text, seed, settings=settings).to_json(False)
    assert got["passed"], got["message"]
    assert got == expected
