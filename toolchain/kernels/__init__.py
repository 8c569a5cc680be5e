"""The kernel suite: every variant the farm can score, generated from templates x parameters.

`suite()` is built once per process and is deterministic (sorted by id), so ids, C sources and
their hashes are stable across processes and machines.
"""

from __future__ import annotations

from functools import cache

from toolchain.kernels.model import Arg, DType, Signature, Tolerance, Variant
from toolchain.kernels.split import split_of
from toolchain.kernels.templates import TEMPLATES, build_all

__all__ = [
    "Arg",
    "DType",
    "Signature",
    "Tolerance",
    "Variant",
    "filter_variants",
    "get",
    "odd_shaped",
    "split_of",
    "suite",
    "templates",
]


@cache
def suite() -> tuple[Variant, ...]:
    """All variants, sorted by id."""
    variants = sorted(build_all(), key=lambda v: v.id)
    ids = [v.id for v in variants]
    if len(set(ids)) != len(ids):
        raise RuntimeError("kernel suite has duplicate variant ids")
    return tuple(variants)


@cache
def _by_id() -> dict[str, Variant]:
    return {v.id: v for v in suite()}


def get(variant_id: str) -> Variant:
    """The variant with this id; KeyError (naming the id) when there is none."""
    try:
        return _by_id()[variant_id]
    except KeyError:
        raise KeyError(f"unknown kernel variant id {variant_id!r}") from None


def odd_shaped(variant: Variant) -> bool:
    """True when some side of the variant is not a power of two (so its loops have tails)."""
    return any(side & (side - 1) for side in variant.params.values())


def templates() -> tuple[str, ...]:
    """Template names, sorted."""
    return tuple(sorted(t.name for t in TEMPLATES))


def filter_variants(
    template: str | None = None,
    dtype: DType | str | None = None,
    difficulty: int | None = None,
    split: str | None = None,
) -> list[Variant]:
    """Variants matching every given criterion (None matches all), in suite order."""
    want_dtype = DType(dtype) if dtype is not None else None
    return [
        v
        for v in suite()
        if (template is None or v.template == template)
        and (want_dtype is None or v.dtype is want_dtype)
        and (difficulty is None or v.difficulty == difficulty)
        and (split is None or v.split == split)
    ]
