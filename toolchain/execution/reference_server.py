"""The C reference served by a long-lived emulator per variant harness, a bounded pool of them
per worker process.

A one-off reference run costs an emulator launch per fresh verification, next to the
candidate's own run. The reference is the verifier's own code (no candidate content), so one
emulator per variant can stay up and answer every reference run of that variant: reference.elf
in serve mode (reference_server.c) reads one request per line (the run's command-line
arguments) and answers each with one length-prefixed frame holding exactly what the one-off
run writes to stdout. The server runs as the one-off run does (`sandbox.start`: the same limits
and session as `sandbox.run(..., confine=False)`), but as an unprivileged user of its own
(`SERVER_UID`) with a larger process limit (`SERVER_LIMITS`), and ends at EOF on its stdin,
i.e. with the worker process.

`run` answers from the pool or says None, and the caller runs the reference once as before:
when the pool is off (`reference_servers` = 0), its server is busy with another request (one
at a time each), the pool is full of busy servers, the servers' own user (`SERVER_UID`) runs
too many threads on the host already (`TASK_SHARE`), or the server failed (timed out, died,
answered a malformed frame, or a non-zero status): a failed server is killed first. Servers
are closed least recently used first beyond `reference_servers`, after
`reference_server_idle_s` without a request, once they used half of the CPU limit a one-off
run has (RLIMIT_CPU counts the process's whole life), and at exit.

The wall time a served run reports (it scales the candidate's time budget) stays comparable
with a one-off run's, which includes the emulator's start and its translation of the code: the
server's start-up (spawn until its ready frame) plus the longer of this request's time and its
first request's (the one that translated the code; later requests of a variant reuse the
translations, and do the same work under any seed, so they are faster by about that).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import select
import shutil
import struct
import subprocess
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from .. import sandbox
from .. import scratch as scratch_dirs
from ..errors import InfraError
from ..settings import Settings

SERVE = "serve"
MAGIC = 0x56535241  # "ARSV"
HEADER = struct.Struct("<IIiIQ")  # magic, request id, exit status, 0, payload length
LIMITS = sandbox.Limits()  # the one-off reference run's (sandbox.run's default)
# A server is retired once it used this share of RLIMIT_CPU, which counts its whole life: a
# request then still has as much CPU left as half a one-off run.
CPU_SHARE = 0.5
# Servers run (when the worker is root) as a user of their own, an otherwise unused uid that
# owns nothing, not as the sandbox user: RLIMIT_NPROC counts a user's tasks host-wide, and
# nobody's limit (LIMITS.processes) is every sandboxed step's headroom, which long-lived
# servers (2 qemu threads each) would otherwise eat (the floor at n=512 found every fallback
# there: 238 of 500 runs). Their user's own limit is larger than nobody's: a server runs the
# verifier's C, never a candidate's code, so the limit only has to stay finite, while a
# worker's full pools must fit under it (each process keeps up to `reference_servers`, 48 by
# default, and a worker runs one process more than its CPUs: with nobody's 256, one pool of a
# 3-process worker got 10 servers and ran 624 of 1,500 references one-off). A server starts
# only while the servers' user's tasks on the host stay within TASK_SHARE of that limit after
# the start (768 tasks: 384 servers, eight full pools), so that a start never meets the limit
# itself; memory, not tasks, is what bounds them in a deployment (docs/operations.md).
SERVER_UID = sandbox.NOBODY - 1
SERVER_LIMITS = replace(LIMITS, processes=4 * LIMITS.processes)
TASK_SHARE = 0.75
SERVER_TASKS = 2


# How this process's reference runs went, one count per run (`paths()`): the reference cache
# answered (runs.py: "cached"), a server answered ("served"), or the run was made one-off and
# why: the pool is off, the arguments are not a line the server reads, every slot held a busy
# server, the host's task budget was spent, the server failed (killed), it answered a non-zero
# status (the one-off run reports it), or its answer did not parse (runs.py: killed). And the
# servers' own events (not runs): "start" (a launch), and the closes that make later starts,
# "evicted" (least recently used past the bound), "retired" (CPU share) and "idle".
PATHS: Counter[str] = Counter()
SERVER_EVENTS = frozenset({"start", "evicted", "retired", "idle"})  # the rest are runs
_paths_lock = threading.Lock()


def count(path: str) -> None:
    """One more reference run (or cache answer) that went `path` (cheap: a locked add)."""
    with _paths_lock:
        PATHS[path] += 1


def paths() -> dict[str, int]:
    """A copy of this process's counts (the floor bench reports them per verification)."""
    with _paths_lock:
        return dict(PATHS)


class Failed(Exception):
    """The server did not answer a request properly: it is killed, the caller runs one-off."""


