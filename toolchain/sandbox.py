"""Run one step that touches submitted content (assembler, linker, emulator) under confinement.

GNU as reads any file it is pointed at and qemu-user forwards system calls to the host kernel, so
every such step runs in bubblewrap, as user `nobody`:

* new user, PID, IPC, UTS, cgroup and network namespaces (no network: the new network namespace
  has nothing but its own loopback), no nested user namespaces, no capabilities, a new session
  (no terminal to inject into);
* a seccomp filter: threads yes, new processes no (see `seccomp_program`);
* a read-only file system holding only what the step needs: the tool itself, the shared objects
  it loads (found once per tool through its ELF interpreter and hard-linked into a directory in
  the cache that is bound over the system library directory, so a tool costs three bind
  mounts, not one per library), the files the caller lists, and the private scratch directory
  as `/work`. There is no `/proc`, `/dev`, `/etc`, `/tmp` or home directory, and the root is
  remounted read-only, so nothing outside `/work` can be written (and `/work` itself not, when
  the caller says so);
* resource limits (RLIMIT_CPU, AS, FSIZE, NOFILE, NPROC; no core dumps); output goes to files
  capped by RLIMIT_FSIZE and is read back only up to the cap;
* on timeout the whole tree is killed: bwrap's session is killed, then the sandbox's PID 1 (by a
  pidfd, after checking it is the init of this sandbox's PID namespace), and `run` returns only
  once that init is gone; the kernel removes every other process of a PID namespace before its
  init finishes exiting, so nothing the step started outlives `run`;
* bwrap's status descriptor (which the step never holds) says whether the command ran at all:
  if not, the sandbox failed, which is InfraError, never the submission's fault.

Where bubblewrap cannot run (no user namespaces on some container platforms) untrusted work is
refused with InfraError, unless `sandbox="none"` and `allow_unsandboxed` are both set: then the
documented weaker mode runs the tool directly as `nobody` with the same limits, in its own process
group (killed as a whole and waited for) and with the scratch directory as working directory, and
nothing more: it sees the host's files and network, and a process that leaves its group survives.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import resource
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from .errors import InfraError
from .settings import Settings

NOBODY = 65534
SANDBOX_ROOT = Path("/work")
STDERR_CAP = 65536
# How long `run` waits for a killed sandbox's PID namespace to empty before giving up.
TEARDOWN_WAIT_S = 5.0
# Refusal messages say how to get the weaker mode, so an operator knows the choice exists.
WEAK_MODE_HINT = "set ARMGYM_SANDBOX=none and ARMGYM_ALLOW_UNSANDBOXED=1 for the weaker mode"


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


# --------------------------------------------------------------------------- which sandbox


def bwrap_path(settings: Settings) -> str | None:
    """The bwrap executable: `settings.bwrap_path` when set (it may not exist), else PATH's."""
    configured = settings.bwrap_path
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def bwrap_works(settings: Settings) -> bool:
    exe = bwrap_path(settings)
    return exe is not None and _probe(exe, settings.cache_dir) is None


