"""Part 1, the bare toolchain floor: the tool invocations the verifier makes for each submission,
replayed back to back with no framework around them.

Recording: fresh worker processes (warm disk caches, empty in-memory ones, as a farm worker
has) verify the mix with `toolchain.sandbox.run` and the `subprocess` of every other toolchain
module patched. Before each launch the recorder snapshots the regular files of the launch's
scratch directory (into a content-addressed blob store on disk) with argv, stdin and keyword
arguments; the launch itself is timed, so the share of a verification spent in tool processes
falls out too. FIFOs (the performance gate's qemu trace) are recreated as plain files.

The C reference's servers (toolchain/execution/reference_server.py) are recorded at their two
points: a server's start (spawn until its ready frame) is a launch, counted as its tool's (qemu)
when it happens, in the verification that needed it; each request it answers is tool time (it
counts in `tool_s` and is replayed timed) but not a launch (`REQUEST`). A replay lane keeps its
own servers: a recorded start is replayed as a timed start of a new server (an older one of the
lane for that executable closed, untimed), a request as a timed request to the lane's server
(started untimed first if the lane has none: its start was timed where it was recorded).
Each recording also keeps how its C reference runs went (reference_server.paths(): a cache
answer, served, or one-off and why, and the servers' starts and closes), summed as
`reference_paths`.

Replay: the snapshot is restored outside the timed region, then only the launch is timed:
(a) sandboxed, through `sandbox.run` with the recorded arguments; (b) bare, the tool's argv
through `subprocess.run`, no bwrap. With 1 lane, and with 2 lanes (2 threads in this process
each taking the next submission when free; the waits release the GIL): throughput is the
submissions over the timed launches of the busiest lane.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from toolchain import sandbox
from toolchain.execution import reference_server
from toolchain.verify import verify

from . import core
from .mix import Submission

TMP = tempfile.gettempdir()
START = "reference_server.start"  # a reference server's spawn: a launch
REQUEST = "reference_server.request"  # a request to one: tool time, not a launch


@dataclass
class Launch:
    """One tool launch as the verifier made it."""

    via: str  # "sandbox.run", "<module>.subprocess.run", START or REQUEST
    argv: list[str]
    scratch: str  # the directory it ran in ("" if none): rewritten on replay
    files: dict[str, tuple[str, int]]  # name -> (blob sha256, mode), regular files in scratch
    fifos: list[str]
    stdin: bytes | None
    kwargs: dict[str, Any]  # sandbox.run's (without settings) or subprocess.run's
    wall_s: float  # during recording
    started: float = 0.0  # perf_counter at launch (the verifier may overlap launches)


@dataclass
class Recording:
    """Every launch of one verification, and what it cost around them."""

    index: int
    outcome: str
    wall_s: float  # the verification, minus the recorder's own snapshot time
    tool_s: float  # time with at least one launch running (overlapping launches count once)
    launches: list[Launch] = field(default_factory=list)
    # how its C reference runs went (reference_server.paths(): cached, served, one-off and why)
    reference_paths: dict[str, int] = field(default_factory=dict)


class Recorder:
    """Patches the launch points of the toolchain while active (one per process)."""

    def __init__(self, blobs: Path) -> None:
        self.blobs = blobs
        self.launches: list[Launch] = []
        self.overhead = 0.0
        self.unrecorded: Counter[str] = Counter()
        self._saved: list[tuple[object, str, object]] = []

    # ---------------------------------------------------------------- snapshots

    def _snapshot(self, scratch: str) -> tuple[dict[str, tuple[str, int]], list[str]]:
        files: dict[str, tuple[str, int]] = {}
        fifos: list[str] = []
        if not scratch:
            return files, fifos
        with os.scandir(scratch) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    try:
                        data = Path(entry.path).read_bytes()
                        mode = entry.stat().st_mode & 0o7777
                    except FileNotFoundError:  # another launch's input, removed meanwhile:
                        continue  # tool runs overlap in one scratch; this launch's own exist
                    sha = hashlib.sha256(data).hexdigest()
                    blob = self.blobs / sha
                    if not blob.exists():
                        blob.write_bytes(data)
                    files[entry.name] = (sha, mode)
                elif not entry.is_dir(follow_symlinks=False):
                    fifos.append(entry.name)
        return files, fifos

    def _record(self, via: str, argv: Sequence[str], scratch: str, stdin: bytes | None,
                kwargs: dict[str, Any]) -> Launch:
        start = time.perf_counter()
        files, fifos = self._snapshot(scratch)
        launch = Launch(via, [str(a) for a in argv], scratch, files, fifos, stdin, kwargs, 0.0)
        self.launches.append(launch)
        self.overhead += time.perf_counter() - start
        return launch

    # ---------------------------------------------------------------- patched entry points

    def sandbox_run(self, argv: Sequence[str], scratch: Path, **kwargs: Any) -> Any:
        kept = {k: v for k, v in kwargs.items() if k not in ("settings", "stdin")}
        launch = self._record("sandbox.run", argv, str(scratch), kwargs.get("stdin"), kept)
        start = launch.started = time.perf_counter()
        try:
            return self._real_run(argv, scratch, **kwargs)
        finally:
            launch.wall_s = time.perf_counter() - start

    def _server_hooks(self) -> tuple[Any, Any]:
        """Server.start and Server.request, recorded (the server's own argv each time)."""
        real_start, real_request = reference_server.Server.start, reference_server.Server.request
        recorder = self

        def start(server: reference_server.Server, settings: Any, timeout_s: float) -> None:
            launch = recorder._record(START, [*server.prefix, reference_server.SERVE], "",
                                      None, {"timeout_s": timeout_s})
            begin = launch.started = time.perf_counter()
            try:
                real_start(server, settings, timeout_s)
            finally:
                launch.wall_s = time.perf_counter() - begin

        def request(server: reference_server.Server, args: Sequence[str],
                    timeout_s: float) -> Any:
            launch = recorder._record(REQUEST, [*server.prefix, *args], "", None,
                                      {"timeout_s": timeout_s})
            begin = launch.started = time.perf_counter()
            try:
                return real_request(server, args, timeout_s)
            finally:
                launch.wall_s = time.perf_counter() - begin

        return start, request

    def _subprocess_proxy(self, module: str) -> object:
        recorder = self

        class Proxy:
            """`subprocess` as `module` sees it: run() recorded, Popen() counted."""

            def __getattr__(self, name: str) -> Any:
                return getattr(subprocess, name)

            @staticmethod
            def run(argv: Sequence[str], **kwargs: Any) -> Any:
                scratch = str(kwargs.get("cwd") or _argv_dir(argv))
                kept = {k: v for k, v in kwargs.items() if k != "input"}
                launch = recorder._record(f"{module}.subprocess.run", argv, scratch,
                                          kwargs.get("input"), kept)
                start = launch.started = time.perf_counter()
                try:
                    return subprocess.run(argv, **kwargs)
                finally:
                    launch.wall_s = time.perf_counter() - start

            @staticmethod
            def Popen(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - subprocess's name
                recorder.unrecorded[f"{module}.subprocess.Popen"] += 1
                return subprocess.Popen(*args, **kwargs)

        return Proxy()

    def __enter__(self) -> Recorder:
        self._real_run = sandbox.run
        self._patch(sandbox, "run", self.sandbox_run)
        start, request = self._server_hooks()
        self._patch(reference_server.Server, "start", start)
        self._patch(reference_server.Server, "request", request)
        for name, module in list(sys.modules.items()):
            if (name.startswith("toolchain.") and name != "toolchain.sandbox"
                    and getattr(module, "subprocess", None) is subprocess):
                self._patch(module, "subprocess", self._subprocess_proxy(name))
        return self

    def _patch(self, owner: object, attr: str, value: object) -> None:
        self._saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def __exit__(self, *exc: object) -> None:
        for owner, attr, value in reversed(self._saved):
            setattr(owner, attr, value)
        self._saved.clear()


def spawned(launches: Sequence[Launch]) -> list[Launch]:
    """The launches that started a process (a served request did not)."""
    return [x for x in launches if x.via != REQUEST]


def counts(recs: Sequence[Recording]) -> dict[str, Any]:
    """Launches in all, by entry point and by tool, and the requests servers answered."""
    made = [x for r in recs for x in spawned(r.launches)]
    return {"launches": len(made), "launches_by": dict(Counter(x.via for x in made)),
            "launches_by_tool": dict(Counter(Path(x.argv[0]).name for x in made)),
            "served_requests": sum(x.via == REQUEST for r in recs for x in r.launches),
            "reference_paths": dict(sum((Counter(r.reference_paths) for r in recs),
                                        Counter()))}


def busy(launches: Sequence[Launch]) -> float:
    """Seconds during which at least one of `launches` ran (the union of their intervals)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((x.started, x.started + x.wall_s) for x in launches):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _argv_dir(argv: Sequence[str]) -> str:
    """The temporary directory an argv works in (a file of it is an argument), else ''."""
    for arg in argv[1:]:
        path = Path(str(arg))
        if path.is_absolute() and str(path).startswith(TMP + "/") and path.parent.is_dir() \
                and str(path.parent) != TMP:
            return str(path.parent)
    return ""


def record_items(items: Sequence[tuple[int, Submission]], blobs: str) -> list[Recording]:
    """Pool task: verify `items` in this (fresh, warmed) process with the recorder on."""
    out = []
    with Recorder(Path(blobs)) as rec:
        for index, item in items:
            rec.launches, rec.overhead = [], 0.0
            before = Counter(reference_server.paths())
            start = time.perf_counter()
            verdict = verify(item.variant_id, item.assembly, item.seed,
                             settings=core.bench_settings())
            wall = time.perf_counter() - start - rec.overhead
            paths = Counter(reference_server.paths())
            paths.subtract(before)
            out.append(Recording(index, core.outcome(verdict), wall, busy(rec.launches),
                                 rec.launches, {k: v for k, v in paths.items() if v}))
    if rec.unrecorded:
        raise RuntimeError(f"tool launches the recorder cannot replay: {dict(rec.unrecorded)}")
    return out


def record(mix: Sequence[Submission], blobs: Path, workers: int = 2) -> list[Recording]:
    """The recording pass in `workers` fresh, warmed processes (one item per task: each has
    its own seed, so nothing one verification caches in memory serves another; the reference
    files of earlier passes are removed first)."""
    core.forget_references()
    with core.Pool(workers, core.warm_item(mix)) as pool:
        done = pool.map(record_items, (([(i, s)], str(blobs)) for i, s in enumerate(mix)),
                        "floor: recording", len(mix))
    return sorted((r for chunk in done for r in chunk), key=lambda r: r.index)


# --------------------------------------------------------------------------- replay


class Replayer:
    """Replays recordings into private scratch directories; times only the launches."""

    def __init__(self, blobs: Path, sandboxed: bool) -> None:
        self.blobs, self.sandboxed = blobs, sandboxed
        self.settings = core.bench_settings()
        # each lane's servers, least recently used first, as many as a worker's pool keeps
        self.servers: OrderedDict[tuple[int, tuple[str, ...]], reference_server.Server] = \
            OrderedDict()
        self.lock = threading.Lock()

    def _server(self, launch: Launch) -> tuple[reference_server.Server, list[str]]:
        """(this lane's server of the launch's executable, the request's arguments)."""
        exe = Path(next(a for a in launch.argv if a.endswith("reference.elf")))
        prefix, args = reference_server._split(launch.argv, exe)
        with self.lock:
            known = self.servers.get((threading.get_ident(), prefix))
        return known or reference_server.Server(prefix, exe), args

    def serve(self, launch: Launch) -> float:
        """Timed: a server's start, or one request to the lane's server."""
        server, args = self._server(launch)
        lane = threading.get_ident()
        key = (lane, server.prefix)
        timeout = float(launch.kwargs["timeout_s"])
        if launch.via == START or server.proc is None:
            if server.proc is not None:
                server.close()
                server = reference_server.Server(server.prefix, server.exe)
            self._trim(lane)
            begin = time.perf_counter()
            server.start(self.settings, timeout)
            with self.lock:
                self.servers[key] = server
            if launch.via == START:
                return time.perf_counter() - begin
        with self.lock:
            self.servers.move_to_end(key)
        begin = time.perf_counter()
        status, _, _ = server.request(args, timeout)
        if status != 0:
            raise RuntimeError(f"a replayed reference request failed: {launch.argv}")
        return time.perf_counter() - begin

    def _trim(self, lane: int) -> None:
        """Untimed: close the lane's least recently used servers beyond the pool's bound, and
        while the host's sandbox-user tasks are past the servers' share (as the pool would not
        start one then, reference_server.room)."""
        with self.lock:
            mine = [k for k in self.servers if k[0] == lane]
            old = mine[:max(0, len(mine) - max(1, self.settings.reference_servers) + 1)]
            closing = [self.servers.pop(k) for k in old]
        for server in closing:
            server.close()
        while not reference_server.room(0):
            with self.lock:
                mine = [k for k in self.servers if k[0] == lane]
                if not mine:
                    return
                server = self.servers.pop(mine[0])
            server.close()

    def close(self) -> None:
        with self.lock:
            servers = list(self.servers.values())
            self.servers.clear()
        for server in servers:
            server.close()

    def restore(self, launch: Launch, dirs: dict[str, Path],
                written: dict[Path, dict[str, str]]) -> tuple[list[str], Path | None]:
        """Untimed: the scratch as the launch saw it; the argv with paths rewritten."""
        if not launch.scratch:
            return launch.argv, None
        if launch.scratch not in dirs:
            dirs[launch.scratch] = Path(tempfile.mkdtemp(prefix="armgym-floor-"))
        where = dirs[launch.scratch]
        have = written.setdefault(where, {})
        for name, (sha, mode) in launch.files.items():
            if have.get(name) != sha:
                target = where / name
                target.unlink(missing_ok=True)
                shutil.copyfile(self.blobs / sha, target)
                os.chmod(target, mode)
                have[name] = sha
        for name in launch.fifos:  # the trace FIFO: qemu writes a plain file instead
            target = where / name
            target.unlink(missing_ok=True)
            target.touch()
            os.chmod(target, 0o666)
            have.pop(name, None)
        argv = [a.replace(launch.scratch, str(where)) for a in launch.argv]
        return argv, where

    def launch(self, launch: Launch, argv: list[str], where: Path | None) -> float:
        """Timed: the launch alone."""
        if launch.via in (START, REQUEST):
            return self.serve(launch)
        kwargs = launch.kwargs
        start = time.perf_counter()
        if self.sandboxed and launch.via == "sandbox.run":
            assert where is not None
            sandbox.run(argv, where, stdin=launch.stdin, settings=self.settings, **kwargs)
        elif self.sandboxed:  # the verifier's own unconfined subprocess.run, as it made it
            kw = {k: v for k, v in kwargs.items() if k != "cwd"}
            subprocess.run(argv, cwd=where if "cwd" in kwargs else None, input=launch.stdin,
                           **kw)
        else:
            timeout = float(kwargs.get("timeout_s") or kwargs.get("timeout") or 60)
            # Output to unnamed files and a pidfd wait, as the sandbox does: pipes drained by
            # Python threads make two lanes wait on each other for the GIL, and
            # subprocess.run(timeout=)'s polling sleeps add up to 50 ms to every launch.
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(argv, cwd=where, stdout=out, stderr=err,
                                        stdin=subprocess.PIPE if launch.stdin is not None
                                        else subprocess.DEVNULL)
                if launch.stdin is not None:
                    assert proc.stdin is not None
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.write(launch.stdin)
                    proc.stdin.close()
                if sandbox.wait_exit(proc, timeout):
                    proc.kill()
                proc.wait()
        return time.perf_counter() - start

    def replay(self, rec: Recording) -> float:
        """Every launch of one verification in order; the sum of their timed walls."""
        dirs: dict[str, Path] = {}
        written: dict[Path, dict[str, str]] = {}
        total = 0.0
        try:
            for launch in rec.launches:
                argv, where = self.restore(launch, dirs, written)
                total += self.launch(launch, argv, where)
        finally:
            for path in dirs.values():
                shutil.rmtree(path, ignore_errors=True)
        return total


def replay_lanes(recs: Sequence[Recording], blobs: Path, sandboxed: bool, count: int,
                 desc: str) -> dict[str, Any]:
    """Replay in `count` threads, each taking the next submission when it is free (as a pool
    would); per-submission floor times and the throughput."""
    replayer = Replayer(blobs, sandboxed)
    times: dict[int, float] = {}
    sums = [0.0] * count
    todo = iter(range(len(recs)))
    bar = tqdm(total=len(recs), desc=desc, unit="verif", leave=False)
    lock = threading.Lock()

    def lane(number: int) -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            spent = replayer.replay(recs[i])
            with lock:
                times[recs[i].index] = spent
                sums[number] += spent
                bar.update()

    start = time.perf_counter()
    threads = [threading.Thread(target=lane, args=(k,)) for k in range(count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        replayer.close()
    wall = time.perf_counter() - start
    bar.close()
    return {"lanes": count, "sandboxed": sandboxed, "n": len(recs),
            "timed_s": max(sums), "wall_s": wall, "per_s": len(recs) / max(sums),
            "times": [times[r.index] for r in recs]}


def replay_one(rec: Recording, blobs: Path, repeats: int = 3) -> float:
    """Median sandboxed floor of one submission (for the /step comparison)."""
    replayer = Replayer(blobs, sandboxed=True)
    try:
        return sorted(replayer.replay(rec) for _ in range(repeats))[repeats // 2]
    finally:
        replayer.close()


def run(mix: Sequence[Submission], blobs: Path, farm_lanes: int = 2
        ) -> tuple[dict[str, Any], list[Recording]]:
    """Record the mix, then replay it sandboxed and bare with 1 and 2 lanes, and with as many
    lanes as the farm has pool processes (`farm_lanes`): the farm is judged against the floor
    of its own parallelism (on 2 cores a third lane raised the floor as a third pool process
    raised the farm)."""
    recs = record(mix, blobs)
    result: dict[str, Any] = {
        **counts(recs),
        "outcomes": [r.outcome for r in recs],
        "recorded_wall_s": sum(r.wall_s for r in recs),
        "recorded_tool_s": sum(r.tool_s for r in recs),
    }
    for count in sorted({1, 2, farm_lanes}):
        for sandboxed in (True, False):
            name = f"{'sandboxed' if sandboxed else 'bare'}_{count}"
            result[name] = replay_lanes(recs, blobs, sandboxed, count, f"floor: {name}")
    return result, recs
