"""The C reference served by a long-lived emulator per variant (toolchain/execution/
reference_server.py, reference_server.c): what it answers is what a one-off run writes, request
after request; a server that dies, hangs or garbles is killed and the run made once instead;
the pool's bound and idle time leave no process behind; and the candidate's harness is the
runtime alone, byte for byte."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import baseline

from bench import floor
from bench.floor import Recorder
from bench.mix import Submission
from toolchain import kernels, sandbox, tools
from toolchain.execution import harness, place, reference_server, runs
from toolchain.execution.records import _REG_BYTES, ABS_MAGIC, TEST_MAGIC
from toolchain.kernels.model import Variant
from toolchain.settings import Settings, get_settings

# Different templates and dtypes: abs runs (dot float32, prefix_sum float64), integers,
# selections with position tests, float16, quantize's outcome tests.
VARIANTS = ("dot_n64_float32", "argmax_n16_int8", "prefix_sum_n16_float64", "relu_n64_float16",
            "quantize_n16_float32")
SEEDS = (0x1234, 0xFEEDFACE12345, 7)


def on(**changes: object) -> Settings:
    return get_settings().replace(**{"reference_servers": 4, **changes})


def off() -> Settings:
    return get_settings().replace(reference_servers=0)


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    reference_server.close_all()
    yield
    reference_server.close_all()


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def sp_ranges(variant: Variant, stream: bytes, with_abs: bool) -> list[range]:
    """Where the sp_before/sp_after fields of each test record are in `stream` (they differ
    between the two executables: different stack depths)."""
    pointers = [a for a in variant.signature.args if a.pointer]
    scalars = len(variant.signature.args) - len(pointers)
    body = 8 + 8 + 16 + 8 * scalars + sum(a.length * a.dtype.size + 2 * harness.GUARD
                                          for a in pointers)
    size = body + _REG_BYTES
    if with_abs:
        size += 8 + 8 + 16 + sum(a.length * a.dtype.size for a in pointers if a.role != "in")
    out = []
    for at in range(0, len(stream), size):
        assert int.from_bytes(stream[at:at + 4], "little") == TEST_MAGIC
        if with_abs:
            assert int.from_bytes(stream[at + body + _REG_BYTES:][:4], "little") == ABS_MAGIC
        out.append(range(at + body + 304, at + body + 320))
    return out


def assert_same_but_sp(variant: Variant, one: runs.Reference, other: runs.Reference) -> None:
    assert one.inputs == other.inputs
    assert len(one.stream) == len(other.stream) and one.stream
    with_abs = runs.needs_abs_run(variant)
    allowed = {i for r in sp_ranges(variant, one.stream, with_abs) for i in r}
    differ = {i for i, (a, b) in enumerate(zip(one.stream, other.stream, strict=True)) if a != b}
    assert differ <= allowed
    # every record parses the same, sp aside
    for a, b in zip(one.records, other.records, strict=True):
        assert {**vars(a), "sp_before": 0, "sp_after": 0} == \
            {**vars(b), "sp_before": 0, "sp_after": 0}
        assert a.sp_before == a.sp_after and b.sp_before == b.sp_after


def reference_of(variant_id: str, seed: int, settings: Settings, wanted: int = 12
                 ) -> runs.Reference:
    """A run of the C (never the reference cache), served or one-off as `settings` say."""
    variant = kernels.get(variant_id)
    tests = harness.test_count(variant, settings)
    return runs._run_reference(variant, harness.build(variant, settings), seed, tests, settings,
                               wanted, None)


def argv_of(variant_id: str, seed: int, wanted: int = 12) -> tuple[list[str], Path]:
    variant = kernels.get(variant_id)
    settings = get_settings()
    built = harness.build(variant, settings)
    return runs.qemu_argv(str(built.reference), seed, harness.test_count(variant, settings),
                          runs.needs_abs_run(variant), mode=f"D{wanted}"), built.reference


@pytest.mark.parametrize("variant_id", VARIANTS)
def test_a_served_run_is_the_one_off_run_byte_for_byte_but_sp(variant_id: str) -> None:
    variant = kernels.get(variant_id)
    settings = on()
    wanted = runs.timing_test(SEEDS[1], harness.test_count(variant, settings))
    served = reference_of(variant_id, SEEDS[1], settings, wanted)
    assert len(reference_server.pool().pids()) == 1
    alone = reference_of(variant_id, SEEDS[1], off(), wanted)
    assert_same_but_sp(variant, served, alone)
    assert len(served.records) == harness.test_count(variant, settings)
    # a running server leaves nothing on disk (its working directory went once it was in it)
    assert not [e for e in os.listdir(tempfile.gettempdir())
                if e.startswith(f"armgym-{os.getpid()}-refsrv-")]
    assert wanted in served.inputs and len(served.inputs[wanted]) > 0
    # the served wall time includes the server's start-up, as a one-off run's does its own
    assert served.wall_s > 0


def test_one_server_answers_request_after_request_as_separate_runs_do() -> None:
    """Different seeds, an abs-run variant, a different timing test each time: no state of one
    request (the inputs' mode, the arena, stdout's buffer) shows in the next."""
    variant_id = "dot_n64_float32"
    variant = kernels.get(variant_id)
    settings = on()
    served = []
    for seed, wanted in ((SEEDS[0], 12), (SEEDS[1], 15), (SEEDS[0], 12), (SEEDS[2], 3)):
        served.append(reference_of(variant_id, seed, settings, wanted))
        if len(served) == 1:
            pid = reference_server.pool().pids()
        assert reference_server.pool().pids() == pid  # the same process answered each
    assert served[0].stream == served[2].stream and served[0].inputs == served[2].inputs
    # each reports at least the server's start and its first request (which translated the
    # code): what a one-off run, which does both, takes
    [server] = reference_server.pool().servers.values()
    assert server.first_s is not None and server.startup_s > 0
    assert all(r.wall_s >= server.startup_s + server.first_s for r in served)
    for (seed, wanted), got in zip(((SEEDS[0], 12), (SEEDS[1], 15), (SEEDS[2], 3)),
                                   (served[0], served[1], served[3]), strict=True):
        assert_same_but_sp(variant, got, reference_of(variant_id, seed, off(), wanted))
    assert served[0].stream != served[1].stream


def test_a_request_the_runtime_refuses_gets_its_status_and_the_server_stays() -> None:
    argv, exe = argv_of("relu_n64_float32", 5)
    settings = on()
    assert reference_server.run(argv, exe, settings, 60) is not None
    pid = reference_server.pool().pids()
    bad = [*argv[:-3], "99", argv[-2], "X"]  # first > tests, an unknown mode: status 2
    assert reference_server.run(bad, exe, settings, 60) is None
    assert reference_server.pool().pids() == pid
    assert reference_server.run([*argv[:-1], "D1 2"], exe, settings, 60) is None  # 2 words
    assert reference_server.pool().pids() == pid
    assert reference_server.run(argv, exe, settings, 60) is not None


def test_a_killed_server_falls_back_to_a_one_off_run_and_is_replaced() -> None:
    variant_id = "prefix_sum_n16_float64"
    variant = kernels.get(variant_id)
    settings = on()
    first = reference_of(variant_id, SEEDS[0], settings)
    [pid] = reference_server.pool().pids()
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    with Recorder(Path(tempfile.mkdtemp(prefix="armgym-test-blobs-"))) as rec:
        again = reference_of(variant_id, SEEDS[0], settings)
    assert_same_but_sp(variant, again, first)
    # the request that found the server dead, then the one-off run, once
    assert [x.via for x in rec.launches if any(a.endswith("reference.elf") for a in x.argv)] \
        == ["reference_server.request", "sandbox.run"]
    assert reference_server.pool().pids() == []  # the dead one was removed
    third = reference_of(variant_id, SEEDS[0], settings)
    [new] = reference_server.pool().pids()
    assert new != pid and third.stream == first.stream
    assert_same_but_sp(variant, third, reference_of(variant_id, SEEDS[0], off()))


def test_a_hung_server_is_killed_at_the_timeout() -> None:
    argv, exe = argv_of("relu_n64_float32", 9)
    settings = on()
    assert reference_server.run(argv, exe, settings, 60) is not None
    [pid] = reference_server.pool().pids()
    os.kill(pid, signal.SIGSTOP)  # answers nothing from now on
    began = time.monotonic()
    assert reference_server.run(argv, exe, settings, 1.0) is None
    assert 1.0 <= time.monotonic() - began < 10
    assert wait_gone(pid) and reference_server.pool().pids() == []


def test_a_desynchronised_server_is_killed() -> None:
    """A frame for another request (the stream out of step) is never taken as the answer."""
    argv, exe = argv_of("relu_n64_float32", 9)
    settings = on()
    assert reference_server.run(argv, exe, settings, 60) is not None
    server = next(iter(reference_server.pool().servers.values()))
    assert server.proc is not None and server.proc.stdin is not None
    os.write(server.proc.stdin.fileno(), b"999 " + " ".join(argv[4:]).encode() + b"\n")
    pid = server.proc.pid
    assert reference_server.run(argv, exe, settings, 60) is None
    assert wait_gone(pid) and reference_server.pool().pids() == []


def printf(data: bytes) -> str:
    """A shell command writing `data`, every byte in octal."""
    return "printf '" + "".join(f"\\{b:03o}" for b in data) + "'"


def header(magic: int, ident: int, length: int) -> bytes:
    return reference_server.HEADER.pack(magic, ident, 0, 0, length)


FAKE_READY = printf(header(reference_server.MAGIC, 0, 0))


@pytest.fixture
def fake_dir() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="armgym-test-fake-"))
    where.chmod(0o755)  # the server runs as nobody
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.mark.parametrize("answer", [
    printf(header(0x58585858, 1, 8)),  # a header that is not one
    printf(header(reference_server.MAGIC, 2, 8)),  # the answer to another request
    # a frame cut short: 1000 bytes announced, 3 sent, then the process ends
    printf(header(reference_server.MAGIC, 1, 1000) + b"abc") + "; exit 0",
    printf(header(reference_server.MAGIC, 1, 1 << 40)),  # more than a one-off run may write
    printf(b"ARSV\1"),  # a short header, then silence: the timeout ends it
])
def test_a_garbled_or_short_frame_kills_the_server(fake_dir: Path, answer: str) -> None:
    script = fake_dir / "server.sh"
    script.write_text(f"{FAKE_READY}\nread line\n{answer}\nsleep 60\n")
    script.chmod(0o755)
    argv = ["/bin/sh", str(script), "0000000000000001", "31", "0"]
    assert reference_server.run(argv, script, on(), 2.0) is None
    assert reference_server.pool().pids() == []
    assert not [p for p in _processes_running(str(script))]


def _processes_running(needle: str) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmd and not gone(int(entry.name)):
                out.append(int(entry.name))
    return out


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def test_the_pool_is_bounded_and_idle_servers_close() -> None:
    settings = on(reference_servers=2, reference_server_idle_s=1.0)
    pids: list[int] = []
    for variant_id in VARIANTS[:3]:
        argv, exe = argv_of(variant_id, 3)
        assert reference_server.run(argv, exe, settings, 60) is not None
        pids = sorted(set(pids) | set(reference_server.pool().pids()))
    assert len(pids) == 3 and len(reference_server.pool().pids()) == 2
    first = [p for p in pids if p not in reference_server.pool().pids()]
    assert len(first) == 1 and wait_gone(first[0])  # the least recently used went
    survivors = reference_server.pool().pids()
    assert all(wait_gone(p) for p in survivors)  # idle for a second: closed
    assert reference_server.pool().pids() == []
    assert not [p for p in _processes_running(" serve") if _parent(p) == os.getpid()]


def test_zero_servers_runs_each_reference_in_its_own_process() -> None:
    with Recorder(Path(tempfile.mkdtemp(prefix="armgym-test-blobs-"))) as rec:
        reference_of("relu_n64_float32", 4, off())
        reference_of("relu_n64_float32", 5, off())
    refs = [x for x in rec.launches if any(a.endswith("reference.elf") for a in x.argv)]
    assert [x.via for x in refs] == ["sandbox.run"] * 2
    assert reference_server.pool().pids() == []


def test_the_floor_counts_a_spawn_as_a_launch_and_requests_as_tool_time() -> None:
    with Recorder(Path(tempfile.mkdtemp(prefix="armgym-test-blobs-"))) as rec:
        reference_of("relu_n64_float32", 4, on())
        reference_of("relu_n64_float32", 5, on())
    refs = [x for x in rec.launches if any(a.endswith("reference.elf") for a in x.argv)]
    assert [x.via for x in refs] == ["reference_server.start", "reference_server.request",
                                     "reference_server.request"]
    assert refs[0].argv[-1] == "serve" and all(x.wall_s > 0 for x in refs)


CHILD = """
import os, sys, time
from toolchain import kernels
from toolchain.execution import harness, place, reference_server, runs
from toolchain.settings import get_settings
settings = get_settings().replace(reference_servers=2)
variant = kernels.get("relu_n64_float32")
built = harness.build(variant, settings)
argv = runs.qemu_argv(str(built.reference), 1, 31, False, mode="D12")
assert reference_server.run(argv, built.reference, settings, 60) is not None
if os.fork() == 0:  # a child that lives on, holding whatever it inherited
    time.sleep(60)
    os._exit(0)
