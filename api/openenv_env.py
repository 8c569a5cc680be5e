"""The farm as an OpenEnv environment, served by openenv-core's own server (`HTTPEnvServer`:
HTTP reset/step/state, the `/ws` session protocol, /schema, /metadata, /health, /mcp) under
`/openenv` of the farm's app, so the farm's own /reset, /step and /health keep the original's
shape at the root.

    from openenv import GenericEnvClient
    with GenericEnvClient(base_url="http://farm:8000/openenv").sync() as env:
        first = env.reset(variant_id="relu_n64_float32", api_key=KEY)
        result = env.step({"assembly": "<assembly>...</assembly>", "completion": True})

An episode is one task: reset picks it (same parameters as POST /reset), one step verifies a
submission and ends the episode (`done`); further steps re-submit to the same task. Submitting
needs a key with the submit scope: OpenEnv's client sends no headers, so the key comes as the
`api_key` argument of reset (kept for the session, never reported back), or in an
`Authorization` / `X-API-Key` header, or `?api_key=` for clients that send them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException
from openenv.core.env_server import HTTPEnvServer
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import (
    Action,
    ConcurrencyConfig,
    EnvironmentMetadata,
    Observation,
    State,
)
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from toolchain import VERIFIER_VERSION
from toolchain.verdict import Verdict

from .deps import authorize, header_token
from .farm import Farm
from .observation import DEFAULT_PROFILE, check_profile, observation
from .routes.gym import ResetIn, StepIn, task, verify_one

PREFIX = "/openenv"
KEY_HELP = ("pass api_key=<key> to reset (OpenEnv's client sends no headers), or send "
            "'Authorization: Bearer <key>' / 'X-API-Key: <key>'")
_request_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("openenv_key",
                                                                          default=None)


class ArmGymAction(Action):
    """One submission for the episode's task."""

    assembly: str = Field(description="AArch64 assembly, or a raw completion with one "
                                      "<assembly> block when completion=true")
    completion: bool = False
    variant_id: str | None = Field(default=None, max_length=200,
                                   description="the task; defaults to the one reset chose "
                                               "(required on the stateless HTTP /step)")
    seed: int | None = Field(default=None, ge=0, lt=2**63,
                             description="per-attempt seed; defaults to the reset's")


class ArmGymObservation(Observation):
    """The original ARM-Gym's observation (reward under `profile`, speedup, cycles, baseline
    cycles, error kind and message, done) plus the task after reset and the verdict after
    step. `reward` is None after reset and for infra_error (the farm failed, not the model).

    Typed throughout, as openenv-core's observations are (pydantic models that its server
    dumps with `model_dump()` and documents at /schema): the verdict is the verifier's own
    model, so its JSON is the one the farm stores and /step answers, and /schema shows its
    schema rather than an object of anything."""

    variant_id: str
    seed: int
    profile: str = DEFAULT_PROFILE
    # the task (reset)
    c_source: str | None = None
    prototype: str | None = None
    signature: dict[str, Any] | None = None
    template: str | None = None
    dtype: str | None = None
    difficulty: int | None = None
    split: str | None = None
    baseline_cycles: float | None = None
    baseline_compiler: str | None = None
    # the verdict (step)
    passed: bool | None = None
    speedup: float | None = None
    cycles: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    attempt_id: str | None = None
    verdict: Verdict | None = Field(default=None, description="the verifier's verdict (step)")


class ArmGymState(State):
    variant_id: str | None = None
    seed: int | None = None
    profile: str = DEFAULT_PROFILE
    attempt_ids: list[str] = Field(default_factory=list)
    last_reward: float | None = None


