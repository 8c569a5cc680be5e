"""The FastAPI application: lifespan (build the Farm), middleware, error shapes, routers.

  uvicorn --factory api.app:create_app          (settings from ARMGYM_* variables)

With neither ARMGYM_BROKER_URL nor ARMGYM_DATABASE_URL set this is the embedded farm: SQLite and
an in-process worker pool, the same routes and the same pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from store.settings import FarmSettings
from toolchain import VERIFIER_VERSION

from . import errors, security
from .edge import Edge
from .farm import Farm
from .routes import attempts, baselines, batches, best, gym, keys, openrlhf, runs, ui

log = logging.getLogger(__name__)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """One readable sentence first (malformed JSON is 400, a wrong shape 422), details after."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        where = next(e for e in errors if e["type"] == "json_invalid")["loc"]
        return JSONResponse(status_code=400, content={
            "detail": f"malformed JSON body (near {where[-1] if where else '?'})",
            "errors": errors})
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:10])
    return JSONResponse(status_code=422, content={"detail": text, "errors": errors[:100]})


def create_app(settings: FarmSettings | None = None) -> FastAPI:
    settings = settings or FarmSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        farm = Farm.start(settings)
        farm.hub.bind(asyncio.get_running_loop())
        farm.health.start()
        farm.dispatcher.on_done(farm.hub.notify)
        app.state.farm = farm
        try:
            yield
        finally:
            farm.close()

    app = FastAPI(
        title="ARM-Gym verification farm",
        version=VERIFIER_VERSION,
        description="Scores AArch64 kernels written by language models: GNU as, QEMU tests, "
                    "cost model. Submitting and reading history need an API key "
                    "(`Authorization: Bearer <key>`).",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    errors.install(app)
    security.install_log_redaction()
    app.add_middleware(Edge, limit=settings.max_request_bytes)

    @app.get("/metrics", include_in_schema=False)
    def prometheus(request: Request) -> Response:
        return request.app.state.farm.metrics.render()  # type: ignore[no-any-return]

    for router in (gym.router, baselines.router, batches.router, attempts.router, best.router,
                   runs.router, runs.errors, keys.router, openrlhf.router, ui.router):
        app.include_router(router, responses=errors.RESPONSES)
    _mount_openenv(app, settings)
    return app


def _mount_openenv(app: FastAPI, settings: FarmSettings) -> None:
    """The OpenEnv environment under /openenv, when openenv-core is installed (scripts/setup.sh
    installs it; without it the farm's own routes are unchanged)."""
    try:
        from . import openenv_env
    except ImportError as exc:
        log.warning("OpenEnv environment not served (%s): install openenv-core", exc)
        return
    openenv_env.mount(app, settings.openenv_max_sessions)
