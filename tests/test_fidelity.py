"""The fidelity table: the cost layer + llvm-mca against published Neoverse V2 figures (real
llvm-mca). A row drifting outside its agreed band fails; docs/cost-model.md carries the table."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from toolchain import tools
from toolchain.gates.performance import fidelity, mca

COST_MODEL_PAGE = Path(__file__).resolve().parents[1] / "docs" / "cost-model.md"
README = Path(__file__).resolve().parents[1] / "README.md"


def _rows(page: Path, section: str = "") -> dict[str, list[str]]:
    """The table rows of a page (of its `section` only, when given), by micro-kernel: the cells
    after the name."""
    text = page.read_text()
    if section:
        text = text.split(section, 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in text.splitlines():
        if line.strip().startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[cells[0]] = cells[1:]
    return out


def test_the_table_covers_what_the_issue_asks_for() -> None:
    names = " ".join(r.name for r in fidelity.ROWS)
    assert len(fidelity.ROWS) >= 30
    for needle in ("post-index", "pre-index", "ldp", "stp", "lsl", "fmla", "fdiv", "fsqrt",
                   "sve", "gather", "whilelo", "cbnz", "chain", "dispatch", "prfm"):
        assert needle in names, needle
    for row in fidelity.ROWS:
        assert row.source.startswith("SWOG"), row.name
        assert row.kind in ("throughput", "latency")
        lo, hi = row.band
        assert lo <= 1.0 <= hi
        assert (lo >= 0.75 and hi <= 1.25) or row.note, f"{row.name}: a wide band says why"


@pytest.mark.parametrize("row", fidelity.ROWS, ids=lambda r: r.name)
def test_every_prediction_stays_inside_its_band(row: fidelity.Row) -> None:
    got = fidelity.predict(row, tools.tool("mca").path)
    lo, hi = row.band
    assert lo <= got / row.published <= hi, (row.name, got, row.published)


def test_the_writeback_adjustment_is_what_keeps_ldp_q_post_index_inside() -> None:
    row = next(r for r in fidelity.ROWS if r.name.startswith("ldp q, q, [x], #32"))
    assert fidelity.cost_lines(row.body) != list(row.body)
    # without the cost layer's adjustment llvm-mca rates it 1.5x the guide
    with tempfile.NamedTemporaryFile("w", suffix=".s") as fh:
        fh.write("\n".join(row.body) + "\n")
        fh.flush()
        totals = [int(json.loads(subprocess.run(
            [tools.tool("mca").path, *mca.MCA_FLAGS, f"-iterations={n}", "-json", fh.name],
            capture_output=True, text=True, check=True).stdout)["CodeRegions"][0]
            ["SummaryView"]["TotalCycles"]) for n in (100, 200)]
    assert (totals[1] - totals[0]) / 100 / len(row.body) > 1.25 * row.published
    assert fidelity.predict(row, tools.tool("mca").path) == pytest.approx(row.published)


def test_the_cost_model_page_carries_the_table() -> None:
    text = COST_MODEL_PAGE.read_text()
    for row in fidelity.ROWS:
        assert f"| `{row.name}` |" in text, row.name


def test_the_readme_carries_the_same_table() -> None:
    """The README's short form: every row, with the page's figure, published value, model
    value and band (the page adds sources and the llvm-mca 22 column)."""
    page, readme = _rows(COST_MODEL_PAGE), _rows(README, "## Cost-model fidelity")
    assert set(readme) == {f"`{row.name}`" for row in fidelity.ROWS} <= set(page)
    for name, cells in readme.items():
        figure, published, model, _mca22, band, _source = page[name]
        assert cells == [figure, published, model, band], name


@pytest.mark.parametrize(("text", "expected"), [
    ("ldp q1, q2, [x8], #0x40", ["ldp q1, q2, [x8]", "add x8, x8, #64"]),  # objdump's form
    ("ldp q1, q2, [x8], #64", ["ldp q1, q2, [x8]", "add x8, x8, #64"]),
    ("ldp q1, q2, [x8, #-0x20]!", ["ldp q1, q2, [x8, #-32]", "sub x8, x8, #32"]),
    ("ldp q0, q1, [sp], #-32", ["ldp q0, q1, [sp]", "sub sp, sp, #32"]),
    ("ldr q0, [x1], #0x10", ["ldr q0, [x1]", "add x1, x1, #16"]),
    ("strb w0, [x1, #1]!", ["strb w0, [x1, #1]", "add x1, x1, #1"]),
    ("ld1 { v0.4s, v1.4s }, [x2], #0x20", ["ld1 { v0.4s, v1.4s }, [x2]", "add x2, x2, #32"]),
    ("ld1 { v0.4s }, [x0], x3", ["ld1 { v0.4s }, [x0]", "add x0, x0, x3"]),
    ("ld1 { v0.s }[1], [x0], #4", ["ld1 { v0.s }[1], [x0]", "add x0, x0, #4"]),
    ("ldp q1, q2, [x8, #-32]", None),  # no writeback: priced as it is
    ("ldr x0, [x1, x2, lsl #3]", None),
    ("ldraa x0, [x1, #8]!", None),  # not a plain access
    ("stg x0, [x1], #16", None),
])
def test_writeback_accesses_are_rewritten_in_every_spelling(text: str,
                                                            expected: list | None) -> None:
    assert mca.writeback(text) == expected