@lru_cache(maxsize=8)
def _probe(exe: str, cache_dir: Path) -> str | None:
    """Run `true` with the exact confinement real steps get; None when it works, else why not.

    User namespaces can be unavailable (some container platforms); find out once per bwrap.
    """
    true = shutil.which("true") or "/usr/bin/true"
    scratch = Path(tempfile.mkdtemp(prefix="armgym-probe-"))
    os.chmod(scratch, 0o755)
    seccomp_r = _seccomp_fd()
    try:
        layout = _layout(true, (), cache_dir)
        cmd = _bwrap_argv(exe, [true], scratch, (), writable=True, layout=layout,
                          seccomp_fd=seccomp_r)
        probe = subprocess.run(cmd, capture_output=True, preexec_fn=_drop_privileges,
                               start_new_session=True, timeout=30, check=False,
                               pass_fds=() if seccomp_r is None else (seccomp_r,))
    except (OSError, subprocess.TimeoutExpired, InfraError) as exc:
        return str(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if seccomp_r is not None:
            os.close(seccomp_r)
    if probe.returncode != 0:
        return probe.stderr.decode(errors="replace").strip()[:300] or f"exit {probe.returncode}"
    return None


def sandbox_mode(settings: Settings) -> str:
    """The confinement that will actually run ("bwrap" or "none"), or InfraError to refuse.

    bwrap is used when configured and it works. The weaker mode needs both `sandbox="none"` and
    `allow_unsandboxed`: a broken bwrap never silently falls back to it.
    """
    if settings.sandbox == "none":
        if settings.allow_unsandboxed:
            return "none"
        raise InfraError("ARMGYM_SANDBOX=none needs ARMGYM_ALLOW_UNSANDBOXED=1 as well; "
                         "refusing untrusted work")
    if settings.sandbox != "bwrap":
        raise InfraError(f"unknown sandbox {settings.sandbox!r} (bwrap or none)")
    exe = bwrap_path(settings)
    if exe is None:
        raise InfraError(f"bubblewrap is not installed; refusing untrusted work ({WEAK_MODE_HINT})")
    problem = _probe(exe, settings.cache_dir)
    if problem is not None:
        raise InfraError(f"bubblewrap cannot create a sandbox here (no user namespaces?): "
                         f"{problem}; refusing untrusted work ({WEAK_MODE_HINT})")
    return "bwrap"


# --------------------------------------------------------------------------- file system view


@dataclass(frozen=True)
class Layout:
    """Read-only binds (source, destination) and symlinks (target, path) a tool needs."""

    binds: tuple[tuple[str, str], ...]
    symlinks: tuple[tuple[str, str], ...]


def _elf_interpreter(exe: str) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF executable; None for a static one."""
    try:
        with open(exe, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                raise InfraError(f"{Path(exe).name} is not a 64-bit ELF executable; "
                                 "it cannot be confined")
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                ptype, _flags, offset, _va, _pa, size = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize)
                if ptype == 3:  # PT_INTERP
                    f.seek(offset)
                    return f.read(size).rstrip(b"\0").decode()
    except OSError as exc:
        raise InfraError(f"cannot read {Path(exe).name}: {exc.strerror}") from exc
    return None


def shared_objects(exe: str) -> tuple[str | None, list[tuple[str, str]]]:
    """`exe`'s ELF interpreter and every shared object it loads: (name asked for, resolved path).

    The loader lists them without running the program (`ld.so --list`, what ldd does).
    """
    interp = _elf_interpreter(exe)
    if interp is None:
        return None, []
    try:
        out = subprocess.run([interp, "--list", exe], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"cannot list the libraries of {Path(exe).name}: {exc}") from exc
    found = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if not target.startswith("/"):
                raise InfraError(f"{Path(exe).name} needs {parts[0]}, which is not found")
            found.append((parts[0], target))
    if out.returncode != 0 or not found:
        raise InfraError(f"cannot list the libraries of {Path(exe).name}")
    return interp, found


def _top_level_symlinks() -> tuple[tuple[str, str], ...]:
    """/lib -> usr/lib and friends, as on the host, so loader paths resolve the same way."""
    out = []
    for entry in sorted(os.scandir("/"), key=lambda e: e.name):
        if entry.is_symlink():
            out.append((os.readlink(entry.path), entry.path))
    return tuple(out)


@lru_cache(maxsize=64)
def _layout(tool: str, ro_files: tuple[str, ...], cache_dir: Path) -> Layout:
    """What `tool` (a resolved path) needs to run, plus `ro_files`, as few mounts as possible.

    Every shared object goes, under the name the loader asks for, into one directory bound in
    place of the system library directory (the one libc lives in), so the loader finds exactly
    those and nothing else, also those a RUNPATH of `$ORIGIN/...` points at (without /proc the
    loader cannot expand $ORIGIN and falls back to the system directory). The directory is
    built once in the cache from hard links (copies across file systems), keyed by the
    libraries' identity. A listed file inside a bound directory would need a mount point in a
    read-only bind, so that directory's files are then bound one by one instead; a listed file
    that is one of those libraries is simply already there.
    """
    interp, libs = shared_objects(tool)
    by_dir: dict[str, list[tuple[str, str]]] = {}
    if interp is not None:
        libc = next((path for name, path in libs if name.startswith("libc.so")), libs[0][1])
        system_dir = os.path.realpath(os.path.dirname(libc))
        for name, path in libs:
            by_dir.setdefault(system_dir, []).append(
                (os.path.realpath(path), os.path.join(system_dir, name)))
        interp_dir = os.path.realpath(os.path.dirname(interp))
        by_dir.setdefault(interp_dir, []).append(
            (os.path.realpath(interp), os.path.join(interp_dir, os.path.basename(interp))))
    provided = {dest: src for files in by_dir.values() for src, dest in files}
    extra = [f for f in ro_files if provided.get(f) != os.path.realpath(f)]
    binds: list[tuple[str, str]] = []
    for directory, files in sorted(by_dir.items()):
        if any(f.startswith(directory + "/") for f in extra):
            binds += files
        else:
            binds.append((_library_farm(files, cache_dir), directory))
    seen = set(provided)
    for path in (tool, *extra):
        if path not in seen:
            binds.append((path, path))
            seen.add(path)
    return Layout(tuple(binds), _top_level_symlinks())


def _library_farm(files: list[tuple[str, str]], cache_dir: Path) -> str:
    """A read-only directory holding exactly `files` (under their destination names), once."""
    ident = hashlib.sha256()
    for src, dest in sorted(files):
        st = os.stat(src)
        ident.update(f"{src}\0{dest}\0{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}\0"
                     .encode())
    root = cache_dir / "sandbox-libs"
    farm = root / ident.hexdigest()[:20]
    if farm.is_dir():
        return str(farm)
    root.mkdir(parents=True, exist_ok=True)
    for parent in [root, *root.parents]:
        if parent == cache_dir.parent:
            break
        os.chmod(parent, 0o755)  # bwrap runs as nobody and must traverse the cache
    tmp = Path(tempfile.mkdtemp(prefix=".farm-", dir=root))
    try:
        for src, dest in files:
            target = tmp / os.path.basename(dest)
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, farm)
        except OSError:
            if not farm.is_dir():  # a concurrent worker may have published the same farm
                raise
    except OSError as exc:
        raise InfraError(f"cannot prepare the sandbox's library directory: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(farm)


def _bwrap_argv(exe: str, argv: Sequence[str], scratch: Path, writable_files: Sequence[str], *,
                writable: bool, layout: Layout, status_fd: int | None = None,
                seccomp_fd: int | None = None) -> list[str]:
    cmd = [exe, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
           "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox"]
    if status_fd is not None:
        cmd += ["--json-status-fd", str(status_fd)]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    for src, dest in layout.binds:
        cmd += ["--ro-bind", src, dest]
    for target, path in layout.symlinks:
        cmd += ["--symlink", target, path]
    # No /proc, /dev or /tmp: nothing a step needs, and /proc or /dev would let a macro-built
    # .incbin copy host (or random) content into an object.
    cmd += ["--bind" if writable else "--ro-bind", str(scratch), str(SANDBOX_ROOT)]
    for name in writable_files:
        cmd += ["--bind", str(scratch / name), f"{SANDBOX_ROOT}/{name}"]
    cmd += ["--remount-ro", "/", "--chdir", str(SANDBOX_ROOT),
            "--clearenv", "--setenv", "PATH", "/usr/bin", "--setenv", "LC_ALL", "C", "--"]
    return cmd + list(argv)


# --------------------------------------------------------------------------- seccomp

# A sandboxed step may start threads (qemu and llvm-mca do) but no process: a fork reached
# through libc code in the candidate's executable fails with EPERM, so fork bombs stop at once
# and never eat into the process limit that every sandbox on the host shares (RLIMIT_NPROC
# counts all processes of `nobody`). A foreign system-call ABI (x32, another architecture) kills.
_SECCOMP_ARCH: dict[str, tuple[int, int, int, tuple[int, ...], int]] = {
    # machine: (AUDIT_ARCH_*, clone, clone3, fork-like syscalls, syscall-number bit to refuse)
    "x86_64": (0xC000003E, 56, 435, (57, 58), 0x40000000),
    "aarch64": (0xC00000B7, 220, 435, (), 0),
}
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_CLONE_THREAD = 0x00010000


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The BPF filter bwrap installs before exec; None on an architecture not listed here."""
    spec = _SECCOMP_ARCH.get(machine or os.uname().machine)
    if spec is None:
        return None
    arch, clone, clone3, forks, foreign = spec
    deny, nosys = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    prog = [(_LD_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, _KILL), (_LD_ABS, 0, 0, 0)]
    if foreign:
        prog += [(_JGE, 0, 1, foreign), (_RET, 0, 0, _KILL)]
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone.
    prog += [(_JEQ, 0, 1, clone3), (_RET, 0, 0, nosys)]
    for nr in forks:
        prog += [(_JEQ, 0, 1, nr), (_RET, 0, 0, deny)]
    prog += [
        (_JEQ, 0, 3, clone),           # not clone: allow
        (_LD_ABS, 0, 0, 16),           # clone flags (low 32 bits of the first argument)
        (_JSET, 1, 0, _CLONE_THREAD),  # a thread: allow
        (_RET, 0, 0, deny),            # a new process: EPERM
        (_RET, 0, 0, _ALLOW),
    ]
    return b"".join(struct.pack("<HBBI", *insn) for insn in prog)


def _seccomp_fd() -> int | None:
    """A pipe's read end holding the filter, for bwrap --seccomp (it reads it to EOF)."""
    program = seccomp_program()
    if program is None:
        return None
    read_end, write_end = os.pipe()
    os.write(write_end, program)  # a few hundred bytes: far below the pipe buffer
    os.close(write_end)
    return read_end


# --------------------------------------------------------------------------- running


def _drop_privileges(uid: int = NOBODY) -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


SPAWN_HELPER_C = Path(__file__).with_name("spawn_helper.c")
SPAWN_FAILED = 125  # the helper's exit status when it could not set up the step (not the step's)


@lru_cache(maxsize=4)
def spawn_helper(cache_dir: Path) -> str | None:
    """The static armgym-spawn program (spawn_helper.c), built once per source and machine with
    the pinned zig; None where it cannot be built (then limits are set by a Python preexec_fn,
    which is slower but equivalent)."""
    from .tools import fingerprint, zig_path  # tools imports this module's settings only

    zig = zig_path()
    if zig is None:
        return None
    arch = platform.machine()
    source = SPAWN_HELPER_C.read_bytes()
    out = cache_dir / "spawn" / fingerprint(source, arch)[:16] / "armgym-spawn"
    if out.exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".armgym-spawn-{os.getpid()}")
    try:
        subprocess.run([zig, "cc", "-target", f"{arch}-linux-musl", "-static", "-O2",
                        "-o", str(tmp), str(SPAWN_HELPER_C)], capture_output=True, check=True,
                       timeout=300)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError):
        tmp.unlink(missing_ok=True)
        return None
    return str(out)


