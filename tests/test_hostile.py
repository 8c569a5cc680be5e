"""The hostile corpus (brief §6): every attack gets reward 0, its own error kind, and no trace.

Each case is one file under tests/hostile/, `NN_name.s`: a header of `// key: value` lines
(`case` a title, `category` one of CATEGORIES, `expect` the error kind, optional `variant`
(default relu_n16_float32), `repeat` (the body is repeated that many times), `note`), then the
submission itself, byte for byte (NUL bytes and invalid UTF-8 included). Placeholders in the body:

* `@CANARY@`, `@CANARY_DIR@`: absolute paths of a canary file and its world-writable directory,
  which the test creates (so only the sandbox stands between a submission and them);
  `@CANARY_REL@`: the canary by a relative path that climbs out of the scratch directory;
* `@TOKEN@`: a unique name for files an attack tries to create anywhere;
* `@PORT@`: a TCP port the test listens on at the host's 127.0.0.1;
* a line `@ADDR xN symbol[+offset]@`: movz/movk loading the absolute address of `symbol` in the
  linked candidate.elf into xN, as an attacker could compute it: the static link is
  deterministic, so the test links the case once with zero addresses (same size, same layout),
  reads the symbol table (global symbols, else local functions such as the harness's own),
  and links again to check the addresses did not move. That reaches libc's open/write/exit,
  harness functions and the svc inside `__mprotect` (x8 then picks any system call) with no
  svc in the object at all.

Every case then asserts: not passed and reward 0, the expected error kind, the canary and its
directory untouched, no new file owned by the sandbox user in /tmp, /var/tmp (top level), the
cache dir (two levels) or the repository, no file named with the token, no process left behind
(this test process is a child subreaper, so nothing can escape out of sight), the host listener
never reached, a host process of the sandbox user still alive (kill(-1) must not reach it),
nothing of the canary's or /etc/passwd's content in the verdict JSON, and (fixture
still_serving) the next honest submission verifies.

The execution guard stops every system call a kernel makes before the host sees it, so the
host-syscall cases also run without it (the linked executable under the sandbox alone, as the
gate would run it but without the plugin): the sandbox must contain them by itself, and in the
weaker mode they do what they say. The foreign-code cases, run that way, pass every test: what
refuses them is the guard.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_state import (
    live_descendants,
    owned_files,
    reap_zombies,
    sandbox_uid,
    set_subreaper,
)

from toolchain import execution, kernels, sandbox, tools
from toolchain.errors import ErrorKind
from toolchain.execution import reference_server
from toolchain.execution.records import parse
from toolchain.gates import syntax
from toolchain.gates.correctness.compare import Finding, judge
from toolchain.sandbox import NOBODY
from toolchain.settings import Settings, get_settings
from toolchain.verdict import Verdict
from toolchain.verify import verify

CORPUS_DIR = Path(__file__).with_name("hostile")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_VARIANT = "relu_n16_float32"
SEED = 11
CATEGORIES = {
    "syscall-stub": "svc/hvc/smc/hlt/brk in any spelling, or a stub in data",
    "file-read-directive": ".incbin/.include, also built by macros, .irp or \\()",
    "bomb": ".space/.fill/.rept/macro expansion bombs",
    "infinite-loop": "runaway execution",
    "host-syscall": "files, processes, signals and sockets through libc code, no svc",
    "harness-jump": "returning or branching into the harness or libc's exit",
    "foreign-code": "libc or harness code run during a fixed test, the outputs right",
    "out-of-bounds": "stores outside the output buffers",
    "clobbered-register": "callee-saved state not restored",
    "self-modifying": "writing code at run time",
    "unavailable-instruction": "instructions Neoverse V2 lacks or that are not reproducible",
    "huge-or-malformed": "size and line caps, NUL, invalid UTF-8, empty, unknown variant",
}
# Host content that must never come back in a verdict (besides the canary's secret).
HOST_SECRETS = ("root:x:0:0",)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    title: str
    category: str
    expect: ErrorKind
    variant: str
    body: bytes


_HEADER = re.compile(rb"//\s*([a-z-]+):\s?(.*)")


def load_case(path: Path) -> Case:
    raw = path.read_bytes()
    fields: dict[str, str] = {}
    pos = 0
    while (m := _HEADER.match(raw, pos)) and (end := raw.find(b"\n", pos)) >= 0:
        fields[m.group(1).decode()] = m.group(2).decode().strip()
        pos = end + 1
    body = raw[pos:] * int(fields.get("repeat", "1"))
    return Case(path.stem, fields["case"], fields["category"], ErrorKind(fields["expect"]),
                fields.get("variant", DEFAULT_VARIANT), body)


CASES = [load_case(p) for p in sorted(CORPUS_DIR.glob("*.s"))]


def test_corpus_covers_every_category() -> None:
    assert len(CASES) >= 30
    assert {c.category for c in CASES} == set(CATEGORIES)
    assert len({c.name[:2] for c in CASES}) == len(CASES), "case numbers must be unique"


# --------------------------------------------------------------------------- the host


@dataclasses.dataclass
class Host:
    """What an attack could touch, set up once per test process."""

    canary: Path
    secret: bytes
    token: str
    listener: socket.socket
    sleeper: subprocess.Popen[bytes]
    settings: Settings

    def placeholders(self) -> dict[bytes, bytes]:
        return {
            b"@CANARY@": str(self.canary).encode(),
            b"@CANARY_DIR@": str(self.canary.parent).encode(),
            b"@CANARY_REL@": b"../../../../.." + str(self.canary).encode(),
            b"@TOKEN@": self.token.encode(),
            b"@PORT@": str(self.listener.getsockname()[1]).encode(),
        }

    def roots(self) -> list[tuple[Path, int | None]]:
        return [(Path("/tmp"), 0), (Path("/var/tmp"), 0), (self.settings.cache_dir, 1),
                (REPO, None)]

    def snapshot(self) -> dict[str, object]:
        st = self.canary.stat()
        return {
            "canary": (self.canary.read_bytes(), st.st_mtime_ns, st.st_mode, st.st_uid),
            "canary_dir": sorted(os.listdir(self.canary.parent)),
            "owned": owned_files(self.roots(), skip=[REPO / ".venv", REPO / ".git"]),
            # Other tests in this worker may keep helper processes (servers) alive across tests.
            "processes": others(),
        }


def others() -> set[int]:
    """Live descendants of the test process, but the C reference's servers (the verifier's own
    processes, which a verification may start and keep: exactly the pool's pids)."""
    return {p.pid for p in live_descendants()} - set(reference_server.pool().pids())