class Server:
    """One reference.elf in serve mode, its pipes, and what the pool needs to know of it."""

    def __init__(self, prefix: Sequence[str], exe: Path) -> None:
        self.prefix, self.exe = tuple(prefix), exe
        self.lock = threading.Lock()  # one request at a time
        self.used = time.monotonic()
        self.startup_s = 0.0
        self.first_s: float | None = None  # the first request's time (translation included)
        self.proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._buffer = bytearray()

    def start(self, settings: Settings, timeout_s: float) -> None:
        """Spawn the server and wait for its ready frame (the start-up time it reports)."""
        began = time.perf_counter()
        scratch = scratch_dirs.make("refsrv")
        try:
            self.proc = sandbox.start([*self.prefix, SERVE], scratch, limits=SERVER_LIMITS,
                                      settings=settings, uid=SERVER_UID)
        finally:
            # Its working directory, removed once it is in it (the C writes no file): a server
            # leaves nothing on disk, however its worker ends.
            shutil.rmtree(scratch, ignore_errors=True)
        self._frame(0, began + timeout_s)
        self.startup_s = time.perf_counter() - began

    def request(self, args: Sequence[str], timeout_s: float) -> tuple[int, bytes, float]:
        """(exit status, output, seconds) of one run with the command-line `args`; Failed."""
        assert self.proc is not None and self.proc.stdin is not None
        ident = next(self._ids)
        line = " ".join([str(ident), *args]).encode() + b"\n"
        began = time.perf_counter()
        try:
            os.write(self.proc.stdin.fileno(), line)  # far below the pipe's buffer
        except OSError as exc:
            raise Failed(f"the server is gone: {exc}") from exc
        status, payload = self._frame(ident, began + timeout_s)
        self.used = time.monotonic()
        return status, payload, time.perf_counter() - began

    def wall_s(self, seconds: float) -> float:
        """What a one-off run of a request that took `seconds` here would have taken."""
        if self.first_s is None:
            self.first_s = seconds
        return self.startup_s + max(seconds, self.first_s)

    def _frame(self, ident: int, deadline: float) -> tuple[int, bytes]:
        head = self._read(HEADER.size, deadline)
        magic, got, status, zero, length = HEADER.unpack(head)
        if magic != MAGIC or got != ident or zero != 0:
            raise Failed(f"a malformed frame header {head.hex()} (request {ident})")
        if length > LIMITS.file_size_mb * 1024 * 1024:  # a one-off run's output cap
            raise Failed(f"a frame of {length} bytes")
        return status, self._read(length, deadline)

    def _read(self, count: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while len(self._buffer) < count:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise Failed("the server timed out")
            chunk = os.read(fd, max(65536, count - len(self._buffer)))
            if not chunk:
                raise Failed("the server died (end of its output)")
            self._buffer += chunk
        out = bytes(self._buffer[:count])
        del self._buffer[:count]
        return out

    def cpu_s(self) -> float:
        """CPU seconds the server used so far (all its threads), from /proc."""
        if self.proc is None:
            return 0.0
        try:
            fields = proc_stat(self.proc.pid)
        except OSError:
            return float("inf")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """Kill the server (if it started) and wait until it is gone."""
        if self.proc is not None:
            sandbox.stop(self.proc)

    def abandon(self) -> None:
        """In a forked child: let go of the parent's pipes without touching its server."""
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        os.close(pipe.fileno())
            self.proc = None


class Pool:
    """The servers of one process, most recently used last; a reaper thread closes idle ones."""

    def __init__(self) -> None:
        self.servers: OrderedDict[tuple[str, ...], Server] = OrderedDict()
        self.lock = threading.Lock()
        self.idle_s = 600.0
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()  # the idle time changed: the reaper's wait with it

    def acquire(self, prefix: tuple[str, ...], exe: Path, settings: Settings
                ) -> tuple[Server | None, list[Server], str]:
        """The server for `prefix`, locked for the caller (a new one not started yet), or None
        and why ("busy", "full", "no_room"); and the servers to close now (outside the lock)."""
        bound = settings.reference_servers
        with self.lock:
            if self.idle_s != settings.reference_server_idle_s:
                self.idle_s = settings.reference_server_idle_s
                self._wake.set()
            server = self.servers.get(prefix)
            if server is not None:
                if not server.lock.acquire(blocking=False):
                    return None, [], "busy"
                self.servers.move_to_end(prefix)
                if server.cpu_s() < CPU_SHARE * LIMITS.cpu_seconds:
                    return server, self._trim(bound), ""
                del self.servers[prefix]  # retired: a new one takes its slot
                server.lock.release()
                count("retired")
                closing = [server]
            else:
                closing = []
            closing += self._trim(bound - 1)
            if len(self.servers) >= bound:
                return None, closing, "full"
            if not room(len(closing)):
                return None, closing, "no_room"
            server = Server(prefix, exe)
            server.lock.acquire()
            self.servers[prefix] = server
            self._ensure_reaper()
            return server, closing, ""

    def _trim(self, bound: int) -> list[Server]:
        """Unlink idle servers beyond `bound`, least recently used first (under the lock)."""
        closing = self._unlink(lambda _key, _server: len(self.servers) > max(bound, 0),
                               stop_when_false=True)
        for _ in closing:
            count("evicted")
        return closing

    def _unlink(self, wanted: Callable[[tuple[str, ...], Server], bool], *,
                stop_when_false: bool = False) -> list[Server]:
        """Unlink the idle servers `wanted` says (oldest first; under the lock), each left
        locked for its closer; `stop_when_false`: the first refusal ends the walk."""
        closing = []
        for key, server in list(self.servers.items()):
            if not wanted(key, server):
                if stop_when_false:
                    break
                continue
            if server.lock.acquire(blocking=False):
                del self.servers[key]
                closing.append(server)
        return closing

    def drop(self, server: Server) -> None:
        """Remove and kill a server that failed (the caller holds its lock)."""
        with self.lock:
            if self.servers.get(server.prefix) is server:
                del self.servers[server.prefix]
        server.close()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="armgym-refsrv-reaper",
                                            daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        """Close servers idle longer than idle_s; end when the pool is empty."""
        while True:
            self._wake.wait(min(max(self.idle_s / 4, 0.02), 30.0))
            self._wake.clear()
            now = time.monotonic()
            with self.lock:
                stale = now - self.idle_s
                closing = self._unlink(lambda _key, server, stale=stale: server.used < stale)
                for _ in closing:
                    count("idle")
                empty = not self.servers
                if empty:
                    self._reaper = None
            for server in closing:
                server.close()
            if empty:
                return

    def close_all(self) -> None:
        """Close every server (waiting for those busy with a request)."""
        with self.lock:
            servers = list(self.servers.values())
            self.servers.clear()
        for server in servers:
            with server.lock:
                server.close()

    def pids(self) -> list[int]:
        """The servers' process ids (for tests and measurements)."""
        with self.lock:
            return [s.proc.pid for s in self.servers.values() if s.proc is not None]


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and
    parentheses): field 0 is the state, 11-12 the CPU times, 17 the thread count; OSError."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def user_tasks(uid: int = SERVER_UID) -> int:
    """Threads of `uid`'s processes on this host (what its RLIMIT_NPROC counts)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            total += int(proc_stat(int(entry.name))[17])
        except (OSError, ValueError, IndexError):
            continue
    return total


def room(closing: int) -> bool:
    """Whether one more server fits the host's budget of the servers' user's tasks (`closing`
    servers are about to end)."""
    used = user_tasks() - SERVER_TASKS * closing
    return used + SERVER_TASKS <= TASK_SHARE * SERVER_LIMITS.processes


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    """This process's pool, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool()
        return _pool


