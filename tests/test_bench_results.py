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


def test_the_table_judges_issue_15s_thresholds(tmp_path: Path) -> None:
    """Launches per verification <= 2.5, the farm at >= 85% of its floor and >= 75x the
    original's design: the issue's targets, stricter than the brief's 80% and 5x."""
    lane = {"per_s": 10.0}
    floor = {"sandboxed_1": lane, "sandboxed_2": lane, "bare_1": lane, "bare_2": lane,
             "launches": 1200, "launches_by_tool": {"qemu-aarch64": 1200},
             "recorded_tool_s": 9.0, "recorded_wall_s": 10.0}
    farm = {"per_s": 8.2, "outcome_counts": {}, "worker_main_rss_mib": {}, "api_rss_mib": {},
            "pool_process_rss_mib": []}
    results: dict = {"n": 512, "cpus": 2, "composition": {}, "elapsed_s": 60.0, "floor": floor,
                     "farm": farm, "original": {"n": 64, "per_s": 0.1, "mean_s": 10.0}}
    text = report.table(results)
    assert "2.34" in text and "[met: <= 2.5]" in text
    assert "farm/floor = 82% [NOT met: >= 0.85]" in text
    assert "farm/original = 82.0x [met: >= 75]" in text
    floor["launches"], farm["per_s"], results["original"]["per_s"] = 1300, 8.6, 0.12
    text = report.table(results)
    assert "[NOT met: <= 2.5]" in text and "farm/floor = 86% [met: >= 0.85]" in text
    assert "farm/original = 71.7x [NOT met: >= 75]" in text
    farm.update(passes_per_s=[9.1, 8.6, 7.9], outcomes_same_every_pass=True)
    assert "9.10 / 8.60 / 7.90" in report.table(results)  # the passes behind the median
    farm["reference_paths_per_pass"] = [{"served": 500, "start": 70}, {"served": 480,
                                                                        "no_room": 20}]
    assert "C reference runs, last pass" in (text := report.table(results))
    assert "{'served': 480, 'no_room': 20}" in text
    # a farm of 3 pool processes is judged against the floor replayed with 3 lanes
    floor["sandboxed_3"], floor["bare_3"], farm["concurrency"] = {"per_s": 12.0}, lane, 3
    text = report.table(results)
    assert "farm/floor = 72% [NOT met: >= 0.85] (3 lanes)" in text and "vs 2 lanes 86%" in text
    assert "floor, sandboxed, 3 lanes" in text
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(results))
    report.main([str(saved)])
    assert (tmp_path / "results.png").stat().st_size > 0
