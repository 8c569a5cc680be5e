"""What a hostile submission could change on the host, captured so tests can compare.

Processes: with this process made a child subreaper, anything a sandboxed step starts stays a
descendant of it even when its parent dies or it starts a new session, so "nothing left
behind" is "no live descendant". Files: sandboxed steps run as `nobody`, so a file they could
leave behind would be owned by that uid; other tests and other engineers work as other users.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from toolchain.sandbox import NOBODY

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper(enabled: bool) -> None:
    """Adopt orphaned descendants instead of letting init take them out of sight.

    While enabled, this process must reap what it adopts (`reap_zombies`): sandboxes leave
    their exited init to be reaped by whoever adopts it, and unreaped zombies still count
    against the sandbox user's process limit.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    uid: int
    cmdline: str


def processes() -> dict[int, Proc]:
    out: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            uid = os.stat(entry.path).st_uid
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry.name)] = Proc(int(entry.name), int(fields[1]), fields[0], uid, cmdline)
    return out


def descendants(root: int | None = None) -> list[Proc]:
    """Every process below `root` (this process by default), zombies included."""
    root = os.getpid() if root is None else root
    table = processes()
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(table[pid])
        todo += children.get(pid, [])
    return found


def reap_zombies() -> None:
    """Collect adopted children that have exited (as init would outside the tests)."""
    for proc in descendants():
        if proc.state == "Z" and proc.ppid == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)


def live_descendants() -> list[Proc]:
    reap_zombies()
    return [p for p in descendants() if p.state != "Z"]


def with_marker(marker: str) -> list[Proc]:
    """Live processes anywhere on the host whose command line holds `marker`."""
    return [p for p in processes().values() if marker in p.cmdline and p.state != "Z"
            and p.pid != os.getpid()]


def sandbox_uid() -> int:
    return NOBODY if os.geteuid() == 0 else os.geteuid()


def owned_files(roots: Iterable[tuple[Path, int | None]], skip: Iterable[Path] = ()) -> set[str]:
    """Paths owned by the sandbox's uid under each (root, depth limit; None = unlimited).

    Depth 0 is a root's own entries. World-writable trees such as /tmp are only looked at near
    the top: deeper down, concurrent verifications (other test workers, other engineers) keep
    creating and removing scratch files owned by the same uid.
    """
    uid, skipped = sandbox_uid(), {str(p) for p in skip}
    found: set[str] = set()
    todo = [(str(root), 0, limit) for root, limit in roots]
    while todo:
        directory, depth, limit = todo.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.path in skipped:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                found.add(entry.path)
            if entry.is_dir(follow_symlinks=False) and (limit is None or depth < limit):
                todo.append((entry.path, depth + 1, limit))
    return found
