"""Run one step that touches submitted content (assembler, linker, emulator) under confinement.

GNU as reads any file it is pointed at and qemu-user forwards system calls to the host kernel, so
every such step runs in bubblewrap: no network, fresh PID/IPC/UTS namespaces, a read-only view of
only the system library tree and the tool itself, one private scratch directory, an unprivileged
user, resource limits, and the whole process tree killed on timeout. Output goes to files capped by
RLIMIT_FSIZE, so a step that prints without end is stopped instead of filling memory.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import InfraError
from .settings import Settings, get_settings

NOBODY = 65534
# Library trees every dynamically linked host tool needs; they hold no secrets.
_SYSTEM_RO = ("/usr/lib", "/usr/lib64")
SANDBOX_ROOT = Path("/work")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 30
    address_space_mb: int = 2048
    file_size_mb: int = 64
    processes: int = 256
    open_files: int = 64


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    wall_s: float

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


@lru_cache(maxsize=1)
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """User namespaces can be unavailable (some container platforms); find out once."""
    exe = bwrap_path()
    if exe is None:
        return False
    probe = subprocess.run(
        [exe, "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
         "--symlink", "usr/lib64", "/lib64", "--", "/usr/bin/true"],
        capture_output=True, preexec_fn=_drop_privileges, check=False,
    )
    return probe.returncode == 0


def sandbox_mode(settings: Settings | None = None) -> str:
    """The confinement that will actually run, or raise when untrusted work must be refused."""
    settings = settings or get_settings()
    if settings.sandbox == "bwrap" and bwrap_works():
        return "bwrap"
    if settings.sandbox == "none" or settings.allow_unsandboxed:
        if settings.allow_unsandboxed:
            return "none"
        raise InfraError("ARMGYM_SANDBOX=none needs ARMGYM_ALLOW_UNSANDBOXED=1 as well")
    raise InfraError("bubblewrap is unavailable (no user namespaces?); refusing untrusted work")


def _drop_privileges() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def _limiter(limits: Limits):  # type: ignore[no-untyped-def]
    def apply() -> None:
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _drop_privileges()
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)

    return apply


def _bwrap_argv(argv: Sequence[str], scratch: Path, ro_files: Sequence[Path]) -> list[str]:
    exe = bwrap_path()
    assert exe is not None
    cmd = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for tree in _SYSTEM_RO:
        if Path(tree).exists():
            cmd += ["--ro-bind", tree, tree]
    cmd += ["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
    tool = Path(argv[0]).resolve()
    seen = {str(tool)}
    cmd += ["--ro-bind", str(tool), str(tool)]
    for path in ro_files:
        real = str(Path(path).resolve())
        if real not in seen and not real.startswith(_SYSTEM_RO):
            cmd += ["--ro-bind", real, real]
            seen.add(real)
    # No /proc and no /dev: nothing a step needs, and both would let a macro-built .incbin copy
    # host (or random) content into an object.
    cmd += ["--tmpfs", "/tmp"]
    cmd += ["--bind", str(scratch), str(SANDBOX_ROOT), "--chdir", str(SANDBOX_ROOT)]
    cmd += ["--clearenv", "--setenv", "PATH", "/usr/bin", "--setenv", "LC_ALL", "C", "--"]
    return cmd + [str(tool), *argv[1:]]


def run(
    argv: Sequence[str],
    scratch: Path,
    *,
    timeout_s: float,
    ro_files: Sequence[Path] = (),
    stdin: bytes | None = None,
    limits: Limits = Limits(),
    settings: Settings | None = None,
    confine: bool = True,
) -> RunResult:
    """Run `argv` with `scratch` as its writable working directory (seen as /work inside).

    Paths in argv must be relative to the scratch directory or listed in `ro_files`.
    `confine=False` is only for the verifier's own trusted programs (the C reference): they
    keep the limits and the timeout but skip the namespace set-up.
    """
    mode = sandbox_mode(settings) if confine else "none"
    cmd = _bwrap_argv(argv, scratch, ro_files) if mode == "bwrap" else list(argv)
    os.chmod(scratch, 0o777)
    with tempfile.TemporaryDirectory(prefix="armgym-io-") as io_dir:
        out_path, err_path = Path(io_dir, "out"), Path(io_dir, "err")
        start = time.perf_counter()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    cmd, cwd=scratch, stdin=subprocess.PIPE if stdin is not None else
                    subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=_limiter(limits),
                    start_new_session=True, env={"PATH": "/usr/bin", "LC_ALL": "C"},
                )
            except OSError as exc:
                raise InfraError(f"cannot start {Path(argv[0]).name}: {exc.strerror}") from exc
            timed_out = False
            try:
                if stdin is not None:
                    proc.communicate(stdin, timeout=timeout_s)
                else:
                    proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_tree(proc)
        wall = time.perf_counter() - start
        limit = limits.file_size_mb * 1024 * 1024
        return RunResult(
            returncode=proc.returncode,
            stdout=out_path.read_bytes()[:limit],
            stderr=err_path.read_bytes()[:65536],
            timed_out=timed_out,
            wall_s=wall,
        )


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill the whole session: bwrap's PID namespace then takes every descendant with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