class ArmGymEnvironment(Environment[ArmGymAction, ArmGymObservation, ArmGymState]):
    """Every instance talks to the process's one Farm; sessions share nothing else."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, farm: Callable[[], Farm]) -> None:
        super().__init__()
        self._farm = farm
        self._state = ArmGymState()
        self._task: dict[str, Any] | None = None
        self._key: str | None = None

    def reset(self, seed: int | None = None, episode_id: str | None = None,
              **kwargs: Any) -> ArmGymObservation:
        raise RuntimeError("the farm's environment is served asynchronously (reset_async)")

    def step(self, action: ArmGymAction, timeout_s: float | None = None,
             **kwargs: Any) -> ArmGymObservation:
        raise RuntimeError("the farm's environment is served asynchronously (step_async)")

    async def reset_async(self, seed: int | None = None, episode_id: str | None = None,
                          variant_id: str | None = None, template: str | None = None,
                          dtype: str | None = None, difficulty: int | None = None,
                          split: str | None = None, profile: str = DEFAULT_PROFILE,
                          api_key: str | None = None, **_: Any) -> ArmGymObservation:
        """A task, as POST /reset picks it."""
        check_profile(profile)
        try:
            query = ResetIn(seed=seed, variant_id=variant_id, template=template, dtype=dtype,
                            difficulty=difficulty, split=split)
        except ValidationError as exc:  # what the HTTP route's own validation would say: 422
            raise HTTPException(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                               for e in exc.errors())) from None
        found = await run_in_threadpool(task, query, self._farm())
        self._task, self._key = found, api_key or self._key
        self._state = ArmGymState(episode_id=episode_id, variant_id=found["variant_id"],
                                  seed=found["seed"], profile=profile)
        return ArmGymObservation(
            variant_id=found["variant_id"], seed=found["seed"], profile=profile,
            c_source=found["c_source"], prototype=found["prototype"],
            signature=found["signature"], template=found["template"], dtype=found["dtype"],
            difficulty=found["difficulty"], split=found["split"],
            baseline_cycles=found["baseline_cycles"],
            baseline_compiler=found["baseline_compiler"], done=False, reward=None)

    async def step_async(self, action: ArmGymAction, timeout_s: float | None = None,
                         api_key: str | None = None, **_: Any) -> ArmGymObservation:
        """Verify the submission (waiting up to ARMGYM_MAX_WAIT_S) and end the episode."""
        farm = self._farm()
        token = api_key or self._key or _request_key.get()
        key = await authorize(farm, token, "submit", KEY_HELP)
        variant_id = action.variant_id or (self._task or {}).get("variant_id")
        if variant_id is None:
            raise HTTPException(422, "no task: reset first, or name variant_id in the action")
        seed = action.seed if action.seed is not None else (
            self._state.seed if variant_id == self._state.variant_id else None)
        found = await verify_one(farm, key.id, StepIn(
            variant_id=variant_id, assembly=action.assembly, completion=action.completion,
            seed=seed, run_id=self._state.episode_id))
        if isinstance(found, str):
            raise HTTPException(504, f"attempt {found} is still being verified; fetch it with "
                                     f"GET /attempts/{found}?wait=60")
        stored, attempt_id = found.verdict, found.attempt_id
        verdict = Verdict.load(stored)
        if verdict is None:
            raise HTTPException(500, f"attempt {attempt_id}'s stored verdict is not a verdict")
        seen = observation(verdict, self._state.profile)
        self._state.step_count += 1
        self._state.attempt_ids.append(attempt_id)
        self._state.last_reward = seen["reward"]
        baseline = seen["baseline_cycles"]
        if baseline is None and self._task and variant_id == self._task["variant_id"] \
                and seed == self._task["seed"]:
            baseline = self._task["baseline_cycles"]  # the reset measured the same input
        return ArmGymObservation(
            variant_id=variant_id, seed=verdict.seed,
            profile=self._state.profile, reward=seen["reward"], done=True,
            passed=seen["passed"], speedup=seen["speedup"], cycles=seen["cycles"],
            baseline_cycles=baseline, baseline_compiler=seen["baseline_compiler"],
            error_kind=seen["error_kind"],
            error_message=(seen["error"] or {}).get("message"), attempt_id=attempt_id,
            verdict=verdict)

    @property
    def state(self) -> ArmGymState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name="armgym", version=VERIFIER_VERSION,
            description="Rewrite a C kernel as faster AArch64 assembly: the farm assembles it, "
                        "tests it in QEMU against the C reference and prices it on the Neoverse "
                        "V2 cost model. One step per episode; reward under the reset's profile.")


class _RequestKey:
    """Makes the key of an HTTP request or WebSocket handshake (headers, or ?api_key=)
    visible to the environment, which openenv-core builds without the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = None
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1"): v.decode("latin-1")
                       for k, v in scope.get("headers") or []}
            token = header_token(headers.get("authorization"), headers.get("x-api-key"))
            if token is None:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                token = (query.get("api_key") or [None])[0]
        reset = _request_key.set(token)
        try:  # a copy: the sub-app's own `app` and `route` stay out of the farm's middleware
            await self.app(dict(scope), receive, send)
        except WebSocketDisconnect:
            pass  # openenv-core 0.3.0 closes a socket its client already closed: not an error
        finally:
            _request_key.reset(reset)


def mount(app: FastAPI, max_sessions: int) -> None:
    """Serve the environment under PREFIX of `app` (whose lifespan builds the Farm)."""
    env_app = FastAPI(title="ARM-Gym (OpenEnv)", version=VERIFIER_VERSION,
                      description="The farm as an OpenEnv environment (openenv-core's server)")
    server = HTTPEnvServer(
        env=lambda: ArmGymEnvironment(lambda: app.state.farm),
        action_cls=ArmGymAction, observation_cls=ArmGymObservation,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=max_sessions,
                                             session_timeout=None))
    server.register_routes(env_app)
    app.mount(PREFIX, _RequestKey(env_app))
