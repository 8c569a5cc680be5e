"""Running kernels: the per-variant harness, the link, the emulator runs, the C reference's
records and the execution guard. The correctness and performance gates both use it; it decides
nothing about a submission itself."""

from .runs import (
    EXE_NAME,
    MAP_NAME,
    Linked,
    Reference,
    ReferenceRun,
    Timed,
    guarded_run,
    link,
    needs_abs_run,
    prepare,
    qemu_argv,
    reference,
    timed,
    timing_test,
)

__all__ = ["EXE_NAME", "MAP_NAME", "Linked", "Reference", "ReferenceRun", "Timed", "guarded_run",
           "link", "needs_abs_run", "prepare", "qemu_argv", "reference", "timed", "timing_test"]
