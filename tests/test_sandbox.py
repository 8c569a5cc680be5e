"""The sandbox itself, probed from inside with a real shell: what a step sees and can do.

bash is used as the probe because its builtins (globbing, redirection, /dev/tcp, ulimit) reach
the file system, the network and the limits without any other program in the sandbox.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HONEST, baseline
from host_state import sandbox_uid, with_marker

from toolchain import sandbox
from toolchain.errors import ErrorKind, InfraError
from toolchain.settings import Settings, SettingsError, get_settings
from toolchain.verify import verify

BASH = shutil.which("bash") or "/usr/bin/bash"
MISSING_BWRAP = "/nonexistent/bwrap"


def weak_settings() -> Settings:
    """The documented weaker mode, on a host where bwrap is unavailable."""
    return get_settings().replace(sandbox="none", allow_unsandboxed=True,
                                  bwrap_path=MISSING_BWRAP)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Like the verifier's: in the system temp dir, which the sandbox user can traverse."""
    work = Path(tempfile.mkdtemp(prefix="armgym-test-"))
    yield work
    shutil.rmtree(work, ignore_errors=True)


def sh(script: str, scratch: Path, **kwargs: object) -> sandbox.RunResult:
    kwargs.setdefault("timeout_s", 10)
    kwargs.setdefault("settings", get_settings())
    return sandbox.run([BASH, "-c", script], scratch, **kwargs)  # type: ignore[arg-type]


def lines(res: sandbox.RunResult) -> list[str]:
    return res.stdout.decode().split()


def test_view_holds_only_the_tool_its_libraries_and_work(scratch: Path) -> None:
    res = sh("shopt -s globstar dotglob nullglob; for p in /** ; do echo $p; done", scratch)
    seen = lines(res)
    top = {p for p in seen if p.count("/") == 1 and p != "/"}
    symlinks = {p for p in top if Path(p).is_symlink()}  # /lib -> usr/lib etc., as on the host
    assert top - symlinks == {"/usr", "/work"}
    for path in seen:
        if path.startswith("/usr/") and not Path(path).is_dir():
            assert path == BASH or ".so" in path, path  # the tool and shared objects only
    for absent in ("/etc", "/proc", "/dev", "/tmp", "/home", "/root", "/var", "/sys"):
        assert absent not in seen


@pytest.mark.parametrize(("writable", "expected"), [
    (True, ["/work/probe", "/work/out"]),
    (False, []),
    (["out"], ["/work/out"]),
])
def test_nothing_outside_work_is_writable(scratch: Path, writable: bool | list[str],
                                          expected: list[str]) -> None:
    script = ("for p in /probe /usr/probe /usr/lib/probe /work/probe /work/out; do "
              "{ echo x > $p; } 2>&- && echo $p; done")  # no /dev/null, no subshell (fork)
    assert lines(sh(script, scratch, writable=writable)) == expected


def test_runs_as_nobody_in_its_own_pid_and_uts_namespaces(scratch: Path) -> None:
    pid, uid, euid, host = lines(sh("echo $$ $UID $EUID $HOSTNAME", scratch))
    assert pid == "2"  # bwrap's init is 1; the host's pid numbers are not visible
    assert int(uid) == int(euid) == sandbox_uid()
    assert host == "sandbox"


