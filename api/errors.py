"""Error answers, declared: every status the API can give is in its OpenAPI schema with the
body it really has, `{"detail": "<one readable sentence>", "errors": [...]}` (errors only for
request validation), and a database that cannot be reached is 503 with Retry-After."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from store.db import is_outage

from .schemas import Problem


def _declared(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


# Every router's operations declare these (a route adds its own, e.g. 202 or 503 bodies).
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _declared("malformed JSON body"),
    401: _declared("missing, unknown or revoked API key"),
    403: _declared("the API key lacks the scope this needs"),
    404: _declared("no such attempt, batch, key, kernel or variant (also a variant id in a "
                   "submission)"),
    409: _declared("one idempotency key used for two attempts of one request"),
    413: _declared("request body, batch or assembly over its limit"),
    422: _declared("the request's shape or values are wrong (`errors` lists each)"),
    429: _declared("queue full, or this key's request rate exceeded: see Retry-After"),
    503: _declared("the database is unreachable, or results are not ready: see Retry-After"),
}


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """An unreachable database is 503 with Retry-After, not a 500: nothing the client sent was
    wrong, and what it submitted before is safe in the store. A value the database refuses
    (a NUL byte in a text field, say) is the request's fault: 422."""
    if is_outage(exc):
        retry = request.app.state.farm.settings.retry_after_s
        return JSONResponse(status_code=503, headers={"Retry-After": str(max(1, int(retry)))},
                            content={"detail": f"the database is unreachable; retry after "
                                               f"{retry} s"})
    if isinstance(exc, sa_exc.DataError):
        return JSONResponse(status_code=422, content={
            "detail": "a value in the request cannot be stored or searched for "
                      "(out of range, or a NUL character)"})
    raise exc


def install(app: FastAPI) -> None:
    app.add_exception_handler(sa_exc.DBAPIError, _database_error)