print(reference_server.pool().pids()[0], flush=True)
time.sleep(60)
"""


def test_a_server_ends_with_its_worker_even_when_the_worker_forked() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                            start_new_session=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert not gone(pid)
        proc.send_signal(signal.SIGKILL)  # the worker dies; its forked child does not
        proc.wait()
        assert wait_gone(pid)  # EOF on the server's stdin: the child did not keep it open
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_the_candidates_harness_is_the_runtime_alone(fake_dir: Path) -> None:
    """harness.o and slotted.elf built from harness_runtime.c as before the serve mode existed
    (no reference_server.c in the build) are the very bytes the cache's harness holds."""
    variant = kernels.get("argmax_n16_int8")
    built = harness.build(variant, get_settings())
    gcc = tools.tool("gcc").path
    (fake_dir / "harness_variant.h").write_text(harness.variant_header(variant))
    subprocess.run([gcc, *harness.HARNESS_CFLAGS, "-I", str(fake_dir), "-c",
                    str(harness.RUNTIME_C), "-o", str(fake_dir / "runtime.o")], check=True)
    subprocess.run(tools.prelink_argv([str(fake_dir / "runtime.o")], str(fake_dir / "h.o"),
                                      list(variant.math_functions)), check=True)
    assert (fake_dir / "h.o").read_bytes() == built.object.read_bytes()
    (fake_dir / "slot.s").write_text(place.SLOT_SOURCE)
    subprocess.run([tools.tool("as").path, "-o", str(fake_dir / "slot.o"),
                    str(fake_dir / "slot.s")], check=True)
    subprocess.run(tools.link_argv([str(fake_dir / "h.o"), str(fake_dir / "slot.o")],
                                   str(fake_dir / "slotted.elf"), runtime=False,
                                   keep_relocs=True), check=True)
    assert (fake_dir / "slotted.elf").read_bytes() == built.slotted.read_bytes()
    assert b"armgym_run" not in built.object.read_bytes()
    assert b"open_memstream" not in built.slotted.read_bytes()
    assert b"armgym_run" in built.reference.read_bytes()


