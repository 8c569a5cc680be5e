"""One settings object for everything configurable in the verifier, read from ARMGYM_* environment
variables by pydantic-settings and validated when it is made: a mistyped value or an impossible
combination refuses to start (SettingsError, naming the variable) instead of surfacing in the
middle of a verification. The core never reads the environment itself; callers pass a Settings
in (`get_settings()` is the process-wide one the CLI and the services build at start-up).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "ARMGYM_"


class SettingsError(ValueError):
    """ARMGYM_* settings that cannot be used; the message names each variable and why."""


def _default_cache() -> Path:
    """Sandboxed steps run as an unprivileged user, so root's cache must live outside /root."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "armgym"
    if os.geteuid() == 0:
        return Path("/var/cache/armgym")
    return Path.home() / ".cache" / "armgym"


def _cores() -> int:
    return max(1, os.cpu_count() or 1)


class EnvSettings(BaseSettings):
    """ARMGYM_* variables, validated; the shared behaviour of the core's and the farm's settings.

    `Settings()` reads the process environment; `from_env(mapping)` reads only that mapping (an
    explicit environment, as for a child process); `replace(**changes)` is a validated copy.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore",
                                      validate_default=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None

    @classmethod
    def variable(cls, name: str) -> str:
        return f"{ENV_PREFIX}{name.upper()}"

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable this object reads (nested settings included), with the
        field it sets."""
        out: dict[str, str] = {}
        for name in cls.model_fields:
            nested = cls._nested().get(name)
            out |= nested.variables() if nested else {cls.variable(name): name}
        return out

    @classmethod
    def _nested(cls) -> dict[str, type[EnvSettings]]:
        return {name: f.annotation for name, f in cls.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, EnvSettings)}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment: the process's, or the mapping given to from_env
        (no .env files, no secrets directory)."""
        return (init_settings, env_settings if _ENV.get() is None else _Mapping(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Settings from `env` alone (default: the process environment), or SettingsError."""
        token = _ENV.set(None if env is None else dict(env))
        try:
            return cls()
        finally:
            _ENV.reset(token)

    def replace(self, **changes: Any) -> Self:
        """A validated copy with `changes` (model_copy would skip validation)."""
        return type(self)(**{**dict(self), **changes})


# The environment from_env reads, when it is given one (a context variable, so threads and
# nested settings see the right one).
_ENV: ContextVar[dict[str, str] | None] = ContextVar("armgym_settings_env", default=None)


class _Mapping(EnvSettingsSource):
    """pydantic-settings' environment source over the mapping given to from_env."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENV.get() or {}
        return env if self.case_sensitive else {k.lower(): v for k, v in env.items()}


def describe(exc: ValidationError) -> str:
    """One line per problem: the variable, the value it had, and what is wrong with it."""
    lines = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        msg = error.get("msg", "").removeprefix("Value error, ")
        if not loc:  # a rule over several settings: its message names them
            lines.append(msg)
            continue
        value = error.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float) else ""
        lines.append(f"{ENV_PREFIX}{loc[-1].upper()}{shown}: {msg}")
    return "invalid ARMGYM_* settings: " + "; ".join(lines)


class Settings(EnvSettings):
    cache_dir: Path = Field(default_factory=_default_cache)
    # "bwrap" confines every step that touches submitted content; "none" is the documented weaker
    # mode and only runs when allow_unsandboxed is set as well.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    # The bwrap executable; empty means `bwrap` on PATH. A path that does not exist makes the
    # sandbox unavailable, which is how tests reproduce a host without user namespaces.
    bwrap_path: str = ""
    # 0-9 and 20-30 fixed, 10-19 random (correctness.gate.RANDOM_TESTS)
    tests_per_attempt: int = Field(31, ge=1)
    max_source_bytes: int = Field(256 * 1024, ge=1)
    max_source_lines: int = Field(10_000, ge=1)
    max_object_bytes: int = Field(1024 * 1024, ge=1)
    assemble_timeout_s: float = Field(10.0, gt=0)
    link_timeout_s: float = Field(20.0, gt=0)
    # Place the candidate into its variant's slotted harness in process (execution/place.py),
    # ld only for objects the placement does not take; False: ld links every attempt.
    link_in_process: bool = True
    # Wall budget of one emulator run = run_timeout_base_s + run_timeout_factor * reference time.
    run_timeout_base_s: float = Field(3.0, gt=0)
    run_timeout_factor: float = Field(20.0, ge=0)
    memory_limit_mb: int = Field(1024, ge=16)
    output_limit_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Translation blocks the execution guard records of the timing test (4 bytes each; the
    # default is the 192 MiB that qemu's log of one test was allowed, at its 90 bytes a block);
    # a kernel that runs more is `timeout`.
    trace_limit_blocks: int = Field(192 * 1024 * 1024 // 90, ge=1, le=1 << 23)
    # Mispredicted branches cost the V2's penalty on top of llvm-mca's cycles (performance/
    # branches.py); off only to compare with the pipeline-only figure.
    branch_prediction: bool = True
    jobs: int = Field(default_factory=_cores, ge=1)
    # Overlap a verification's independent tool runs (background.py): lower latency per attempt;
    # throughput comes from the worker processes (one more than the cores) either way.
    overlap: bool = True
    # C reference servers per worker process (execution/reference_server.py): one long-lived
    # emulator per variant harness answers its reference runs, least recently used closed
    # first; 0 = a process per reference run. Each holds a few MiB (docs/configuration.md).
    reference_servers: int = Field(48, ge=0)
    # A server that answered nothing for this long is closed.
    reference_server_idle_s: float = Field(600.0, gt=0)
    # Content-addressed verdicts (verdict_cache.py): an identical attempt is answered at once.
    verdict_cache: bool = True
    # Mixed into the seed of an attempt that brings none (verify.derive_seed): identical
    # attempts get identical tests (so a verdict is reproducible and cacheable) that nobody can
    # predict without it. Set it per deployment.
    seed_secret: str = ""

    @model_validator(mode="after")
    def _weaker_mode_is_explicit(self) -> Self:
        if self.sandbox == "none" and not self.allow_unsandboxed:
            raise ValueError("ARMGYM_SANDBOX=none runs submitted code outside the sandbox and "
                             "needs ARMGYM_ALLOW_UNSANDBOXED=1 as well")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings from its environment, made (and validated) once."""
    return Settings.from_env()
