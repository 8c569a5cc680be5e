"""The trainer-side client (clients/python): it installs and runs without the server's
dependencies, retries overload (429 / 503 with Retry-After) and timeouts the way it documents,
and against the embedded farm scores a whole step in one call, idempotently, with infra errors
dropped rather than scored."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from farm.conftest import USER_KEY, Api, embedded_server, logs, start_api  # noqa: F401
from farm.mix import asm, honest

from toolchain.demo import DOT_1024_F32_NEON

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "python"
sys.path.insert(0, str(CLIENT))

from armgym_client import (  # noqa: E402
    APIError,
    AsyncClient,
    Client,
    FarmUnavailable,
    RetryPolicy,
    Submission,
)

RELU = "relu_n64_float32"
DOT = "dot_n1024_float32"
SERVER_MODULES = ("api", "store", "workers", "toolchain", "fastapi", "sqlalchemy", "celery",
                  "uvicorn", "redis", "numpy")


# --- installation -------------------------------------------------------------------------------

def test_installs_in_a_fresh_venv_and_scores_without_the_server_stack(
        tmp_path: Path, embedded_server: Api) -> None:  # noqa: F811
    """pip installs the package and httpx (from the index) into an empty venv; there it imports
    every module, finds none of the farm's own dependencies, and scores a step for real."""
    venv, source = tmp_path / "venv", tmp_path / "source"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                  "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(  # from a copy: building leaves build/ next to the sources
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        import armgym_client, armgym_client.adapters.trl, armgym_client.adapters.verl
        from armgym_client import Client
        step = Client({embedded_server.url!r}, {USER_KEY!r}).score_step(
            [({RELU!r}, "<assembly>\\n" + sys.argv[1] + "</assembly>"), ({RELU!r}, "no tags")],
            run_id="fresh-venv", step=0)
        print(json.dumps({{
            "file": armgym_client.__file__, "rewards": step.rewards,
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {SERVER_MODULES!r}),
            "findable": [m for m in {SERVER_MODULES!r} if importlib.util.find_spec(m)]}}))
    """)
    run = subprocess.run([str(python), "-I", "-c", script, honest(RELU, "clang")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout)
    assert found["file"].startswith(str(venv)) and not found["loaded"] and not found["findable"]
    assert found["rewards"][0] >= 3.0 and found["rewards"][1] == 0.0


# --- retries, against a scripted HTTP server ----------------------------------------------------

@dataclass
class Scripted:
    """A real HTTP server answering each path from a script: a list of (status, headers, body,
    delay_s); the last entry repeats. Every request's arrival time is recorded."""

    script: dict[str, list[tuple[int, dict[str, str], Any, float]]]
    arrivals: dict[str, list[float]] = field(default_factory=dict)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                path = f"{self.command} {self.path.split('?')[0]}"
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                seen = outer.arrivals.setdefault(path, [])
                seen.append(time.monotonic())
                steps = outer.script[path]
                status, headers, body, delay = steps[min(len(seen), len(steps)) - 1]
                time.sleep(delay)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

        return Handler


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up: expected here


Serve = Callable[[dict[str, Any]], tuple[str, Scripted]]


@pytest.fixture
def scripted() -> Iterator[Serve]:
    servers: list[ThreadingHTTPServer] = []

    def serve(script: dict[str, Any]) -> tuple[str, Scripted]:
        state = Scripted(script)
        server = QuietServer(("127.0.0.1", 0), state.handler())
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", state

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _attempt(position: int, reward: float | None, kind: str | None) -> dict[str, Any]:
    return {"position": position, "attempt_id": f"a{position}", "variant_id": RELU,
            "status": "done", "passed": kind is None, "error_kind": kind, "message": "",
            "reward": reward, "speedup": None,
            "verdict": None if reward is None else {"reward": {"profiles": {"additive": reward}}}}


BATCH_DONE = {"batch_id": "b1", "complete": True,
              "results": [_attempt(0, 3.0, None), _attempt(1, None, "infra_error")]}
