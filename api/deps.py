"""What a route needs, as Annotated dependencies: the farm, a database session, and the caller's
API key with a scope. The key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`,
declared to OpenAPI as two security schemes (either one will do), so /docs and generated clients
know how to send it; keys are compared by their SHA-256 (store/keys.py), in constant time, kept
for a few seconds once found valid (api/keycache.py), and each key has a request rate limit
(api/ratelimit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from store import keys

from .farm import Farm

AUTH_HELP = "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"

# auto_error=False: a missing key is answered by `authorize` with the API's own 401 body.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="`Authorization: Bearer <key>`")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader",
                              description="`X-API-Key: <key>`")
# OpenRLHF sends no headers: its route also takes the key in the URL.
API_KEY_QUERY = APIKeyQuery(name="api_key", auto_error=False, scheme_name="apiKeyQuery",
                            description="`?api_key=<key>` (POST /openrlhf/get_reward only)")


async def get_farm(request: Request) -> Farm:
    """Async: FastAPI runs a plain function dependency in the thread pool, where it would wait
    behind every waiting client's database check."""
    return request.app.state.farm  # type: ignore[no-any-return]


FarmDep = Annotated[Farm, Depends(get_farm)]


def get_session(farm: FarmDep) -> Iterator[Session]:
    """One session per request, closed when the response is sent."""
    with farm.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def header_token(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request's headers carry: X-API-Key, else a Bearer token. The one reading of
    them, for the routes and for the OpenEnv mount (which sees raw headers)."""
    token = x_api_key
    if token is None and authorization:
        kind, _, value = authorization.partition(" ")
        token = value.strip() if kind.lower() == "bearer" else None
    return token


def lookup(farm: Farm, token: str) -> keys.KeyInfo | None:
    """The key behind `token` from the database (a thread pool call), kept in the key cache
    when found."""
    with farm.sessions() as session:
        info = keys.authenticate(session, token)
    if info is not None:
        farm.key_cache.put(token, info)
    return info


async def authorize(farm: Farm, token: str | None, scope: str,
                    how: str = AUTH_HELP) -> keys.KeyInfo:
    """The key behind `token` if it has `scope`; 401 / 403 otherwise. A key in the key cache
    (api/keycache.py) is checked without leaving the event loop; the database read, in the
    thread pool, only when it is not."""
    if not token:
        raise HTTPException(401, f"missing API key: {how}",
                            headers={"WWW-Authenticate": "Bearer"})
    info = farm.key_cache.get(token)
    if info is None:
        info = await run_in_threadpool(lookup, farm, token)
    if info is None:
        raise HTTPException(401, "unknown or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})
    if scope not in info.scopes:
        raise HTTPException(403, f"this API key lacks the '{scope}' scope")
    await farm.rate_limit.check(info.id)
    return info


class KeyCheck(HTTPBearer):
    """A route's dependency on the caller's key with `scope` (401 / 403 otherwise). It is the
    bearer scheme itself, with the X-API-Key scheme as its one sub-dependency: OpenAPI still
    declares both (either one will do), while a request solves two dependencies for its key,
    not four (the key's, each scheme's, the farm's again): FastAPI's dependency solving was
    a fifth of a duplicate /step's server time. Neither scheme parses the headers:
    header_token does, exactly as for the OpenEnv mount. Async, like every dependency of the
    duplicate /step's path: a plain function would run in the thread pool."""

    def __init__(self, scope: str) -> None:
        super().__init__(auto_error=False, scheme_name=BEARER.scheme_name,
                         description=BEARER.model.description)
        self.scope = scope

    async def __call__(  # type: ignore[override]
            self, request: Request,
            _header: Annotated[object, Security(API_KEY_HEADER)]) -> keys.KeyInfo:
        headers = request.headers
        return await authorize(request.app.state.farm,
                               header_token(headers.get("authorization"),
                                            headers.get("x-api-key")), self.scope)


SubmitKey = Annotated[keys.KeyInfo, Depends(KeyCheck(keys.SUBMIT))]
ReadKey = Annotated[keys.KeyInfo, Depends(KeyCheck(keys.READ))]
AdminKey = Annotated[keys.KeyInfo, Depends(KeyCheck(keys.ADMIN))]
READ = Depends(KeyCheck(keys.READ))
ADMIN = Depends(KeyCheck(keys.ADMIN))
