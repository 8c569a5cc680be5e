from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from farm.conftest import Api, logs, start_api  # noqa: F401

from api import process


@pytest.fixture(scope="session")
def broken_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  logs: Path) -> Iterator[Api]:  # noqa: F811
    """An embedded farm without its sandbox: every attempt ends in infra_error."""
    server = start_api("embedded", tmp_path_factory.mktemp("api-broken"), logs, request,
                       ARMGYM_MAX_RETRIES="0", ARMGYM_BWRAP_PATH="/nonexistent/bwrap")
    yield server
    process.stop(server.proc)
