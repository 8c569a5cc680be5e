"""The API-key cache (api/keycache.py) on real PostgreSQL and Redis: a key revoked through one
API process is refused by it at once; another API process refuses it once its cached entry is
older than ARMGYM_KEY_CACHE_TTL_S, and not before; hostile Authorization headers still get
their own 401 / 403 answers on a process that has keys cached."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api import process

from .conftest import ADMIN_KEY, FARM, OTHER_KEY, USER_KEY, Api, start_api

pytestmark = FARM
SHORT_TTL_S = 1.0


@pytest.fixture
def two_apis(request: pytest.FixtureRequest, tmp_path: Path, logs: Path) -> Iterator[
        tuple[Api, Api, Api]]:
    """Three farm-mode API processes on one database: `a` and `short` with a key cache of
    SHORT_TTL_S, `long` with one of 10 minutes."""
    ttl = str(SHORT_TTL_S)
    apis = (start_api("farm", tmp_path, logs, request, ARMGYM_KEY_CACHE_TTL_S=ttl),
            start_api("farm", tmp_path, logs, request, ARMGYM_KEY_CACHE_TTL_S=ttl),
            start_api("farm", tmp_path, logs, request, ARMGYM_KEY_CACHE_TTL_S="600"))
    yield apis
    for api in apis:
        process.stop(api.proc)


def test_revoked_key_refused_here_at_once_elsewhere_within_the_ttl(
        two_apis: tuple[Api, Api, Api]) -> None:
    a, short, long = two_apis
    made = a.client(ADMIN_KEY).post("/keys", json={"name": "dora", "scopes": ["read"]})
    assert made.status_code == 201
    key, key_id = made.json()["key"], made.json()["id"]
    for api in (a, short, long):  # each process reads the key once and keeps it
        assert api.client(key).get("/attempts").status_code == 200
    cached_at = time.monotonic()
    assert a.client(ADMIN_KEY).delete(f"/keys/{key_id}").status_code == 204
    refused = a.client(key).get("/attempts")  # the revoking process: at once
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    # Another process trusts its entry until the TTL has run: the 10-minute one still does.
    assert long.client(key).get("/attempts").status_code == 200
    # The short one refuses once its entry is older than its TTL (settings-driven).
    time.sleep(max(0.0, SHORT_TTL_S + 0.3 - (time.monotonic() - cached_at)))
    assert short.client(key).get("/attempts").status_code == 401
    # Keys that stay valid are unaffected, and a new key works on every process at once
    # (unknown keys are never cached).
    assert short.client(USER_KEY).get("/attempts").status_code == 200
    fresh = a.client(ADMIN_KEY).post("/keys", json={"name": "erin", "scopes": ["read"]})
    assert long.client(fresh.json()["key"]).get("/attempts").status_code == 200


def test_hostile_auth_input_keeps_its_error_kind(two_apis: tuple[Api, Api, Api]) -> None:
    api = two_apis[2]  # the long TTL: keys below are cached while the hostile ones arrive
    assert api.client(OTHER_KEY).get("/attempts").status_code == 200
    assert api.client(OTHER_KEY).post("/keys", json={"name": "x"}).status_code == 403
    cases: list[tuple[dict[str, str | bytes], int, str]] = [
        ({}, 401, "missing API key"),
        ({"Authorization": "Basic " + OTHER_KEY}, 401, "missing API key"),
        ({"Authorization": "Bearer"}, 401, "missing API key"),
        ({"Authorization": "Bearer " + OTHER_KEY + "x"}, 401, "unknown or revoked"),
        ({"X-API-Key": OTHER_KEY[:-1]}, 401, "unknown or revoked"),
        ({"X-API-Key": "x" * 8000}, 401, "unknown or revoked"),
        ({"X-API-Key": "agk_\u00e9\u00ff' OR 1=1 --".encode("latin-1")}, 401, "unknown or revoked"),
        ({"X-API-Key": OTHER_KEY.upper()}, 401, "unknown or revoked"),
    ]
    for headers, status, detail in cases:
        for _ in range(2):  # the second time would meet a cached entry, were one made
            reply = httpx.get(f"{api.url}/attempts", headers=headers, timeout=60)
            assert reply.status_code == status, (headers, reply.text)
            assert detail in reply.json()["detail"], (headers, reply.text)
            if status == 401:
                assert reply.headers["WWW-Authenticate"] == "Bearer"
    # A cached key keeps its scopes: read-only bob still may not administer keys.
    forbidden = api.client(OTHER_KEY).get("/keys")
    assert forbidden.status_code == 403 and "'admin' scope" in forbidden.json()["detail"]