def _spawn_argv(cmd: list[str], limits: Limits, cache_dir: Path, uid: int = NOBODY
                ) -> list[str] | None:
    helper = spawn_helper(cache_dir)
    if helper is None:
        return None
    exe = cmd[0] if os.path.isabs(cmd[0]) else shutil.which(cmd[0]) or cmd[0]
    return [helper, str(limits.cpu_seconds), str(limits.address_space_mb),
            str(limits.file_size_mb), str(limits.open_files), str(limits.processes), str(uid),
            "--", exe, *cmd[1:]]


def _limiter(limits: Limits, uid: int = NOBODY) -> Callable[[], None]:
    def apply() -> None:
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _drop_privileges(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)

    return apply


def run(
    argv: Sequence[str],
    scratch: Path,
    *,
    timeout_s: float,
    ro_files: Sequence[Path] = (),
    stdin: bytes | None = None,
    limits: Limits = Limits(),
    settings: Settings,
    confine: bool = True,
    writable: bool | Sequence[str] = True,
) -> RunResult:
    """Run `argv` with `scratch` as its working directory (seen as /work inside).

    Paths in argv must be relative to the scratch directory or listed in `ro_files`.
    `writable`: True lets the step write anywhere in scratch; False makes scratch read-only;
    a list of file names makes only those files writable (they are created empty if missing).
    `confine=False` is only for the verifier's own trusted programs (the C reference): they
    keep the limits and the timeout but skip the namespace set-up.
    """
    mode = sandbox_mode(settings) if confine else "none"
    os.chmod(scratch, 0o777)
    if mode != "bwrap":
        return _supervise(list(argv), scratch, timeout_s, stdin, limits, [], None,
                          settings.cache_dir)[0]
    exe = bwrap_path(settings)
    assert exe is not None
    tool = str(Path(argv[0]).resolve())
    names = [] if isinstance(writable, bool) else [str(n) for n in writable]
    for name in names:
        (scratch / name).touch()
        os.chmod(scratch / name, 0o666)
    files = tuple(sorted({str(Path(p).resolve()) for p in ro_files}))
    layout = _layout(tool, files, settings.cache_dir)
    status_r, status_w = os.pipe()
    seccomp_r = _seccomp_fd()
    child_fds = [status_w] + ([seccomp_r] if seccomp_r is not None else [])
    try:
        os.set_blocking(status_r, False)
        cmd = _bwrap_argv(exe, [tool, *argv[1:]], scratch, names, writable=writable is True,
                          layout=layout, status_fd=status_w, seccomp_fd=seccomp_r)
        result, status = _supervise(cmd, scratch, timeout_s, stdin, limits, child_fds, status_r,
                                    settings.cache_dir)
    finally:
        for fd in [status_r, *child_fds]:
            os.close(fd)
    if "exit-code" not in status and not result.timed_out:
        # bwrap reports an exit code only for a command it managed to start: anything else is
        # the sandbox failing (e.g. no process slots left), never the submission's doing. The
        # command cannot forge this: it never holds the status descriptor.
        why = result.stderr.decode(errors="replace").strip().splitlines()
        raise InfraError(f"the sandbox could not start {Path(tool).name}: "
                         f"{why[0][:300] if why else f'exit {result.returncode}'}")
    return result