def _as_nobody() -> None:
    if os.geteuid() == 0:
        os.setgid(NOBODY)
        os.setuid(NOBODY)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    set_subreaper(True)
    canary_dir = Path(tempfile.mkdtemp(prefix="armgym-canary-"))
    os.chmod(canary_dir, 0o777)  # world-writable: only the sandbox protects it
    canary = canary_dir / "canary"
    secret = f"CANARY-{secrets.token_hex(16)}".encode()
    canary.write_bytes(secret + b"\n")
    os.chmod(canary, 0o666)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    sleeper = subprocess.Popen(["sleep", "3600"], preexec_fn=_as_nobody)
    # Shorter budgets than production, so the runaway cases cost about a second each.
    settings = get_settings().replace(run_timeout_base_s=1.0,
                                   run_timeout_factor=5.0, assemble_timeout_s=2.0)
    try:
        yield Host(canary, secret, f"armgym-pwned-{secrets.token_hex(6)}", listener, sleeper,
                   settings)
    finally:
        set_subreaper(False)
        sleeper.kill()
        sleeper.wait()
        reap_zombies()
        listener.close()
        shutil.rmtree(canary_dir, ignore_errors=True)


# --------------------------------------------------------------------------- expansion


_ADDR = re.compile(rb"^@ADDR (x\d+) ([\w.$]+)(?:\+(\d+))?@$", re.M)


