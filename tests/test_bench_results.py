"""The suite writes results.json part by part: a part that raises is recorded with its error and
marked in the table, and what the parts before it measured is on disk already."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not an installed package

from bench import report  # noqa: E402


def test_a_crashed_part_keeps_the_earlier_ones_and_is_marked(tmp_path: Path) -> None:
    results: dict = {"n": 2, "cpus": 2, "composition": {}, "elapsed_s": 1.0}
    with report.part(results, "soak", tmp_path):
        results["soak_done"] = True
    assert json.loads((tmp_path / "results.json").read_text())["soak_done"] is True
    with report.part(results, "load", tmp_path):
        raise OSError("the API did not start")
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["soak_done"] is True
    assert on_disk["crashed"] == {"load": "OSError: the API did not start"}
    assert "load: CRASHED" in report.table(results)
    assert not (tmp_path / "results.json.part").exists()


def test_an_interrupt_still_writes_what_was_measured(tmp_path: Path) -> None:
    results: dict = {"n": 1, "floor": {"per_s": 1.0}}
    try:
        with report.part(results, "core", tmp_path):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("an interrupt must not be swallowed as a crashed part")
    assert json.loads((tmp_path / "results.json").read_text())["floor"] == {"per_s": 1.0}