def _popen(cmd: list[str], scratch: Path, limits: Limits, cache_dir: Path, stdin: Any,
           stdout: Any, stderr: Any, child_fds: Sequence[int] = (), uid: int = NOBODY
           ) -> tuple[subprocess.Popen[bytes], bool]:
    """Start `cmd` with the limits, as `uid` (`nobody`), in a session of its own; and whether
    it went through the spawn helper (whose own failure is its exit status SPAWN_FAILED)."""
    spawn = _spawn_argv(cmd, limits, cache_dir, uid)
    try:
        proc = subprocess.Popen(
            spawn or cmd, cwd=scratch, stdin=stdin, stdout=stdout, stderr=stderr,
            preexec_fn=None if spawn else _limiter(limits, uid),
            start_new_session=True, env={"PATH": "/usr/bin", "LC_ALL": "C"},
            pass_fds=tuple(child_fds),
        )
    except OSError as exc:
        raise InfraError(f"cannot start {Path(cmd[0]).name}: {exc.strerror}") from exc
    return proc, spawn is not None


def start(argv: Sequence[str], scratch: Path, *, limits: Limits = Limits(),
          settings: Settings, uid: int = NOBODY) -> subprocess.Popen[bytes]:
    """A long-lived process of the verifier's own trusted programs (the C reference's server),
    as `run(..., confine=False)` would run it (the same limits and session; as `uid` when root,
    an unprivileged user that owns nothing, `nobody` by default), with pipes for stdin and
    stdout (stderr discarded); `stop` ends it. Its stdin's write end is held by this process
    alone (Python's pipes are not inherited by exec), so it sees EOF when this process dies."""
    os.chmod(scratch, 0o777)
    return _popen(list(argv), scratch, limits, settings.cache_dir, subprocess.PIPE,
                  subprocess.PIPE, subprocess.DEVNULL, uid=uid)[0]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process `start` started, and all its session, and wait until they are gone."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    _kill_tree(proc)


