"""Settings: read from ARMGYM_* by pydantic-settings, validated when made, so a mistyped value or an
impossible combination refuses to start (the CLI, the API, a worker, a container role) with a
message naming the variable; every variable is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from store.settings import FarmSettings
from toolchain.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("env", "variable"), [
    ({"ARMGYM_JOBS": "two"}, "ARMGYM_JOBS"),
    ({"ARMGYM_JOBS": "0"}, "ARMGYM_JOBS"),
    ({"ARMGYM_VERDICT_CACHE": "maybe"}, "ARMGYM_VERDICT_CACHE"),
    ({"ARMGYM_VERDICT_CACHE": ""}, "ARMGYM_VERDICT_CACHE"),
    ({"ARMGYM_SANDBOX": "bwarp"}, "ARMGYM_SANDBOX"),
    ({"ARMGYM_RUN_TIMEOUT_BASE_S": "-1"}, "ARMGYM_RUN_TIMEOUT_BASE_S"),
    ({"ARMGYM_TRACE_LIMIT_BLOCKS": "1.5"}, "ARMGYM_TRACE_LIMIT_BLOCKS"),
])
def test_a_mistyped_core_value_is_refused_by_name(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)
    with pytest.raises(SettingsError, match=variable):  # the farm holds the core's settings
        FarmSettings.from_env(env)


@pytest.mark.parametrize(("env", "variable"), [
    ({"ARMGYM_QUEUE_LIMIT": "lots"}, "ARMGYM_QUEUE_LIMIT"),
    ({"ARMGYM_MAX_RETRIES": "-1"}, "ARMGYM_MAX_RETRIES"),
    ({"ARMGYM_POLL_INTERVAL_S": "0"}, "ARMGYM_POLL_INTERVAL_S"),
    ({"ARMGYM_WORKER_METRICS_PORT": "70000"}, "ARMGYM_WORKER_METRICS_PORT"),
])
def test_a_mistyped_farm_value_is_refused_by_name(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        FarmSettings.from_env(env)


def test_sandbox_none_needs_consent() -> None:
    with pytest.raises(SettingsError, match="needs ARMGYM_ALLOW_UNSANDBOXED=1"):
        Settings.from_env({"ARMGYM_SANDBOX": "none"})
    assert Settings.from_env({"ARMGYM_SANDBOX": "none", "ARMGYM_ALLOW_UNSANDBOXED": "1"}) \
        .sandbox == "none"
    with pytest.raises(SettingsError, match="needs ARMGYM_ALLOW_UNSANDBOXED=1"):
        Settings.from_env({}).replace(sandbox="none")  # a copy is validated too


def test_visibility_timeout_must_exceed_the_hard_time_limit() -> None:
    broker = {"ARMGYM_BROKER_URL": "redis://127.0.0.1:1/0"}
    with pytest.raises(SettingsError, match=r"ARMGYM_VISIBILITY_TIMEOUT_S \(150\) must exceed "
                                            r"ARMGYM_TASK_TIME_LIMIT_S \(150\)"):
        FarmSettings.from_env({**broker, "ARMGYM_VISIBILITY_TIMEOUT_S": "150"})
    assert FarmSettings.from_env({**broker, "ARMGYM_VISIBILITY_TIMEOUT_S": "151",
                                  "ARMGYM_DISPATCH_CHUNK": "1"})
    # a message of several attempts has their time limits added up
    with pytest.raises(SettingsError, match=r"\(450\) must exceed ARMGYM_TASK_TIME_LIMIT_S "
                                            r"\(150\) x ARMGYM_DISPATCH_CHUNK \(3\)"):
        FarmSettings.from_env({**broker, "ARMGYM_VISIBILITY_TIMEOUT_S": "450",
                               "ARMGYM_DISPATCH_CHUNK": "3"})
    assert FarmSettings.from_env({**broker, "ARMGYM_VISIBILITY_TIMEOUT_S": "451",
                                  "ARMGYM_DISPATCH_CHUNK": "3"})
    with pytest.raises(SettingsError, match="ARMGYM_DISPATCH_CHUNK"):
        FarmSettings.from_env({"ARMGYM_DISPATCH_CHUNK": "0"})
    # the embedded farm has no broker, so no visibility timeout
    assert FarmSettings.from_env({"ARMGYM_VISIBILITY_TIMEOUT_S": "6"}).embedded
    # the tests' short re-delivery, acknowledged explicitly
    assert FarmSettings.from_env({**broker, "ARMGYM_VISIBILITY_TIMEOUT_S": "6",
                                  "ARMGYM_ALLOW_EARLY_REDELIVERY": "1"})


def test_soft_time_limit_must_be_below_the_hard_one() -> None:
    with pytest.raises(SettingsError, match="ARMGYM_TASK_SOFT_TIME_LIMIT_S"):
        FarmSettings.from_env({"ARMGYM_TASK_SOFT_TIME_LIMIT_S": "150"})


def test_variables_keep_their_names_and_types() -> None:
    farm = FarmSettings.from_env({
        "ARMGYM_JOBS": "3", "ARMGYM_VERDICT_CACHE": "0", "ARMGYM_CACHE_DIR": "/tmp/c",
        "ARMGYM_RUN_TIMEOUT_FACTOR": "2.5", "ARMGYM_QUEUE_NAME": "q", "armgym_max_batch": "7",
        "ARMGYM_BROKER_URL": "redis://h/0", "ARMGYM_VISIBILITY_TIMEOUT_S": "900"})
    assert (farm.core.jobs, farm.core.verdict_cache, farm.core.cache_dir) == (3, False,
                                                                            Path("/tmp/c"))
    assert farm.core.run_timeout_factor == 2.5 and farm.queue_name == "q"
    assert farm.max_batch == 7 and farm.pool_size == 3 and not farm.embedded
    names = FarmSettings.variables()
    assert names["ARMGYM_JOBS"] == "jobs" and names["ARMGYM_BROKER_URL"] == "broker_url"
    assert set(Settings.variables()) < set(names) and "ARMGYM_CORE" not in names


def test_an_explicit_environment_is_the_only_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMGYM_JOBS", "5")
    assert Settings().jobs == 5  # the process environment
    assert Settings.from_env({"ARMGYM_JOBS": "2"}).jobs == 2
    assert Settings.from_env({}).jobs == Settings.model_fields["jobs"].default_factory()


def test_settings_are_frozen_and_copies_validated() -> None:
    s = Settings.from_env({})
    with pytest.raises(Exception, match="frozen"):
        s.jobs = 2  # type: ignore[misc]
    more = s.replace(jobs=s.jobs + 1)
    assert more.jobs == s.jobs + 1 and more.cache_dir == s.cache_dir
    with pytest.raises(SettingsError, match="ARMGYM_JOBS"):
        s.replace(jobs=0)


def test_every_variable_is_documented() -> None:
    page = (REPO / "docs" / "configuration.md").read_text()
    missing = [v for v in FarmSettings.variables() if f"`{v}`" not in page]
    assert not missing, f"docs/configuration.md lacks {missing}"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)


def test_the_cli_refuses_to_start() -> None:
    out = run([sys.executable, "-m", "toolchain.cli", "tasks"], ARMGYM_TESTS_PER_ATTEMPT="ten")
    assert out.returncode == 2, out
    assert "ARMGYM_TESTS_PER_ATTEMPT='ten'" in out.stderr and "Traceback" not in out.stderr


def test_the_api_refuses_to_start() -> None:
    out = run([sys.executable, "-c", "from api.app import create_app; create_app()"],
              ARMGYM_RATE_LIMIT_PER_S="fast")
    assert out.returncode == 1 and "ARMGYM_RATE_LIMIT_PER_S='fast'" in out.stderr


def test_a_worker_refuses_to_start() -> None:
    out = run([sys.executable, "-c", "import workers.celery_app"],
              ARMGYM_BROKER_URL="redis://127.0.0.1:1/0", ARMGYM_VISIBILITY_TIMEOUT_S="60")
    assert out.returncode == 1
    assert "ARMGYM_VISIBILITY_TIMEOUT_S (60) must exceed ARMGYM_TASK_TIME_LIMIT_S" in out.stderr


def test_a_container_role_refuses_to_start_with_ex_config() -> None:
    from deploy import entrypoints

    out = run([sys.executable, "-m", "deploy.entrypoints", "api"], ARMGYM_MAX_BATCH="many")
    assert out.returncode == entrypoints.EX_CONFIG, out
    assert "refusing to start" in out.stderr and "ARMGYM_MAX_BATCH='many'" in out.stderr
