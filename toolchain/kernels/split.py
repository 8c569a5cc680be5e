"""Deterministic train / eval split.

A variant's split depends on its id alone, so adding templates or variants never moves an
existing variant from one side to the other.
"""

from __future__ import annotations

import hashlib
from typing import Literal

#: Per mille of ids that go to the eval split (about 10%).
EVAL_PER_MILLE = 100


def split_of(variant_id: str) -> Literal["train", "eval"]:
    """The split of `variant_id`: eval iff its sha256's first 8 bytes (big-endian) % 1000 < 100."""
    digest = hashlib.sha256(variant_id.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 1000
    return "eval" if bucket < EVAL_PER_MILLE else "train"