def _after_fork() -> None:
    """A forked child holds copies of the parent's pipes: close them (so the parent's servers
    still see EOF when the parent dies) and start with an empty pool of its own."""
    global _pool, _pool_lock
    _pool_lock = threading.Lock()
    if _pool is not None:
        for server in _pool.servers.values():
            server.abandon()
    _pool = None


os.register_at_fork(after_in_child=_after_fork)


@atexit.register
def close_all() -> None:
    """Close this process's servers (at exit, and for tests)."""
    if _pool is not None:
        _pool.close_all()


def run(argv: Sequence[str], exe: Path, settings: Settings,
        timeout_s: float) -> sandbox.RunResult | None:
    """The one-off command line `argv` (whose program is `exe`) answered by its server, or None
    (the caller then runs it once itself); a server that failed is killed first. Each call
    counts its path (`paths()`)."""
    if settings.reference_servers <= 0:
        count("off")
        return None
    prefix, args = _split(argv, exe)
    if not readable(args):
        count("unreadable")
        return None
    servers = pool()
    server, closing, why = servers.acquire(prefix, exe, settings)
    for old in closing:
        old.close()
    if server is None:
        count(why)
        return None
    try:
        if server.proc is None:
            count("start")
            server.start(settings, timeout_s)
        status, payload, seconds = server.request(args, timeout_s)
        wall = server.wall_s(seconds) if status == 0 else seconds
    except (Failed, InfraError, OSError):
        servers.drop(server)
        count("failed")
        return None
    finally:
        server.lock.release()
    if status != 0:
        count("status")
        return None  # the one-off run says why, with the emulator's stderr
    count("served")
    return sandbox.RunResult(status, payload, b"", False, wall)


def readable(args: Sequence[str]) -> bool:
    """Whether the server can read `args` as its one-off command line: at most five words
    without spaces, on a line of less than its 256 bytes (with the request's id)."""
    return 0 < len(args) <= 5 and sum(len(a) + 1 for a in args) < 256 - 12 and \
        all(a and not any(c.isspace() for c in a) for a in args)


def discard(argv: Sequence[str], exe: Path) -> None:
    """Kill the server of `argv` (one whose answer the caller found wrong), unless it is busy."""
    if _pool is None:
        return
    prefix = _split(argv, exe)[0]
    with _pool.lock:
        closing = _pool._unlink(lambda key, _: key == prefix)
    for server in closing:
        server.close()
        server.lock.release()


def _split(argv: Sequence[str], exe: Path) -> tuple[tuple[str, ...], list[str]]:
    """(the server's command line up to its program, the run's arguments after it)."""
    words = [str(a) for a in argv]
    at = words.index(str(exe)) + 1
    return tuple(words[:at]), words[at:]
