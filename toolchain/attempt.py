"""The attempt context: what one verification knows so far, handed from gate to gate.

Each gate reads what earlier gates left (the decoded text, the variant, the object, the C
reference run, the recorded timing test, the measurement) and adds its own; nothing passes
between gates through module state. `close` ends what the attempt started (a reference run in
the background, its scratch).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import scratch as scratch_dirs
from .errors import GateName
from .execution import Linked, ReferenceRun, Timed
from .gates.performance.measurement import Measurement
from .kernels.model import Variant
from .settings import Settings
from .verdict import GateResult


@dataclass
class Attempt:
    variant_id: str
    seed: int
    submission: str | bytes  # as received
    completion: bool  # a raw completion: the assembly is inside <assembly> tags
    settings: Settings
    text: str = ""  # the assembly, once the input and format gates accepted it
    variant: Variant | None = None  # once the variant gate found it
    object: Path | None = None  # once the assembler made it (in `scratch`)
    linked: Linked | None = None  # the link and the tests' guard, made by the object gate
    timed: Timed | None = None  # the correctness run's record of the timing test
    measurement: Measurement | None = None  # the performance gate's, for the cross-check
    results: list[GateResult] = field(default_factory=list)
    _scratch: Path | None = None
    _reference: ReferenceRun | None = None

    @property
    def scratch(self) -> Path:
        """The attempt's private directory (made on first use, removed by `close`)."""
        if self._scratch is None:
            self._scratch = scratch_dirs.make("verify")
        return self._scratch

    @property
    def reference(self) -> ReferenceRun:
        """The C reference on the attempt's tests (started by whichever gate wants it early)."""
        if self._reference is None:
            if self.variant is None:
                raise RuntimeError("the reference run needs the variant gate first")
            self._reference = ReferenceRun(self.variant, self.seed, self.settings)
        return self._reference

    def result(self, name: GateName) -> GateResult | None:
        return next((r for r in self.results if r.name == name), None)

    def close(self) -> None:
        if self._reference is not None:
            self._reference.settle()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