def test_no_server_starts_past_the_servers_users_task_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers' tasks count against their user's RLIMIT_NPROC host-wide: past their share, the
    run is made once (counted as "no_room") and no server is left holding tasks."""
    argv, exe = argv_of("relu_n64_float32", 3)
    assert reference_server.run(argv, exe, on(), 60) is not None
    [pid] = reference_server.pool().pids()
    assert reference_server.user_tasks() >= reference_server.SERVER_TASKS
    monkeypatch.setattr(reference_server, "TASK_SHARE", 0.0)
    other, other_exe = argv_of("dot_n64_float32", 3)
    before = reference_server.paths().get("no_room", 0)
    assert reference_server.run(other, other_exe, on(), 60) is None
    assert reference_server.paths().get("no_room", 0) == before + 1
    assert reference_server.pool().pids() == [pid]  # the running one still serves
    assert reference_server.run(argv, exe, on(), 60) is not None


def test_a_workers_full_pools_fit_the_servers_task_budget() -> None:
    """A worker runs one pool process more than its CPUs (3 on the manifests' 2): every one of
    them may keep its full pool of servers, each started under the servers' own process limit,
    which is what `room` budgets (with nobody's 256, one pool of three got 10 servers)."""
    budget = reference_server.TASK_SHARE * reference_server.SERVER_LIMITS.processes
    assert 3 * Settings().reference_servers * reference_server.SERVER_TASKS <= budget
    argv, exe = argv_of("relu_n64_float32", 3)
    assert reference_server.run(argv, exe, on(), 60) is not None
    [pid] = reference_server.pool().pids()
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    row = next(x for x in limits if x.startswith("Max processes"))
    assert row.split()[2:4] == [str(reference_server.SERVER_LIMITS.processes)] * 2


def real_uid(pid: int) -> int:
    """The real uid of a process (the one RLIMIT_NPROC charges its tasks to)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith("Uid:"))
    return int(line.split()[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="the servers' own user needs root to switch to")
def test_servers_run_as_their_own_user_and_leave_the_sandbox_users_limit_alone() -> None:
    """RLIMIT_NPROC counts a user's tasks host-wide: a server's threads are charged to its own
    unprivileged user, never to nobody (every sandboxed step's headroom), and the budget that
    `room` checks counts them."""
    for variant_id in VARIANTS[:2]:
        argv, exe = argv_of(variant_id, 3)
        assert reference_server.run(argv, exe, on(), 60) is not None
    pids = reference_server.pool().pids()
    assert len(pids) == 2
    assert {real_uid(pid) for pid in pids} == {reference_server.SERVER_UID}
    assert reference_server.SERVER_UID not in (0, sandbox.NOBODY)
    assert reference_server.user_tasks() >= 2 * reference_server.SERVER_TASKS


def test_each_reference_run_counts_its_path() -> None:
    """The counters the floor bench reports: a cache answer, a served run, and a one-off run
    with its reason, one count per run."""
    variant = kernels.get("relu_n64_float32")
    before = reference_server.paths()

    def grew() -> dict[str, int]:
        now = reference_server.paths()
        return {k: now[k] - before.get(k, 0) for k in now if now[k] != before.get(k, 0)}

    seed = int.from_bytes(os.urandom(6), "little")  # a reference no earlier run cached
    runs.reference(variant, seed, on())
    assert grew() == {"start": 1, "served": 1}
    runs.reference(variant, seed, on())
    assert grew() == {"start": 1, "served": 1, "cached": 1}
    reference_of("relu_n64_float32", seed, off())
    assert grew() == {"start": 1, "served": 1, "cached": 1, "off": 1}
    argv, exe = argv_of("relu_n64_float32", seed)
    assert reference_server.run([*argv, "x y"], exe, on(), 60) is None
    assert grew() == {"start": 1, "served": 1, "cached": 1, "off": 1, "unreadable": 1}
    reference_of("dot_n64_float32", seed, on(reference_servers=1))  # relu's server must go
    assert grew() == {"start": 2, "served": 2, "cached": 1, "off": 1, "unreadable": 1,
                      "evicted": 1}


def test_the_floor_reports_the_reference_paths_per_verification(tmp_path: Path) -> None:
    seeds = [int.from_bytes(os.urandom(6), "little") for _ in range(2)]
    text = baseline("relu_n64_float32")
    items = [(i, Submission("relu_n64_float32", text, seed, "clang", "compiler"))
             for i, seed in enumerate(seeds)]
    recs = floor.record_items(items, str(tmp_path))
    assert [r.reference_paths for r in recs] == [{"start": 1, "served": 1, "cached": 1},
                                                 {"served": 1, "cached": 1}]
    assert floor.counts(recs)["reference_paths"] == {"start": 1, "served": 2, "cached": 2}
