"""Gate 3: correctness by tests under qemu-aarch64 against the variant's C reference."""

from .compare import judge
from .gate import NAME, run, run_timed

__all__ = ["NAME", "judge", "run", "run_timed"]
