"""The bench mix's hostile items come from corpus cases named in bench.mix.HOSTILE_CASES, so a
case added to tests/hostile/ leaves the mix (and recordings of it, bench.verdicts) unchanged,
and a named case that disappears or stops fitting stops the build with its name."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package

from bench import mix  # noqa: E402
from toolchain import kernels  # noqa: E402

NEW_CASE = b"""// case: a case added after the list was pinned
// category: syscall-stub
// expect: object_rejected
kernel:
    svc #0
    ret
"""


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the real corpus, to add to and take from."""
    copy = tmp_path / "hostile"
    shutil.copytree(mix.CORPUS_DIR, copy)
    return copy


def variants() -> list[kernels.Variant]:
    return kernels.suite()[:2]


def test_every_named_case_exists_and_fits() -> None:
    pool = mix.hostile(variants())
    assert len(pool) == len(mix.HOSTILE_CASES) * (1 + len(variants()))
    assert len(set(mix.HOSTILE_CASES)) == len(mix.HOSTILE_CASES)


def test_an_added_case_changes_nothing(corpus: Path) -> None:
    before = mix.hostile(variants(), corpus=corpus)
    (corpus / "00_added_later.s").write_bytes(NEW_CASE)
    assert mix.unfit(mix.load_case(corpus / "00_added_later.s"), 1 << 20) is None  # it would fit
    assert mix.hostile(variants(), corpus=corpus) == before
    assert mix.unpinned(corpus) == ["00_added_later"]
    assert not any("added after" in label for _, label, _ in before)


def test_a_named_case_that_is_gone_stops_the_build(corpus: Path) -> None:
    (corpus / "22_rept_bomb.s").unlink()
    with pytest.raises(SystemExit, match=r"'22_rept_bomb' \(HOSTILE_CASES\) is gone"):
        mix.hostile(variants(), corpus=corpus)


def test_a_named_case_that_no_longer_fits_stops_the_build(corpus: Path) -> None:
    path = corpus / "02_hvc.s"
    path.write_bytes(path.read_bytes().replace(b"hvc", b"hvc @SECRET_PATH@", 1))
    with pytest.raises(SystemExit, match=r"'02_hvc' \(HOSTILE_CASES\) no longer fits the mix: "
                                         r"has placeholders"):
        mix.hostile(variants(), corpus=corpus)
