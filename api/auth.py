"""API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`, with scopes
(submit, read, admin). Keys are compared by their SHA-256 (store/keys.py), in constant time;
each key has a request rate limit (api/ratelimit.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException

from store import keys

from .farm import Farm, FarmDep

AUTH_HELP = "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def header_token(authorization: str | None, x_api_key: str | None) -> str | None:
    token = x_api_key
    if token is None and authorization:
        kind, _, value = authorization.partition(" ")
        token = value.strip() if kind.lower() == "bearer" else None
    return token


def authorize(farm: Farm, token: str | None, scope: str, how: str = AUTH_HELP) -> keys.KeyInfo:
    """The key behind `token` if it has `scope`; 401 / 403 otherwise."""
    if not token:
        raise HTTPException(401, f"missing API key: {how}",
                            headers={"WWW-Authenticate": "Bearer"})
    with farm.sessions() as session:
        info = keys.authenticate(session, token)
    if info is None:
        raise HTTPException(401, "unknown or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})
    if scope not in info.scopes:
        raise HTTPException(403, f"this API key lacks the '{scope}' scope")
    farm.rate_limit.check(info.id)
    return info


def require(scope: str) -> Callable[..., keys.KeyInfo]:
    """A dependency that yields the caller's key, or answers 401 / 403."""

    def dependency(farm: FarmDep,
                   authorization: str | None = Header(default=None),
                   x_api_key: str | None = Header(default=None)) -> keys.KeyInfo:
        return authorize(farm, header_token(authorization, x_api_key), scope)

    return dependency


SubmitKey = Annotated[keys.KeyInfo, Depends(require(keys.SUBMIT))]
READ = Depends(require(keys.READ))