OVERLOADED = {
    "POST /batches": [(429, {"Retry-After": "1"}, {"detail": "queue full"}, 0),
                      (503, {"Retry-After": "1"}, {"detail": "unavailable"}, 0),
                      (202, {}, {"batch_id": "b1"}, 0)],
    "GET /batches/b1": [(503, {"Retry-After": "1"}, {"detail": "restarting"}, 0),
                        (200, {}, BATCH_DONE, 0)],
}
ITEMS = [(RELU, "<assembly>x</assembly>"), (RELU, "<assembly>y</assembly>")]


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _check_overloaded(state: Scripted, rewards: list[float | None]) -> None:
    posts, gets = state.arrivals["POST /batches"], state.arrivals["GET /batches/b1"]
    assert len(posts) == 3 and len(gets) == 2
    # Retry-After: 1 was honoured: about 1 s each, not the 10 s backoff the policy would pick.
    assert all(0.9 <= gap < 3 for gap in _gaps(posts) + _gaps(gets)), _gaps(posts) + _gaps(gets)
    assert rewards == [3.0, None]


def test_sync_client_retries_429_and_503_honouring_retry_after(scripted: Serve) -> None:
    url, state = scripted(OVERLOADED)
    with Client(url, "k", retry=RetryPolicy(backoff_s=10)) as client:
        step = client.score_step(ITEMS, run_id="r", step=1)
    _check_overloaded(state, step.rewards)
    assert step.results[1].dropped and step.results[1].infra_error
    assert not step.results[1].model_failure and step.correctness_rate == 1.0


def test_async_client_retries_429_honouring_retry_after(scripted: Serve) -> None:
    url, state = scripted({"POST /batches": OVERLOADED["POST /batches"][::2],
                           "GET /batches/b1": OVERLOADED["GET /batches/b1"][1:]})

    async def run() -> list[float | None]:
        async with AsyncClient(url, "k", retry=RetryPolicy(backoff_s=10)) as client:
            return (await client.score_step(ITEMS, run_id="r", step=1)).rewards

    assert asyncio.run(run()) == [3.0, None]
    (gap,) = _gaps(state.arrivals["POST /batches"])
    assert 0.9 <= gap < 3


def test_backoff_without_retry_after_then_gives_up(scripted: Serve) -> None:
    url, state = scripted({"GET /health": [(503, {}, {"detail": "down"}, 0)],
                           "GET /best": [(503, {}, {"detail": "down"}, 0)]})
    policy = RetryPolicy(max_retries=3, backoff_s=0.1, jitter=0.0)
    with Client(url, "k", retry=policy) as client, pytest.raises(APIError) as err:
        client.best()
    assert err.value.status == 503 and "down" in str(err.value)
    gaps = _gaps(state.arrivals["GET /best"])
    assert len(gaps) == 3 and all(0.08 * 2 ** i <= g < 0.1 * 2 ** i + 0.5
                                  for i, g in enumerate(gaps)), gaps
    with Client(url, "k", retry=policy) as client:
        assert client.health() == {"detail": "down"}  # a degraded farm's health is an answer


def test_client_errors_are_not_retried(scripted: Serve) -> None:
    url, state = scripted({"POST /batches": [(422, {}, {"detail": "unknown variant_id"}, 0)]})
    with Client(url, "k") as client, pytest.raises(APIError) as err:
        client.score_step([("nope_n1_int8", "x")], run_id="r", step=0)
    assert err.value.status == 422 and len(state.arrivals["POST /batches"]) == 1