def _supervise(cmd: list[str], scratch: Path, timeout_s: float, stdin: bytes | None,
               limits: Limits, child_fds: list[int], status_r: int | None,
               cache_dir: Path) -> tuple[RunResult, dict[str, int]]:
    """Start `cmd`, wait up to `timeout_s`, then make sure nothing it started is left.

    `child_fds` are passed to the child and closed here (emptying the list) once it started, so
    `status_r`, the read end of bwrap's --json-status-fd pipe, sees EOF when bwrap is gone.
    """
    # Unnamed files (memfd, or O_TMPFILE): nothing to name, list or remove afterwards. stdin is
    # a file too, not a pipe: no writer thread, no deadlock, and the exit is awaited on a pidfd
    # rather than by Popen.communicate's sleep-polling wait, which added up to tens of ms per step.
    with _capture() as out, _capture() as err, _capture() as given:
        if stdin is not None:
            given.write(stdin)
            given.flush()
            given.seek(0)
        start = time.perf_counter()
        proc, spawn = _popen(cmd, scratch, limits, cache_dir,
                             given if stdin is not None else subprocess.DEVNULL, out, err,
                             child_fds)
        while child_fds:
            os.close(child_fds.pop())
        timed_out = False
        try:
            timed_out = wait_exit(proc, timeout_s)
        finally:
            report = _kill_tree(proc, status_r)
        wall = time.perf_counter() - start
        result = RunResult(
            returncode=proc.returncode,
            stdout=_read_capped(out, limits.file_size_mb * 1024 * 1024),
            stderr=_read_capped(err, STDERR_CAP),
            timed_out=timed_out,
            wall_s=wall,
        )
        if spawn and proc.returncode == SPAWN_FAILED and result.stderr.startswith(b"armgym-spawn:"):
            raise InfraError(f"cannot start {Path(cmd[0]).name}: "
                             f"{result.stderr.decode(errors='replace').strip()[:300]}")
        return result, report


