"""Gate 3: correctness by tests under qemu-aarch64 against the variant's C reference."""

from .gate import NAME, prefetch, run, settle

__all__ = ["NAME", "prefetch", "run", "settle"]
