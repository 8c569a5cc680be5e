"""A run in a few lines of text (summary.txt) and the same figures as JSON (summary.json), taken
from the store's views so they agree with the API and the example queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data import RunHistory


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def as_json(history: RunHistory) -> dict[str, Any]:
    return {"run_id": history.run_id, "totals": history.totals, "steps": history.steps,
            "outcomes": history.outcomes, "best": history.best,
            "attempts_without_step": history.unstepped}


def text(history: RunHistory) -> str:
    t, steps = history.totals, history.steps
    lines = [f"run {history.run_id}: {len(steps)} steps"
             + (f" ({steps[0]['step']}-{steps[-1]['step']})" if steps else "")
             + f", {t['attempts']} attempts, {t['scored'] or 0} scored, "
             f"{t['infra_errors'] or 0} infra_error (dropped, not scored)"]
    if history.unstepped:
        lines.append(f"{history.unstepped} attempts have no step and appear only in the totals")
    if steps:
        first, last = steps[0], steps[-1]
        lines.append(f"correctness {_pct(first['correctness_rate'])} (step {first['step']}) -> "
                     f"{_pct(last['correctness_rate'])} (step {last['step']}); "
                     f"overall {_pct(t['correctness_rate'])}")
        lines.append(f"mean reward {_num(first['mean_reward'])} (step {first['step']}) -> "
                     f"{_num(last['mean_reward'])} (step {last['step']}); "
                     f"overall {_num(t['mean_reward'])}")
    if history.best:
        b = history.best
        lines.append(f"best speedup {b['speedup']:.2f}x ({b['variant_id']}, step {b['step']}, "
                     f"attempt {b['attempt_id']})")
    else:
        lines.append("best speedup: no verified attempt with a measured speedup")
    lines.append("outcomes: " + ", ".join(f"{o['outcome']} {o['attempts']}"
                                          for o in history.outcomes))
    return "\n".join(lines) + "\n"


def write(history: RunHistory, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    txt, js = out / "summary.txt", out / "summary.json"
    txt.write_text(text(history))
    js.write_text(json.dumps(as_json(history), indent=2, default=str) + "\n")
    return txt, js