def _capture() -> IO[bytes]:
    """A file for a step's stdin, stdout or stderr: in memory (memfd_create), not a temporary
    file on the disk, whose creation is a file system transaction (the worker's CPU per
    sandboxed step 1.7 -> 1.3 ms); the file size limit applies to it alike (SIGXFSZ). A
    temporary file where memfd is missing."""
    try:
        return open(os.memfd_create("armgym-step", os.MFD_CLOEXEC), "w+b")
    except (AttributeError, OSError):  # no memfd_create (Linux < 3.17, or not Linux)
        return tempfile.TemporaryFile()


def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for the child to exit; True when `timeout_s` passed first.

    A pidfd wakes up the moment the child exits; Popen.wait(timeout) polls with sleeps that
    grow to 50 ms, which costs every step up to that much latency.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (Linux < 5.3)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return True
        return False
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
        return not ready
    finally:
        os.close(pidfd)


def _read_capped(f: IO[bytes], cap: int) -> bytes:
    f.seek(0)
    return f.read(cap)


def _kill_tree(proc: subprocess.Popen[bytes], status_fd: int | None = None) -> dict[str, int]:
    """Kill the session, then the sandbox's PID 1, and wait until its namespace is empty.

    bwrap's own processes run in the session started here; the sandboxed command runs in a
    session of its own inside the PID namespace, whose init dies with bwrap (--die-with-parent)
    and is also killed here explicitly, in case bwrap was killed before it armed that.
    Returns bwrap's status reports (empty without bwrap).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_group_gone(proc.pid)
    if status_fd is None:
        return {}
    report = _read_status(status_fd)
    _end_namespace(report)
    return report


def _wait_group_gone(pgid: int) -> None:
    """SIGKILL is delivered asynchronously: wait until no member of the group is still running.

    Without it, the weaker mode could return while a killed grandchild is still running. Exited
    members that init has not reaped yet (zombies) no longer run and are not waited for.
    """
    deadline = time.monotonic() + TEARDOWN_WAIT_S
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            raise InfraError("a sandboxed process group did not terminate after SIGKILL")
        time.sleep(0.001)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _read_status(fd: int) -> dict[str, int]:
    """bwrap's JSON status lines (child pid, namespace ids, then the exit code), merged."""
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 4096):
            data += chunk
    merged: dict[str, int] = {}
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                merged.update(doc)
    return merged


def _end_namespace(info: dict[str, int]) -> None:
    """SIGKILL the init of the sandbox's PID namespace and wait for it to be gone.

    The pid is only trusted after the pidfd is open and the process is seen to be the init of
    the very namespace bwrap reported, so a recycled pid is never signalled.
    """
    pid, ns = info.get("child-pid"), info.get("pid-namespace")
    if not pid or not ns:
        return
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # already gone and reaped
    try:
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != f"pid:[{ns}]":
                return
        except OSError:
            return
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        ready, _, _ = select.select([pidfd], [], [], TEARDOWN_WAIT_S)
        if not ready:
            raise InfraError("a sandbox did not terminate after SIGKILL")
    finally:
        os.close(pidfd)
