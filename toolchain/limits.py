"""The input limits: the one check of what a submission may be before any tool sees it.

The input gate (pipeline.py) records a problem as an `input_rejected` verdict; the API calls the
same check before it stores an attempt, and refuses at once (413 or 422) the problems marked
`refused_early`: text too large to carry, or that PostgreSQL could not store (not UTF-8, NUL).
The rest (too many lines, nothing but whitespace) are the model's to learn from, so they are
stored and judged like any other attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .settings import Settings

Limit = Literal["encoding", "size", "nul", "lines", "empty"]
REFUSED_EARLY: frozenset[Limit] = frozenset({"encoding", "size", "nul"})


@dataclass(frozen=True)
class InputProblem:
    limit: Limit
    message: str

    @property
    def refused_early(self) -> bool:
        """The API refuses this before storing the attempt (its status: `status`)."""
        return self.limit in REFUSED_EARLY

    @property
    def status(self) -> int:
        """The HTTP status of an early refusal: 413 for size, else 422."""
        return 413 if self.limit == "size" else 422


def input_problem(text: str | bytes, settings: Settings) -> InputProblem | None:
    """The first limit `text` breaks, or None when it may go on to the gates."""
    if isinstance(text, str):
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            return InputProblem("encoding", "submission is not valid UTF-8 (it holds unpaired "
                                            "surrogates)")
    else:
        raw = bytes(text)
    if len(raw) > settings.max_source_bytes:
        return InputProblem("size", f"submission is {len(raw)} bytes; the limit is "
                                    f"{settings.max_source_bytes}")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputProblem("encoding", f"submission is not valid UTF-8 (byte offset "
                                        f"{exc.start})")
    if "\0" in decoded:
        return InputProblem("nul", f"submission contains a NUL byte (offset {raw.index(0)})")
    lines = decoded.count("\n") + (0 if decoded.endswith("\n") else 1)
    if lines > settings.max_source_lines:
        return InputProblem("lines", f"submission has {lines} lines; the limit is "
                                     f"{settings.max_source_lines}")
    if not decoded.strip():
        return InputProblem("empty", "submission is empty")
    return None