def movz_sequence(reg: str, value: int) -> str:
    """Always four instructions, so the layout does not depend on the value."""
    return "\n".join([f"    movz {reg}, #{value & 0xFFFF:#x}"] + [
        f"    movk {reg}, #{(value >> s) & 0xFFFF:#x}, lsl #{s}" for s in (16, 32, 48)])


def link_symbols(variant_id: str, text: str, settings: Settings) -> dict[str, int]:
    """Symbol table of `text` linked with the variant's harness, exactly as the gate links it."""
    scratch = Path(tempfile.mkdtemp(prefix="armgym-probe-"))
    try:
        result, obj = syntax.assemble(text, scratch, settings)
        assert obj is not None, result.message
        assert execution.link(kernels.get(variant_id), obj, scratch, settings) is None
        out = subprocess.run([tools.tool("readelf").path, "-Ws", str(scratch / "candidate.elf")],
                             capture_output=True, text=True, check=True).stdout
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    symbols: dict[str, int] = {}
    local: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 8 and parts[0].endswith(":") and parts[4] in ("GLOBAL", "WEAK"):
            symbols.setdefault(parts[7], int(parts[1], 16))
        elif len(parts) == 8 and parts[0].endswith(":") and parts[3] == "FUNC":
            local.setdefault(parts[7], int(parts[1], 16))
    return {**local, **symbols}


def expand(case: Case, host: Host) -> bytes:
    body = case.body
    for key, value in host.placeholders().items():
        body = body.replace(key, value)
    if not _ADDR.search(body):
        return body

    def fill(symbols: dict[str, int]) -> str:
        return _ADDR.sub(lambda m: movz_sequence(
            m.group(1).decode(), symbols.get(m.group(2).decode(), 0) + int(m.group(3) or 0)
        ).encode(), body).decode()

    probe = link_symbols(case.variant, fill({}), host.settings)
    final = fill(probe)
    wanted = {m.group(2).decode() for m in _ADDR.finditer(body)}
    again = link_symbols(case.variant, final, host.settings)
    assert {s: again[s] for s in wanted} == {s: probe[s] for s in wanted}, "layout moved"
    return final.encode()


# --------------------------------------------------------------------------- checks


def assert_no_reward(verdict: Verdict) -> None:
    """Reward 0 under the binary profile, no correctness and no speedup credit.

    (The original's additive profile still grants its format and syntax points to text that
    assembles; it never grants correctness or speedup to anything here.)
    """
    assert not verdict.passed
    summary = verdict.to_json()["reward"]
    assert summary is not None, "a hostile case must be judged, not dropped as infra_error"
    assert summary["profiles"]["binary_plus_speedup"] == 0.0
    assert summary["components"]["correctness"] == 0.0
    assert summary["components"]["speedup"] is None


def assert_no_trace(host: Host, before: dict[str, object], said: str) -> None:
    """Nothing left on the host; `said` (the verdict or the run's output) echoes no secret."""
    after = host.snapshot()
    assert after["canary"] == before["canary"], "canary changed"
    assert after["canary_dir"] == before["canary_dir"], "file created next to the canary"
    assert after["owned"] - before["owned"] == set(), "file left behind"  # type: ignore[operator]
    for root, _ in host.roots():
        assert not list(root.glob(f"*{host.token}*")), f"attack file in {root}"
    assert host.sleeper.poll() is None, "a host process of the sandbox user was killed"
    assert after["processes"] <= before["processes"], "process left behind"  # type: ignore[operator]
    with pytest.raises(BlockingIOError):
        host.listener.accept()
    for secret in (host.secret.decode(), *HOST_SECRETS):
        assert secret not in said, "host content in the verdict"


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(case: Case, host: Host) -> None:
    submission = expand(case, host)
    before = host.snapshot()
    verdict = verify(case.variant, submission, SEED, settings=host.settings)
    assert verdict.error_kind is case.expect, f"{case.title}: {verdict.message}"
    assert verdict.message
    assert_no_reward(verdict)
    assert_no_trace(host, before, json.dumps(verdict.to_json()))