def test_timeouts_retry_only_what_is_safe_to_resend(scripted: Serve) -> None:
    """A read timeout is retried for long polls and keyed submissions (the farm answers a resent
    key with the attempt it already has); a POST without keys is not resent (it might have been
    stored), and an unreachable farm ends in FarmUnavailable."""
    slow, fast = (202, {}, {"batch_id": "b1"}, 1.0), (202, {}, {"batch_id": "b1"}, 0)
    url, state = scripted({"POST /batches": [slow, fast, slow],
                           "GET /batches/b1": [(200, {}, BATCH_DONE, 0)]})
    policy = RetryPolicy(max_retries=2, backoff_s=0.01)
    with Client(url, "k", timeout_s=0.3, retry=policy) as client:
        assert client.score_step(ITEMS, run_id="r", step=2).rewards == [3.0, None]
        assert len(state.arrivals["POST /batches"]) == 2
        with pytest.raises(FarmUnavailable):
            client.score_step(ITEMS)  # no run_id: no keys, so the timed-out POST is not resent
    assert len(state.arrivals["POST /batches"]) == 3
    with Client("http://127.0.0.1:9", "k", retry=policy) as client, \
            pytest.raises(FarmUnavailable):
        client.best()


# --- against the embedded farm ------------------------------------------------------------------

def _step_items() -> list[Any]:
    clang = honest(RELU, "clang")
    return [(RELU, f"Here it is.\n<assembly>\n{clang}</assembly>"),  # passes, format 1
            (RELU, "I cannot do that."),                              # format_error
            Submission.assembly(RELU, clang),                         # bare assembly
            {"variant_id": RELU, "assembly": asm("    ret")},         # wrong_output
            Submission.assembly(DOT, DOT_1024_F32_NEON)]              # faster than clang


def test_score_step_against_the_farm_is_ordered_and_idempotent(
        embedded_server: Api) -> None:  # noqa: F811
    with Client(embedded_server.url, USER_KEY) as client:
        step = client.score_step(_step_items(), run_id="client-e2e", step=3, model="m")
        kinds = [r.error_kind for r in step]
        assert kinds == [None, "format_error", None, "wrong_output", None]
        assert [r.position for r in step] == [0, 1, 2, 3, 4]
        assert not step.dropped and step.complete
        rewards = step.rewards
        assert rewards[0] == rewards[2] + 1  # the format component, for the raw completion
        assert rewards[1] == 0.0 and rewards[3] == 1.0  # wrong output: assembled, incorrect
        assert step[4].speedup and step[4].speedup > 1.5 and rewards[4] > 3.0
        assert step[3].model_failure and not step[3].dropped

        again = client.score_step(_step_items(), run_id="client-e2e", step=3, model="m")
        assert [r.attempt_id for r in again] == [r.attempt_id for r in step]
        assert again.batch_ids == step.batch_ids  # the resent batch is the first one
        (summary,) = client.run_summary("client-e2e")
        assert summary["attempts"] == 5  # nothing verified twice
        assert summary["correctness_rate"] == pytest.approx(step.correctness_rate)
        assert summary["best_speedup"] == pytest.approx(step.best_speedup)

        binary = client.score_step(_step_items(), run_id="client-e2e", step=3,
                                   profile="binary_plus_speedup")
        assert binary.rewards[:4] == [0.0, 0.0, 0.0, 0.0]  # parity with clang earns nothing
        assert binary.rewards[4] == pytest.approx(min(step[4].speedup or 0, 3.0) - 1)

        one = client.step(RELU, honest(RELU, "gcc"))
        assert one.done and one.passed and one.reward is not None


def test_best_kernel_downloads_with_its_verdict(embedded_server: Api, tmp_path: Path) -> None:  # noqa: F811
    with Client(embedded_server.url, USER_KEY) as client:
        client.score_step([Submission.assembly(DOT, DOT_1024_F32_NEON)], run_id="best", step=0)
        best = client.best_kernel(DOT)
        assert best.assembly == DOT_1024_F32_NEON and best.verdict["passed"]
        assert best.speedup and best.speedup > 1.5 and best.found_by == "alice"
        s_file, verdict_file = best.save(tmp_path)
        assert s_file.read_text() == DOT_1024_F32_NEON
        assert json.loads(verdict_file.read_text())["variant_id"] == DOT
        with pytest.raises(APIError) as err:
            client.best_kernel("gemv_m4_n4_int8")
        assert err.value.status == 404
    raw = httpx.get(f"{embedded_server.url}/best/{DOT}/download",
                    headers={"X-API-Key": USER_KEY})
    assert raw.text == DOT_1024_F32_NEON and f'filename="{DOT}.s"' in \
        raw.headers["content-disposition"]


