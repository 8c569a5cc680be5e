"""The one ASGI layer every HTTP request passes before the app: the request body limit, the
request metrics and `Cache-Control: no-store`.

They were three middlewares, each wrapping `send` again: a response then went through their
three wrappers and Starlette's own, on a duplicate /step (answered from memory in about a
millisecond) a tenth of the server's time. Here one wrapper does all three. Plain ASGI, not
Starlette's BaseHTTPMiddleware, which runs each request through an extra task and stream.
"""

from __future__ import annotations

import time

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics

NO_STORE = (b"cache-control", b"no-store")


class BodyTooLarge(Exception):
    pass


class Edge:
    """Refuse request bodies over `limit` bytes with 413, whether or not a Content-Length says
    so (chunked uploads are counted as they arrive); count and time every request (route
    label `unmatched` when no route took it); add `Cache-Control: no-store` to each response
    that sets none (responses carry verdicts and history, which no browser or proxy should
    keep)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status, seen = time.perf_counter(), 0, 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers") or []
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    message = {**message, "headers": [*headers, NO_STORE]}
            await send(message)

        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                await self._refuse(sending)
            else:
                try:
                    await self.app(scope, counting_receive, sending)
                except BodyTooLarge:
                    if not status:
                        await self._refuse(sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics = scope["app"].state.farm.metrics
            metrics.observe(scope["method"], route, status or 500, time.perf_counter() - start)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(status_code=413, content={
            "detail": f"request body larger than {self.limit} bytes (ARMGYM_MAX_REQUEST_BYTES)"})
        await response({"type": "http"}, _no_receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case, as ASGI servers give header names)."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