def case_named(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def run_unguarded(case: Case, host: Host, timeout_s: float = 3.0
                  ) -> tuple[sandbox.RunResult, Finding | None]:
    """The case linked as the gate links it and run as the gate runs it, but without the
    execution guard; with the comparison's finding on the records it wrote (None: correct)."""
    variant, settings = kernels.get(case.variant), host.settings
    scratch = Path(tempfile.mkdtemp(prefix="armgym-unguarded-"))
    try:
        result, obj = syntax.assemble(expand(case, host).decode(), scratch, settings)
        assert obj is not None, result.message
        assert execution.link(variant, obj, scratch, settings) is None
        tests = execution.harness.test_count(variant, settings)
        res = sandbox.run(execution.qemu_argv(f"./{execution.EXE_NAME}", SEED, tests, False),
                          scratch, timeout_s=timeout_s, writable=False, settings=settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    records, clean = parse(variant, res.stdout, False)
    expected = execution.reference(variant, SEED, settings).records
    complete = res.returncode == 0 and clean and len(records) == tests
    return res, judge(variant, records, expected) if complete else Finding(
        ErrorKind.crash, "incomplete", {})


def cases_of(category: str) -> list[Case]:
    return [c for c in CASES if c.category == category]


@pytest.mark.parametrize("case", cases_of("host-syscall"), ids=lambda c: c.name)
def test_the_sandbox_alone_contains_the_system_calls(case: Case, host: Host) -> None:
    """Defence in depth: the calls the guard refuses reach the host kernel without it, and
    nothing of them leaves the sandbox."""
    before = host.snapshot()
    res, finding = run_unguarded(case, host)
    assert finding is not None, "a host-syscall case computes no outputs"
    assert_no_trace(host, before, (res.stdout + res.stderr).decode(errors="replace"))


@pytest.mark.parametrize("case", cases_of("foreign-code"), ids=lambda c: c.name)
def test_foreign_code_passes_every_test_without_the_guard(case: Case, host: Host) -> None:
    """Not a strawman: these kernels compute the right outputs; only the guard refuses them."""
    res, finding = run_unguarded(case, host)
    assert finding is None, finding.message


@pytest.fixture
def weak_host(host: Host) -> Iterator[Host]:
    """The weaker mode, with a canary of its own (the attacks below succeed there)."""
    canary_dir = Path(tempfile.mkdtemp(prefix="armgym-canary-"))
    os.chmod(canary_dir, 0o777)
    canary = canary_dir / "canary"
    canary.write_bytes(b"intact\n")
    os.chmod(canary, 0o666)
    yield dataclasses.replace(host, canary=canary, settings=host.settings.replace(
        sandbox="none", allow_unsandboxed=True))
    shutil.rmtree(canary_dir, ignore_errors=True)


def test_the_guard_alone_keeps_a_host_file(weak_host: Host) -> None:
    """Without the sandbox, the guard still refuses case 31's open() before it is made."""
    case = case_named("31_open_write_canary")
    verdict = verify(case.variant, expand(case, weak_host), SEED, settings=weak_host.settings)
    assert verdict.sandbox == "none" and verdict.error_kind is case.expect
    assert weak_host.canary.read_bytes() == b"intact\n"


def test_without_sandbox_and_guard_a_host_file_is_rewritten(weak_host: Host) -> None:
    """The corpus is not a strawman: with neither layer, case 31 rewrites its canary."""
    run_unguarded(case_named("31_open_write_canary"), weak_host)
    assert weak_host.canary.read_bytes() == b"pwned\n"


def test_without_sandbox_and_guard_a_process_escapes_and_is_seen(weak_host: Host) -> None:
    """The weaker mode's documented hole, and proof that the process check would catch it."""
    case = case_named("74_fork_setsid_escape")
    before = others()
    run_unguarded(case, weak_host)
    escaped = [p for p in live_descendants() if p.pid in others() - before]
    for proc in escaped:
        os.kill(proc.pid, signal.SIGKILL)
    reap_after = time.monotonic() + 5
    while others() - before and time.monotonic() < reap_after:
        time.sleep(0.01)
    assert [p.uid for p in escaped] == [sandbox_uid()]
