"""The sync and async clients: configuration, sending with retries, and one thin method per
operation (the logic of each operation is a plan in plans.py, shared by both)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx

from . import __version__, plans
from .errors import APIError, FarmUnavailable
from .models import DEFAULT_PROFILE, BestKernel, Result, StepResult, Submission, SubmissionLike
from .plans import Call, PendingStep, Plan, Reply
from .retry import RetryPolicy, parse_retry_after

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
# Sent before the request reached the server: always safe to resend.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:500]


def _decide(call: Call, retry_no: int, policy: RetryPolicy, response: httpx.Response | None,
            error: Exception | None) -> tuple[Reply | None, float]:
    """(reply, 0) when done; (None, delay) to retry after `delay` s; raises when giving up."""
    if error is not None:
        resendable = isinstance(error, _NOT_SENT) or call.idempotent
        delay = policy.delay(retry_no) if resendable else None
        if delay is None:
            raise FarmUnavailable(f"{call.method} {call.path}: {type(error).__name__}: {error}"
                                  ) from error
        return None, delay
    assert response is not None
    status = response.status_code
    if status < 400 or status in call.accept:
        body = response.text if call.text else (response.json() if response.content else None)
        return Reply(status, body), 0.0
    if status in policy.statuses:
        delay = policy.delay(retry_no, parse_retry_after(response.headers.get("retry-after")))
        if delay is not None:
            return None, delay
    raise APIError(status, _detail(response), call.method, call.path)


class _Config:
    """What both clients share: where the farm is, how to authenticate, how long to wait."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout_s: float,
                 retry: RetryPolicy | None, profile: str, max_batch: int) -> None:
        self.base_url = (base_url or os.environ.get("ARMGYM_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("ARMGYM_API_KEY")
        self.timeout_s, self.profile, self.max_batch = timeout_s, profile, max_batch
        self.retry = retry or RetryPolicy()

    def headers(self) -> dict[str, str]:
        out = {"User-Agent": f"armgym-client/{__version__}"}
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out

    def timeout(self, call: Call) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s + call.wait_s, connect=min(10.0, self.timeout_s))


class Client(_Config):
    """Blocking client. One `score_step` call scores a whole generation step.

    Retries 429/502/503/504 (honouring Retry-After) and connection failures with exponential
    backoff; every submission carries an idempotency key derived from run/step/index and its
    content whenever `run_id` is given, so a retried or repeated call never verifies twice.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout_s: float = 60.0, retry: RetryPolicy | None = None,
                 profile: str = DEFAULT_PROFILE, max_batch: int = 5000,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout_s, retry, profile, max_batch)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers(),
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Reply:
        for retry_no in itertools.count():
            response, error = None, None
            try:
                response = self._http.request(call.method, call.path, params=call.params,
                                              json=call.json, timeout=self.timeout(call))
            except httpx.TransportError as exc:
                error = exc
            reply, delay = _decide(call, retry_no, self.retry, response, error)
            if reply is not None:
                return reply
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(self._send(call))
        except StopIteration as done:
            return done.value

    def health(self) -> dict[str, Any]:
        """Tools and versions, broker, database and queue (also when the farm is degraded)."""
        return self._run(plans.health())

    def tasks(self, **filters: Any) -> list[dict[str, Any]]:
        """Variants, filterable by template, dtype, difficulty, split."""
        return self._run(plans.get_json("/tasks", **filters))["tasks"]

    def reset(self, **params: Any) -> dict[str, Any]:
        """A task (variant, C source, baselines); `seed=` picks it deterministically."""
        return self._run(plans.reset(params))

    def step(self, variant_id: str, text: str, *, completion: bool = False,
             seed: int | None = None, idempotency_key: str | None = None,
             run_id: str | None = None, step: int | None = None, model: str | None = None,
             timeout_s: float = 300.0, seed_scope: str | None = None) -> Result:
        """Verify one submission (POST /step), waiting for its verdict. `seed_scope='group'`:
        the seed every attempt of this run, step and variant shares (the farm derives it)."""
        sub = Submission(variant_id, text, completion, idempotency_key, seed)
        return self._run(plans.step(sub, run_id=run_id, step=step, model=model,
                                    profile=self.profile, timeout_s=timeout_s,
                                    seed_scope=seed_scope))

    def score_step(self, items: Sequence[SubmissionLike], *, run_id: str | None = None,
                   step: int | None = None, model: str | None = None, completion: bool = True,
                   timeout_s: float = 600.0, profile: str | None = None,
                   seed_scope: str | None = None) -> StepResult:
        """Submit a whole generation step and wait for every result (one POST per
        `max_batch` submissions, then long polls). Results come back in submission order;
        those still unfinished after `timeout_s`, and infra errors, are `dropped`.
        `seed_scope='group'` (needs run_id and step): the attempts of one variant share the
        step's tests, and one C reference run serves them."""
        return self._run(plans.score_step(items, run_id=run_id, step=step, model=model,
                                          completion=completion, max_batch=self.max_batch,
                                          profile=profile or self.profile, timeout_s=timeout_s,
                                          seed_scope=seed_scope))

    def submit_step(self, items: Sequence[SubmissionLike], *, run_id: str | None = None,
                    step: int | None = None, model: str | None = None,
                    completion: bool = True, seed_scope: str | None = None) -> PendingStep:
        """Queue a step without waiting (overlap verification with the next generation)."""
        return self._run(plans.submit_step(items, run_id=run_id, step=step, model=model,
                                           completion=completion, max_batch=self.max_batch,
                                           seed_scope=seed_scope))

    def wait_step(self, pending: PendingStep, *, timeout_s: float = 600.0,
                  profile: str | None = None) -> StepResult:
        """Collect the results of a step queued with submit_step."""
        return self._run(plans.wait_step(pending, profile=profile or self.profile,
                                         timeout_s=timeout_s))

    def attempt(self, attempt_id: str, *, wait_s: float = 0.0,
                profile: str | None = None) -> Result:
        return self._run(plans.attempt(attempt_id, profile=profile or self.profile,
                                       wait_s=wait_s))

    def history(self, *, limit: int = 100, cursor: str | None = None,
                **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        """One page of attempts, newest first, and the cursor of the next page."""
        return self._run(plans.history(filters, limit, cursor))

    def best(self) -> list[dict[str, Any]]:
        """The best verified kernel of every variant that has one (without assembly)."""
        return self._run(plans.get_json("/best"))["kernels"]

    def best_kernel(self, variant_id: str) -> BestKernel:
        """The best verified kernel of one variant, with its assembly and its verdict."""
        return self._run(plans.best_kernel(variant_id))

    def run_summary(self, run_id: str) -> list[dict[str, Any]]:
        """Per step: attempts, correctness rate, mean reward, best speedup."""
        return self._run(plans.get_json(f"/runs/{run_id}/summary"))["steps"]

    def errors(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Outcome histogram (error kinds and 'pass')."""
        return self._run(plans.get_json("/errors", run_id=run_id))["outcomes"]


class AsyncClient(_Config):
    """The asyncio twin of `Client`: same methods, awaited."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout_s: float = 60.0, retry: RetryPolicy | None = None,
                 profile: str = DEFAULT_PROFILE, max_batch: int = 5000,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key, timeout_s, retry, profile, max_batch)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers(),
                                       transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Reply:
        for retry_no in itertools.count():
            response, error = None, None
            try:
                response = await self._http.request(call.method, call.path, params=call.params,
                                                    json=call.json, timeout=self.timeout(call))
            except httpx.TransportError as exc:
                error = exc
            reply, delay = _decide(call, retry_no, self.retry, response, error)
            if reply is not None:
                return reply
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._send(call))
        except StopIteration as done:
            return done.value

    async def health(self) -> dict[str, Any]:
        return await self._run(plans.health())

    async def tasks(self, **filters: Any) -> list[dict[str, Any]]:
        return (await self._run(plans.get_json("/tasks", **filters)))["tasks"]

    async def reset(self, **params: Any) -> dict[str, Any]:
        return await self._run(plans.reset(params))

    async def step(self, variant_id: str, text: str, *, completion: bool = False,
                   seed: int | None = None, idempotency_key: str | None = None,
                   run_id: str | None = None, step: int | None = None,
                   model: str | None = None, timeout_s: float = 300.0,
                   seed_scope: str | None = None) -> Result:
        sub = Submission(variant_id, text, completion, idempotency_key, seed)
        return await self._run(plans.step(sub, run_id=run_id, step=step, model=model,
                                          profile=self.profile, timeout_s=timeout_s,
                                          seed_scope=seed_scope))

    async def score_step(self, items: Sequence[SubmissionLike], *, run_id: str | None = None,
                         step: int | None = None, model: str | None = None,
                         completion: bool = True, timeout_s: float = 600.0,
                         profile: str | None = None,
                         seed_scope: str | None = None) -> StepResult:
        return await self._run(plans.score_step(
            items, run_id=run_id, step=step, model=model, completion=completion,
            max_batch=self.max_batch, profile=profile or self.profile, timeout_s=timeout_s,
            seed_scope=seed_scope))

    async def submit_step(self, items: Sequence[SubmissionLike], *, run_id: str | None = None,
                          step: int | None = None, model: str | None = None,
                          completion: bool = True,
                          seed_scope: str | None = None) -> PendingStep:
        return await self._run(plans.submit_step(items, run_id=run_id, step=step, model=model,
                                                 completion=completion,
                                                 max_batch=self.max_batch,
                                                 seed_scope=seed_scope))

    async def wait_step(self, pending: PendingStep, *, timeout_s: float = 600.0,
                        profile: str | None = None) -> StepResult:
        return await self._run(plans.wait_step(pending, profile=profile or self.profile,
                                               timeout_s=timeout_s))

    async def attempt(self, attempt_id: str, *, wait_s: float = 0.0,
                      profile: str | None = None) -> Result:
        return await self._run(plans.attempt(attempt_id, profile=profile or self.profile,
                                             wait_s=wait_s))

    async def history(self, *, limit: int = 100, cursor: str | None = None,
                      **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return await self._run(plans.history(filters, limit, cursor))

    async def best(self) -> list[dict[str, Any]]:
        return (await self._run(plans.get_json("/best")))["kernels"]

    async def best_kernel(self, variant_id: str) -> BestKernel:
        return await self._run(plans.best_kernel(variant_id))

    async def run_summary(self, run_id: str) -> list[dict[str, Any]]:
        return (await self._run(plans.get_json(f"/runs/{run_id}/summary")))["steps"]

    async def errors(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return (await self._run(plans.get_json("/errors", run_id=run_id)))["outcomes"]