def test_async_client_submit_then_wait(embedded_server: Api) -> None:  # noqa: F811
    async def run() -> list[float | None]:
        async with AsyncClient(embedded_server.url, USER_KEY) as client:
            pending = await client.submit_step([(RELU, "no assembly here")], run_id="async",
                                               step=0)
            return (await client.wait_step(pending)).rewards

    assert asyncio.run(run()) == [0.0]


def test_infra_errors_are_dropped_not_scored(request: pytest.FixtureRequest, tmp_path: Path,
                                             logs: Path) -> None:  # noqa: F811
    """A farm whose sandbox is missing cannot verify anything: after its retries each attempt is
    stored as infra_error, which the client hands back as dropped, with no reward."""
    from api import process

    broken = start_api("embedded", tmp_path, logs, request, ARMGYM_MAX_RETRIES="0",
                       ARMGYM_BWRAP_PATH="/nonexistent/bwrap")
    try:
        with Client(broken.url, USER_KEY) as client:
            step = client.score_step([(RELU, f"<assembly>\n{honest(RELU, 'clang')}</assembly>")],
                                     run_id="broken", step=0)
    finally:
        process.stop(broken.proc)
    (result,) = step.results
    assert result.infra_error and result.dropped and not result.model_failure
    assert result.reward is None and step.rewards == [None]
    assert step.scored == [] and step.correctness_rate is None and step.mean_reward is None


# --- seed scopes ------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda c: c.score_step(ITEMS, run_id="r", step=1, seed_scope="grup"), "one of"),
    (lambda c: c.score_step(ITEMS, run_id="r", seed_scope="group"), "run_id and step"),
    (lambda c: c.score_step(ITEMS, step=1, seed_scope="group"), "run_id and step"),
    (lambda c: c.score_step([Submission.assembly(RELU, "x", seed=5)], run_id="r", step=1,
                            seed_scope="group"), "send no seed"),
    (lambda c: c.step(RELU, "x", run_id="r", seed_scope="group"), "run_id and step"),
    (lambda c: c.step(RELU, "x", run_id="r", step=1, seed=3, seed_scope="group"),
     "send no seed"),
], ids=["typo", "no-step", "no-run", "batch-seed", "step-no-step", "step-seed"])
def test_a_scope_the_farm_would_refuse_is_refused_before_sending(
        scripted: Serve, call: Callable[[Client], Any], message: str) -> None:
    url, state = scripted({})
    with Client(url, "k") as client, pytest.raises(ValueError, match=message):
        call(client)
    assert not state.arrivals


def test_group_scope_through_the_client(request: pytest.FixtureRequest, tmp_path: Path,
                                        logs: Path) -> None:  # noqa: F811
    """The completions of one variant at one step share a seed; the next step draws another;
    without the scope every attempt has its own."""
    from api import process

    server = start_api("embedded", tmp_path, logs, request, ARMGYM_SEED_SECRET="x" * 32)
    try:
        clang, gcc = honest(RELU, "clang"), honest(RELU, "gcc")
        items = [Submission.assembly(RELU, t) for t in (clang, gcc, asm("    ret"))]
        with Client(server.url, USER_KEY) as client:
            one = client.score_step(items, run_id="client-group", step=1, seed_scope="group")
            two = client.score_step(items[:1], run_id="client-group", step=2,
                                    seed_scope="group")
            own = client.score_step(items, run_id="client-group", step=3)
            single = client.step(RELU, gcc + "\n", run_id="client-group", step=1,
                                 seed_scope="group")
        seeds = [r.verdict["seed"] for r in one]
        assert len(set(seeds)) == 1 and [r.passed for r in one] == [True, True, False]
        assert two.results[0].verdict["seed"] != seeds[0]
        assert len({r.verdict["seed"] for r in own}) == 3
        assert single.verdict["seed"] == seeds[0]
    finally:
        process.stop(server.proc)
