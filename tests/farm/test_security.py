"""Keys and results stay where they belong: no key in any log line (the OpenRLHF route's
`?api_key=` included), no response cacheable, a rate limit per key, and the admin scope."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api import process
from api.security import redact_query

from .conftest import ADMIN_KEY, FARM, OTHER_KEY, USER_KEY, base_env

pytestmark = FARM
PER_MINUTE = 30  # the rate limit of the API below: ARMGYM_RATE_LIMIT_PER_S=0.5


@pytest.fixture(scope="module")
def logged_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An embedded API logging every request line (uvicorn's access log at info)."""
    tmp = tmp_path_factory.mktemp("api-security")
    log, port = tmp / "api.log", process.free_port()
    env = base_env(ARMGYM_DATA_DIR=str(tmp), ARMGYM_RATE_LIMIT_PER_S=str(PER_MINUTE / 60))
    proc = process.start(env, port, log=log, log_level="info")
    yield f"http://127.0.0.1:{port}", log
    process.stop(proc)


def test_keys_never_reach_the_log(logged_api: tuple[str, Path]) -> None:
    url, log = logged_api
    secret = OTHER_KEY  # bob's key: the rate limit test below uses alice's
    body = {"query": ["x"], "prompts": [""], "labels": ["relu_n64_float32"]}
    httpx.post(f"{url}/openrlhf/get_reward?api_key={secret}&run_id=r", json=body, timeout=60)
    httpx.get(f"{url}/tasks?limit=1&API_KEY={secret}", timeout=30)
    httpx.get(f"{url}/attempts", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    httpx.get(f"{url}/attempts", headers={"X-API-Key": "agk_wrong_key_xyz"}, timeout=30)
    time.sleep(0.5)  # the access log line is written after the response
    text = log.read_text()
    assert "/openrlhf/get_reward?api_key=[redacted]&run_id=r" in text
    assert secret not in text and "agk_wrong_key_xyz" not in text
    assert redact_query("/x?a=1&token=abc&key=def#f") == "/x?a=1&token=[redacted]&key=[redacted]#f"


def test_no_response_is_cacheable(logged_api: tuple[str, Path]) -> None:
    url, _ = logged_api
    headers = {"X-API-Key": OTHER_KEY}
    for path in ("/attempts", "/best", "/errors", "/health", "/tasks?limit=1", "/nowhere"):
        reply = httpx.get(url + path, headers=headers, timeout=30)
        assert reply.headers.get("cache-control") == "no-store", (path, reply.headers)


def test_each_key_has_a_rate_limit(logged_api: tuple[str, Path]) -> None:
    url, _ = logged_api
    alice = httpx.Client(base_url=url, headers={"X-API-Key": USER_KEY}, timeout=30)
    codes = [alice.get("/errors").status_code for _ in range(PER_MINUTE + 5)]
    assert codes[:PER_MINUTE - 5] == [200] * (PER_MINUTE - 5)  # others may have spent a few
    assert codes[-1] == 429
    refused = alice.get("/errors")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "rate limit" in refused.json()["detail"]
    admin = httpx.get(f"{url}/errors", headers={"X-API-Key": ADMIN_KEY}, timeout=30)
    assert admin.status_code == 200  # another key's budget is its own


def test_admin_scope(logged_api: tuple[str, Path]) -> None:
    url, _ = logged_api
    admin = httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_KEY}, timeout=30)
    user = httpx.Client(base_url=url, headers={"X-API-Key": OTHER_KEY}, timeout=30)
    assert httpx.get(f"{url}/keys", timeout=30).status_code == 401
    assert user.get("/keys").status_code == 403
    assert user.post("/keys", json={"name": "mallory", "scopes": ["admin"]}).status_code == 403
    assert user.delete("/keys/1").status_code == 403
    assert admin.post("/keys", json={"name": "x", "scopes": ["root"]}).status_code == 422
    made = admin.post("/keys", json={"name": "reader", "scopes": ["read"]}).json()
    reader = httpx.Client(base_url=url, headers={"X-API-Key": made["key"]}, timeout=30)
    assert reader.get("/attempts").status_code == 200
    assert reader.post("/step", json={"variant_id": "relu_n64_float32", "assembly": "ret"}
                       ).status_code == 403
    assert reader.get("/keys").status_code == 403
    listed = admin.get("/keys").json()
    assert made["key"] not in str(listed)
    assert admin.delete(f"/keys/{made['id']}").status_code == 204
    assert admin.delete(f"/keys/{made['id']}").status_code == 404
    assert reader.get("/attempts").status_code == 401