def test_no_network(scratch: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        res = sh(f"(exec 3<>/dev/tcp/127.0.0.1/{port}) && echo reached-host;"
                 "(exec 3<>/dev/tcp/1.1.1.1/53) && echo reached-internet", scratch)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert lines(res) == []


def test_resource_limits_apply(scratch: Path) -> None:
    # RLIMIT_NPROC counts every process of the sandbox user on the host, concurrent sandboxes
    # included, so it is not set low here.
    limits = sandbox.Limits(cpu_seconds=7, address_space_mb=300, file_size_mb=3, processes=200,
                            open_files=20)
    got = lines(sh("for f in t v f u n c; do ulimit -$f; done", scratch, limits=limits))
    assert got == ["7", str(300 * 1024), str(3 * 1024), "200", "20", "0"]


@pytest.mark.parametrize("confine", [True, False])
def test_limits_come_from_the_spawn_helper_not_a_python_fork(scratch: Path,
                                                              confine: bool) -> None:
    """Every step starts through the static helper (subprocess can then use vfork), which sets
    the limits and drops to nobody before the step runs, confined or not."""
    assert sandbox.spawn_helper(get_settings().cache_dir), "the helper must build here"
    limits = sandbox.Limits(cpu_seconds=9, open_files=30)
    res = sh("ulimit -t; ulimit -n; echo $EUID", scratch, limits=limits, confine=confine)
    assert lines(res) == ["9", "30", str(sandbox.NOBODY)]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
@pytest.mark.parametrize("helper", [True, False])
def test_a_long_lived_process_runs_as_the_uid_it_is_given(scratch: Path, helper: bool,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """`start` runs the C reference's servers as their own user (RLIMIT_NPROC then counts them
    apart from nobody's sandboxed steps), through the spawn helper and the Python fallback
    alike; nobody by default."""
    if not helper:
        monkeypatch.setattr(sandbox, "_spawn_argv", lambda *_args, **_kw: None)
    for uid, want in ((None, sandbox.NOBODY), (65533, 65533)):
        kwargs = {} if uid is None else {"uid": uid}
        proc = sandbox.start([BASH, "-c", "id -ru; id -rg; ulimit -u"], scratch,
                             limits=sandbox.Limits(processes=200), settings=get_settings(),
                             **kwargs)
        try:
            assert proc.stdout is not None
            out = proc.stdout.read().decode().split()
        finally:
            sandbox.stop(proc)
        assert out == [str(want), str(want), "200"]


def test_a_helper_that_cannot_set_up_is_infra_error(scratch: Path) -> None:
    impossible = sandbox.Limits(open_files=2 ** 40)  # above the kernel's ceiling
    with pytest.raises(InfraError, match="RLIMIT_NOFILE"):
        sandbox.run(["/bin/true"], scratch, timeout_s=20, limits=impossible, confine=False,
                    settings=get_settings())
    with pytest.raises(InfraError):
        sandbox.run(["/bin/true"], scratch, timeout_s=20, limits=impossible,
                    settings=get_settings())


def test_output_is_capped(scratch: Path) -> None:
    res = sh("while :; do echo 0123456789abcdef0123456789abcdef; done", scratch,
             limits=sandbox.Limits(file_size_mb=1))
    assert len(res.stdout) == 1024 * 1024
    assert res.returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ)


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_timeout_kills_the_whole_tree(scratch: Path, mode: str) -> None:
    settings = get_settings() if mode == "bwrap" else weak_settings()
    marker = f"armgym-marker-{secrets.token_hex(6)}"
    # Under bwrap no second process can be started (see below): the PID namespace teardown is
    # what the hostile corpus exercises there, with qemu's threads.
    child = "(while :; do :; done) & " if mode == "none" else ""
    script = f": {marker}; {child}while :; do :; done"
    res = sh(script, scratch, timeout_s=0.5, settings=settings)
    assert res.timed_out
    assert with_marker(marker) == []  # gone when run() returns, not some time later


def test_no_process_can_be_started(scratch: Path) -> None:
    """Threads are fine (qemu has some); a new process fails with EPERM, so fork bombs end."""
    res = sh("echo before; (echo in-a-child)", scratch)
    assert lines(res) == ["before"]
    assert b"fork: Operation not permitted" in res.stderr


def test_failed_setup_is_infra_error_and_leaves_nothing(scratch: Path) -> None:
    marker = f"armgym-marker-{secrets.token_hex(6)}"
    with pytest.raises(InfraError, match="sandbox could not start bash"):
        sh(f": {marker}", scratch, ro_files=[Path("/nonexistent") / marker])
    assert with_marker(marker) == []


def test_a_step_cannot_pass_itself_off_as_a_sandbox_failure(scratch: Path) -> None:
    """Only bwrap's status descriptor says whether the command ran, never its stderr."""
    res = sh("echo \"bwrap: Creating new namespace failed\" >&2; exit 1", scratch)
    assert res.returncode == 1 and res.stderr.startswith(b"bwrap:")


def test_argv_asks_for_every_namespace_and_a_read_only_root(scratch: Path) -> None:
    layout = sandbox.Layout(binds=(), symlinks=())
    argv = sandbox._bwrap_argv("bwrap", [BASH], scratch, (), writable=True, layout=layout)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--remount-ro") + 1] == "/"


# --------------------------------------------------------------------------- refusal, weak mode


@pytest.fixture
def no_bwrap() -> Iterator[Settings]:
    yield get_settings().replace(bwrap_path=MISSING_BWRAP)


@pytest.mark.parametrize("allow", [False, True])
def test_refuses_untrusted_work_without_bwrap(no_bwrap: Settings, allow: bool) -> None:
    """Even with the weaker mode allowed, a broken bwrap never silently falls back to it."""
    settings = no_bwrap.replace(allow_unsandboxed=allow)
    with pytest.raises(InfraError, match="refusing untrusted work"):
        sandbox.sandbox_mode(settings)
    verdict = verify(HONEST, baseline(HONEST), 5, settings=settings)
    assert verdict.error_kind is ErrorKind.infra_error and not verdict.passed
    assert "refusing untrusted work" in verdict.message
    assert verdict.to_json().get("reward") is None  # dropped by trainers, never scored


def test_weaker_mode_needs_both_settings(no_bwrap: Settings) -> None:
    """sandbox=none alone is refused when the settings are made, before any work."""
    with pytest.raises(SettingsError, match="ARMGYM_ALLOW_UNSANDBOXED=1"):
        no_bwrap.replace(sandbox="none")
    with pytest.raises(SettingsError, match="ARMGYM_ALLOW_UNSANDBOXED=1"):
        Settings.from_env({"ARMGYM_SANDBOX": "none"})


def test_weaker_mode_runs_and_says_so() -> None:
    verdict = verify(HONEST, baseline(HONEST), 5, settings=weak_settings())
    assert verdict.passed, verdict.message
    assert verdict.sandbox == "none"


def test_verdict_says_bwrap_ran() -> None:
    verdict = verify(HONEST, baseline(HONEST), 5, settings=get_settings())
    assert verdict.passed and verdict.sandbox == "bwrap"


@pytest.mark.parametrize("memfd", [True, False])
def test_a_steps_files_are_unnamed_and_in_memory_where_memfd_exists(
        memfd: bool, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not memfd:
        monkeypatch.delattr(os, "memfd_create")  # the fallback: unnamed temporary files
    res = sandbox.run(["/usr/bin/readlink", "/proc/self/fd/0", "/proc/self/fd/1",
                       "/proc/self/fd/2"], scratch, timeout_s=10, stdin=b"",
                      settings=weak_settings())
    files = res.stdout.decode().splitlines()
    assert res.returncode == 0 and len(files) == 3, res.stderr
    assert all(f.startswith("/memfd:armgym-step") == memfd and f.endswith(" (deleted)")
               for f in files), files
    res = sh("read -r x; echo $x; echo err >&2", scratch, stdin=b"given\n")  # through bwrap
    assert (res.returncode, res.stdout, res.stderr) == (0, b"given\n", b"err\n")
