"""What the adapters share: getting text out of a framework's completion object, and what to do
with attempts that must not be scored (infra_error, or unfinished in time)."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..client import Client
from ..errors import InfraErrorResult
from ..models import DEFAULT_PROFILE, StepResult

# none: leave None (the framework drops it); raise: stop the trainer; group_mean: the mean of the
# scored rewards in the same group (zero advantage under group normalisation); zero: 0.0.
ON_INFRA = ("none", "raise", "group_mean", "zero")


@lru_cache(maxsize=16)
def shared_client(base_url: str | None, api_key: str | None, timeout_s: float,
                  profile: str | None = None) -> Client:
    """One client (and connection pool) per farm, key and profile for the life of the process,
    shared by every reward function and environment instance that names them."""
    return Client(base_url, api_key, timeout_s=timeout_s, profile=profile or DEFAULT_PROFILE)


def completion_text(completion: Any) -> str:
    """Text of a completion: a plain string (standard format) or a list of chat messages
    (conversational format, `[{"role": "assistant", "content": ...}]`, content possibly a list of
    typed parts). Assistant turns are joined; the farm's format gate finds the assembly."""
    if isinstance(completion, str):
        return completion
    messages = [completion] if isinstance(completion, Mapping) else list(completion)
    texts = [_content(m.get("content")) for m in messages
             if isinstance(m, Mapping) and m.get("role", "assistant") == "assistant"]
    return "\n".join(texts)


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, Mapping) and p.get("type", "text") == "text")
    return ""


def group_key(value: Any) -> Hashable:
    """A hashable identity for a prompt (strings, or lists of message dicts)."""
    if isinstance(value, Hashable):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def settle(step: StepResult, groups: Sequence[Hashable], on_infra: str) -> list[float | None]:
    """The step's rewards with dropped results handled as `on_infra` says."""
    if on_infra not in ON_INFRA:
        raise ValueError(f"on_infra must be one of {', '.join(ON_INFRA)}")
    rewards = step.rewards
    dropped = [i for i, r in enumerate(step.results) if r.dropped]
    if not dropped or on_infra == "none":
        return rewards
    if on_infra == "raise":
        first = step.results[dropped[0]]
        raise InfraErrorResult(f"{len(dropped)} of {len(rewards)} attempts not scored "
                               f"(first: {first.variant_id}, {first.status}, "
                               f"{first.error_kind}: {first.message})")
    if on_infra == "zero":
        return [0.0 if r is None else r for r in rewards]
    by_group: dict[Hashable, list[float]] = {}
    for g, r in zip(groups, rewards, strict=True):
        if r is not None:
            by_group.setdefault(g, []).append(r)
    out = list(rewards)
    for i in dropped:
        scored = by_group.get(groups[i])
        out[i] = sum(scored) / len(scored) if scored else None
    return out
