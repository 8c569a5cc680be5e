"""Gates 4 and 5: cycles of what executes (llvm-mca, Neoverse V2) and the OSACA cross-check."""

from .gate import NAME, performance

__all__ = ["NAME", "performance"]
