"""Pull the assembly out of a raw model completion (the `format` reward component)."""

from __future__ import annotations

import re

_BLOCK = re.compile(r"<assembly>(.*?)</assembly>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def extract_assembly(completion: str) -> str | None:
    """The text of the single <assembly> block, without a Markdown fence; None if malformed.

    Exactly one block is required: with two, which one to score would be a choice a policy
    could exploit.
    """
    blocks = _BLOCK.findall(completion)
    if len(blocks) != 1 or completion.lower().count("<assembly>") != 1:
        return None
    body = blocks[0]
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    return body.strip("\n") + "\n" if body.strip() else None
