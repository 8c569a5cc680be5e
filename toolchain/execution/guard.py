"""The execution guard: during every test, the kernel runs only its own code and its math.

qemu-user forwards system calls to the host and the harness is statically linked with libc, so a
kernel could call `write`, `memcpy` or harness code by absolute address (the link is
deterministic), or return into the harness through a forged link register. The object check
sees none of that: there is no `svc` and no foreign symbol in the object. So the candidate's
tests run with a TCG plugin (guard_plugin.c) that watches the execution itself and stops the
guest, before the offending system call is made, when

* code outside the candidate's sections and the variant's allowed functions runs between the
  kernel's entry (`kernel`) and its return to the harness (`armgym_kernel_return`);
* the candidate's code runs outside such a call (a redirected return address or callback);
* a system call is made during the kernel;
* the kernel's or an allowed function's store lands in the harness's memory: its stack above
  the kernel's stack guard (the trampoline's saved frame record and callee-saved registers, the
  frames of the harness's C code, main and libc's start code) or the executable's writable
  segments outside the candidate's own data (the call block, harness and libc globals, stdio's
  FILE structures, the atexit list, the GOT). A kernel could otherwise overwrite the
  trampoline's saved return address, return properly, and have the harness jump anywhere once
  the guard's window had closed.

The first three are `abi_violation`: the kernel broke its calling contract, whatever it
computed; the stores are `memory_violation`, the kind of a write into the caller's frame. A guest
signal raised before the guard saw anything stays `crash`.

The allowed functions are the variant's math functions and every function they reach by direct
branches in the linked executable (expf's __math_oflowf, tanhf's expm1f, ...), read from the
executable's symbol table and bytes; one with an indirect branch cannot be bounded and is an
infrastructure error. The plugin reports on stderr under a random token per run that the guest
never sees, and first says it started: a run without that line did not have the guard, which is
`infra_error`, never a pass.

The plugin API header comes from Debian's qemu source package matching the installed qemu-user
(`fetch_header`, run by `armgym prepare`); the plugin is built from it with the pinned zig,
freestanding (no C library: it builds in a fraction of a second), and cached by content hash.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import secrets
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import tools
from ..decoder import Insn
from ..errors import ErrorKind, InfraError
from . import blocks

PLUGIN_C = Path(__file__).with_name("guard_plugin.c")
HEADER = "qemu-plugin.h"
QEMU_PACKAGE = "qemu-user"
# The guest's exit status when the guard stopped it; the harness itself exits with 0-5.
STATUS = 0x5A
KERNEL_SYMBOL = "kernel"
RETURN_SYMBOL = "armgym_kernel_return"
# The trampoline's first instruction, whose store is its frame record at the caller's stack
# pointer: the lower end of the harness's stack the kernel may not write (harness_runtime.c).
FRAME_SYMBOL = "armgym_call"
FRAME_WORD = 0xA9B67BFD  # stp x29, x30, [sp, #-160]!
# `_start`'s load of argc at the initial stack pointer: the upper end.
TOP_SYMBOL = "_start"
TOP_WORD = 0xF94003E1  # ldr x1, [sp]
TOP_SEARCH = 16  # instructions of _start looked at
PF_W = 2
FETCH_TIMEOUT_S = 300
MAX_RANGES = 4096  # guard_plugin.c's limit per argument list

Range = tuple[int, int]


# --------------------------------------------------------------------------- the plugin


def header_dir(cache_dir: Path) -> Path:
    """Where the header matching the installed qemu lives (one directory per qemu version)."""
    key = tools.fingerprint(tools.tool("qemu").version)[:16]
    return cache_dir / "qemu-plugin-api" / key


def fetch_header(cache_dir: Path) -> Path:
    """Put qemu-plugin.h of the installed qemu-user's Debian source package into the cache.

    apt-get runs with a private state directory and deb-src entries made from the system's own
    deb entries, so the system's apt configuration is left as it is; the download is checked by
    apt against the signed archive. Debian's patches are checked not to touch the header.
    """
    out = header_dir(cache_dir) / HEADER
    if out.exists():
        return out
    source, version = _source_package()
    with tempfile.TemporaryDirectory(prefix="armgym-qemu-src-") as tmp_s:
        tmp = Path(tmp_s)
        options = _private_apt(tmp)
        _apt(["apt-get", "-q", *options, "update"], tmp, "apt-get update (deb-src)")
        src = tmp / "src"
        src.mkdir()
        _apt(["apt-get", "-q", *options, "source", "--download-only", f"{source}={version}"],
             src, f"apt-get source {source}={version}")
        header = _extract_header(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{HEADER}.{os.getpid()}")
    tmp_out.write_bytes(header)
    os.replace(tmp_out, out)
    return out


def _source_package() -> tuple[str, str]:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${source:Package} ${source:Version}",
                              QEMU_PACKAGE], capture_output=True, text=True, timeout=30,
                             check=True).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        raise InfraError(f"{QEMU_PACKAGE} is not installed as a Debian package: {exc}") from exc
    if len(out) != 2:
        raise InfraError(f"cannot tell the source package of {QEMU_PACKAGE}")
    return out[0], out[1]


def _private_apt(tmp: Path) -> list[str]:
    """apt options for a throw-away state directory whose sources are the system's deb entries
    turned into deb-src entries."""
    parts = tmp / "sources.list.d"
    for name in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    deb822 = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(path).read_text()
        deb822.append(re.sub(r"(?m)^Types:.*$", "Types: deb-src", text))
    lines = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if os.path.exists(path):
            lines += [re.sub(r"^deb\s", "deb-src ", ln) for ln in Path(path).read_text()
                      .splitlines() if re.match(r"^deb\s", ln)]
    if not deb822 and not lines:
        raise InfraError("no apt sources are configured: cannot fetch qemu's source package")
    (parts / "src.sources").write_text("\n\n".join(deb822))
    (tmp / "sources.list").write_text("\n".join(lines) + "\n")
    # As root, apt would download as its own user, who cannot write this private directory.
    user = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    return ["-o", f"Dir::Etc::SourceList={tmp / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={parts}", "-o", f"Dir::State::Lists={tmp / 'lists'}",
            "-o", f"Dir::Cache={tmp / 'cache'}", *user]


def _apt(argv: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=FETCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        raise InfraError(f"{what} failed: {proc.stderr.strip()[-500:]}")


def _extract_header(src: Path) -> bytes:
    origs = sorted(src.glob("*.orig.tar.*"))
    debian = sorted(src.glob("*.debian.tar.*"))
    if len(origs) != 1:
        raise InfraError(f"qemu's source package has no single upstream tarball: {origs}")
    for path in debian:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.startswith("debian/patches/"):
                    data = tar.extractfile(member)
                    if data is not None and b"include/qemu/qemu-plugin.h" in data.read():
                        raise InfraError(f"Debian's patch {member.name} changes qemu-plugin.h; "
                                         "the upstream header would not match")
    # tar extracts one member without parsing every header in Python: 3 s instead of 8
    member = "*/include/qemu/qemu-plugin.h"
    try:
        proc = subprocess.run(["tar", "-xOf", str(origs[0]), "--occurrence=1", "--wildcards",
                               member],
                              capture_output=True, timeout=FETCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"cannot unpack {origs[0].name}: {exc}") from exc
    if proc.returncode == 0 and b"qemu_plugin_install" in proc.stdout:
        return proc.stdout
    # tar needs the xz program for .xz; Python's own decompressor is slower but always there
    with tarfile.open(origs[0]) as tar:
        for entry in tar:
            if entry.isfile() and entry.name.endswith("/include/qemu/qemu-plugin.h"):
                data = tar.extractfile(entry)
                if data is not None:
                    return data.read()
    raise InfraError(f"{origs[0].name} holds no include/qemu/qemu-plugin.h: "
                     f"{proc.stderr.decode(errors='replace')[-300:]}")


@lru_cache(maxsize=4)
def plugin_path(cache_dir: Path) -> Path:
    """The guard plugin for the installed qemu, built once per source, header and machine."""
    header = header_dir(cache_dir) / HEADER
    if not header.exists():
        raise InfraError("the qemu plugin API header is missing: run `armgym prepare` "
                         "(it fetches qemu's Debian source package once)")
    zig = tools.zig_path()
    if zig is None:
        raise InfraError("pinned clang (PyPI package ziglang) is not installed; "
                         "the execution guard cannot be built")
    source, api = PLUGIN_C.read_bytes(), header.read_bytes()
    arch = platform.machine()
    out = cache_dir / "qemu-guard" / tools.fingerprint(source, api, arch)[:16] / "guard.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    for parent in [out.parent, *out.parents]:
        if parent == cache_dir.parent:
            break
        os.chmod(parent, 0o755)  # the sandboxed emulator runs as an unprivileged user
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp_s:
        tmp = Path(tmp_s)
        shutil.copy(header, tmp / HEADER)
        # Freestanding: qemu-plugin.h wants <inttypes.h> only for the fixed-width types.
        (tmp / "inttypes.h").write_text("#include <stdint.h>\n")
        built = tmp / "guard.so"
        argv = [zig, "cc", "-target", f"{arch}-linux-gnu", "-ffreestanding", "-nostdlib",
                "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", str(tmp), "-o", str(built),
                str(PLUGIN_C)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfraError(f"building the execution guard failed: {exc}") from exc
        if proc.returncode != 0 or not built.exists():
            raise InfraError(f"building the execution guard failed: {proc.stderr[-1000:]}")
        os.chmod(built, 0o755)
        os.replace(built, out)
    return out


def prepare(cache_dir: Path) -> Path:
    """Fetch the header when needed and build the plugin (`armgym prepare`)."""
    fetch_header(cache_dir)
    plugin_path.cache_clear()
    return plugin_path(cache_dir)


# --------------------------------------------------------------------------- what may run


@dataclass(frozen=True)
class Function:
    name: str
    start: int
    end: int


SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                ("value", "<u8"), ("size", "<u8")])  # Elf64_Sym
SHDR = np.dtype([("name", "<u4"), ("type", "<u4"), ("flags", "<u8"), ("addr", "<u8"),
                 ("offset", "<u8"), ("size", "<u8"), ("link", "<u4"), ("info", "<u4"),
                 ("addralign", "<u8"), ("entsize", "<u8")])  # Elf64_Shdr


class Image:
    """What the guard needs of a linked static executable: functions, symbols and code bytes.

    The symbol table (some 3,000 entries) is read as one array; names are decoded only for the
    few symbols asked for, so reading costs well under a millisecond per attempt."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.segments = load_segments(data)
        self.symtab, self.symbols, self.strings = _symtab(data)
        defined = self.symbols[(self.symbols["shndx"] != 0)]
        funcs = defined[((defined["info"] & 0xF) == 2) & (defined["size"] > 0)]
        funcs = funcs[np.argsort(funcs["value"], kind="stable")]
        self._starts = funcs["value"]
        self._ends = funcs["value"] + funcs["size"]
        self._func_names = funcs["name"]

    @classmethod
    def read(cls, path: Path) -> Image:
        try:
            return cls(path.read_bytes())
        except (OSError, struct.error, IndexError, ValueError) as exc:
            raise InfraError(f"cannot read the linked executable: {exc}") from exc

    def _name(self, offset: int) -> str:
        return self.strings[offset: self.strings.index(b"\0", offset)].decode(errors="replace")

    def named(self, name: str) -> np.ndarray:
        """Which symbols are called `name` (a mask over `symbols`), no name decoded."""
        wanted = name.encode() + b"\0"
        offsets, at = [], self.strings.find(wanted)
        while at >= 0:  # names may share a tail ("kernel" inside "xkernel"): every occurrence
            offsets.append(at)
            at = self.strings.find(wanted, at + 1)
        named = np.zeros(len(self.symbols), dtype=bool)
        for offset in offsets:
            named |= self.symbols["name"] == offset
        return named

    def symbol(self, name: str) -> int:
        """The value of the defined GLOBAL or WEAK symbol `name`."""
        syms = self.symbols
        bind = syms["info"] >> 4
        hit = syms[self.named(name) & (syms["shndx"] != 0) & ((bind == 1) | (bind == 2))]
        if not len(hit):
            raise InfraError(f"the linked executable has no symbol {name}")
        return int(hit["value"][0])

    def function_at(self, address: int) -> Function | None:
        i = int(np.searchsorted(self._starts, address, side="right")) - 1
        if i >= 0 and address < int(self._ends[i]):
            return Function(self._name(int(self._func_names[i])), int(self._starts[i]),
                            int(self._ends[i]))
        return None

    def code_between(self, lo: int, hi: int) -> bool:
        """Whether any function of the image overlaps [lo, hi)."""
        i = int(np.searchsorted(self._starts, hi, side="left"))  # functions starting before hi
        return bool(i and (self._ends[:i] > lo).any())

    def bytes_at(self, address: int, size: int) -> bytes:
        for vaddr, offset, filesz in self.segments:
            if vaddr <= address and address + size <= vaddr + filesz:
                return self.data[offset + address - vaddr: offset + address - vaddr + size]
        raise InfraError(f"code at {address:#x} is not in a loaded segment")

    def words(self, start: int, end: int) -> Iterable[tuple[int, int]]:
        for i, (w,) in enumerate(struct.iter_unpack("<I", self.bytes_at(start, end - start))):
            yield start + 4 * i, w


def writable_segments(data: bytes) -> list[Range]:
    """The [start, end) of every writable PT_LOAD segment, .bss included."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = []
    for i in range(phnum):
        ptype, flags, _offset, vaddr, _paddr, _filesz, memsz = struct.unpack_from(
            "<IIQQQQQ", data, phoff + i * phentsize)
        if ptype == 1 and flags & PF_W and memsz:
            out.append((vaddr, vaddr + memsz))
    return out


def load_segments(data: bytes) -> tuple[tuple[int, int, int], ...]:
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = []
    for i in range(phnum):
        ptype, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if ptype == 1:  # PT_LOAD
            out.append((vaddr, offset, filesz))
    return tuple(out)


def section_headers(data: bytes) -> np.ndarray:
    """The section header table as one array (fields as in SHDR)."""
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    if shnum and shentsize != SHDR.itemsize:
        raise ValueError(f"section headers of {shentsize} bytes")
    return np.frombuffer(data, SHDR, shnum, shoff)


def _symtab(data: bytes) -> tuple[int, np.ndarray, bytes]:
    """The symbol table's section index, its entries and its string table."""
    headers = section_headers(data)
    for i, h in enumerate(headers):
        if h["type"] == 2 and h["entsize"] == SYM.itemsize:  # SHT_SYMTAB
            strtab = headers[h["link"]]
            strings = data[int(strtab["offset"]): int(strtab["offset"] + strtab["size"])]
            return i, np.frombuffer(data, SYM, int(h["size"]) // SYM.itemsize,
                                    int(h["offset"])), strings
    raise ValueError("no symbol table")


LAYOUT_NAME = "candidate.code"  # the code ranges of a candidate placed without ld


def write_layout(scratch: Path, code: Sequence[Range], data: Sequence[Range] = ()) -> None:
    """Where execution/place.py put the candidate's code sections (and, lines marked `d`, its
    other sections), for `candidate_code` and `candidate_data`."""
    (scratch / LAYOUT_NAME).write_text("".join(f"{lo:x} {hi:x}\n" for lo, hi in code) +
                                       "".join(f"d {lo:x} {hi:x}\n" for lo, hi in data))


def _layout(scratch: Path) -> list[list[str]] | None:
    try:
        return [ln.split() for ln in (scratch / LAYOUT_NAME).read_text().splitlines()]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InfraError(f"the candidate's layout is unreadable: {exc}") from exc


def candidate_code(scratch: Path, map_name: str, object_name: str) -> list[Range]:
    """The candidate's code sections in the executable linked in `scratch`: the placement's
    layout when it was placed without ld, else from ld's map."""
    lines = _layout(scratch)
    if lines is None:
        return code_ranges(scratch / map_name, object_name)
    ranges = [(int(f[0], 16), int(f[1], 16)) for f in lines if len(f) == 2]
    if not ranges:
        raise InfraError("the layout places no code of the candidate")
    return ranges


def candidate_data(scratch: Path, map_name: str, object_name: str) -> list[Range]:
    """The candidate's sections other than code (its data, which it may write), likewise."""
    lines = _layout(scratch)
    if lines is None:
        return code_ranges(scratch / map_name, object_name, code=False)
    return [(int(f[1], 16), int(f[2], 16)) for f in lines if len(f) == 3 and f[0] == "d"]


def code_ranges(map_path: Path, object_name: str, code: bool = True) -> list[Range]:
    """Where ld put the `.text*` sections of `object_name` (code=False: its other sections),
    from its map. Only the lines that name the object are looked at (a long section name
    stands on the line before)."""
    try:
        text = map_path.read_text(errors="replace")
    except OSError as exc:
        raise InfraError(f"the link map is missing: {exc}") from exc
    ranges, tail = [], f" {object_name}\n"
    at = text.find(tail)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        fields = text[start: at].split()
        if len(fields) == 2:  # the section's name wrapped onto the line before
            prev = text.rfind("\n", 0, start - 1) + 1
            fields = text[prev: start].split() + fields
        if len(fields) == 3 and fields[0].startswith(".text") == code and int(fields[2], 16):
            lo = int(fields[1], 16)
            ranges.append((lo, lo + int(fields[2], 16)))
        at = text.find(tail, at + 1)
    if not ranges and code:
        raise InfraError(f"the link map places no code of {object_name}")
    return sorted(ranges)


def _branch_target(pc: int, word: int) -> int | None:
    """The target of a direct branch (b, bl, b.cond, cbz/cbnz, tbz/tbnz); None otherwise."""
    if word & 0x7C000000 == 0x14000000:  # b, bl: imm26
        off = word & 0x3FFFFFF
        return pc + ((off ^ 0x2000000) - 0x2000000) * 4
    if word & 0xFF000010 == 0x54000000 or word & 0x7E000000 == 0x34000000:  # b.cond, cbz
        off = (word >> 5) & 0x7FFFF
        return pc + ((off ^ 0x40000) - 0x40000) * 4
    if word & 0x7E000000 == 0x36000000:  # tbz, tbnz: imm14
        off = (word >> 5) & 0x3FFF
        return pc + ((off ^ 0x2000) - 0x2000) * 4
    return None


def _indirect(word: int) -> bool:
    """br, blr and their pointer-authenticated forms (ret is how a function returns)."""
    return word >> 25 == 0x6B and (word >> 21) & 0xF in (0, 1, 8, 9)


def allowed_functions(image: Image, names: Iterable[str],
                      candidate: Sequence[Range]) -> list[Function]:
    """The named functions and every function they reach by direct branches."""
    def in_candidate(address: int) -> bool:
        return any(lo <= address < hi for lo, hi in candidate)

    todo, seen = [], {}
    for name in names:
        address = image.symbol(name)
        fn = image.function_at(address)
        if fn is None or in_candidate(address):
            raise InfraError(f"the allowed function {name} is not library code in the link")
        todo.append(fn)
    while todo:
        fn = todo.pop()
        if fn.start in seen:
            continue
        seen[fn.start] = fn
        for pc, word in image.words(fn.start, fn.end):
            if _indirect(word):
                raise InfraError(f"the allowed function {fn.name} branches indirectly at "
                                 f"{pc:#x}; the code it may run cannot be bounded")
            target = _branch_target(pc, word)
            if target is None or fn.start <= target < fn.end:
                continue
            callee = image.function_at(target)
            if callee is None or in_candidate(target):
                raise InfraError(f"the allowed function {fn.name} branches to {target:#x}, "
                                 "outside any library function")
            todo.append(callee)
    return sorted(seen.values(), key=lambda f: f.start)


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> list[Range]:
    """`ranges` without every address in `holes`."""
    out = list(ranges)
    for hlo, hhi in holes:
        out = [piece for lo, hi in out
               for piece in ((lo, min(hi, hlo)), (max(lo, hhi), hi)) if piece[0] < piece[1]]
    return merge(out)


def _word_at(image: Image, symbol: str, word: int, search: int = 1) -> int:
    """The address of the first instruction `word` among the first `search` of `symbol`."""
    start = image.symbol(symbol)
    for pc, w in image.words(start, start + 4 * search):
        if w == word:
            return pc
    raise InfraError(f"{symbol} does not start as the execution guard expects "
                     f"(no {word:#010x} in its first {search} instructions)")


def merge(ranges: Iterable[Range]) -> list[Range]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Guard:
    """The plugin's arguments for one run, and how to read what it said."""

    plugin: Path
    token: str
    entry: int
    ret: int
    text: tuple[Range, ...]
    allowed: tuple[Range, ...]
    # record=: the kernel call (0-based) whose blocks are recorded, and the sequence's bound
    record: int | None = None
    limit: int = 0
    # the linked executable as read before the run, and the candidate's own code ranges (one
    # per section): what the performance gate decodes and calls the candidate's
    image: Image | None = field(default=None, compare=False, repr=False)
    code: tuple[Range, ...] = ()
    # every word of `text` and `allowed` as the object gate's decoder pass decoded it
    decoded: Mapping[int, Insn] | None = field(default=None, compare=False, repr=False)
    # the harness's instructions that show where its stack lies (FRAME_WORD, TOP_WORD), and the
    # writable data the kernel may not store into (0, 0, (): no store is watched)
    frame: int = 0
    top: int = 0
    protect: tuple[Range, ...] = ()

    def chunks(self) -> list[tuple[int, bytes]]:
        """The bytes of all the kernel may execute (its text and allowed functions), by word,
        for the decoder."""
        assert self.image is not None
        spans = [(lo & ~3, (hi + 3) & ~3) for lo, hi in (*self.text, *self.allowed)]
        return [(lo, self.image.bytes_at(lo, hi - lo)) for lo, hi in spans]

    def qemu_args(self, plugin_name: str) -> list[str]:
        """`-plugin` for qemu, the plugin being visible to it as `plugin_name`."""
        def spans(ranges: Sequence[Range]) -> str:
            return ":".join(f"{lo:x}-{hi:x}" for lo, hi in ranges)

        args = [plugin_name, f"token={self.token}", f"status={STATUS:x}",
                f"entry={self.entry:x}", f"return={self.ret:x}", f"text={spans(self.text)}"]
        if self.allowed:
            args.append(f"allow={spans(self.allowed)}")
        args += [f"frame={self.frame:x}", f"top={self.top:x}"]
        if self.protect:
            args.append(f"protect={spans(self.protect)}")
        if self.record is not None:
            args += [f"record={self.record:x}", f"limit={self.limit:x}",
                     f"out={blocks.RECORD_NAME}"]
        return ["-plugin", ",".join(args)]

    def recorded(self, scratch: Path) -> blocks.Trace:
        """The blocks of the recorded call (blocks.read), once the run has ended."""
        return blocks.read(scratch / blocks.RECORD_NAME, self.token)

    def lines(self, stderr: bytes) -> list[str]:
        prefix = f"armgym-guard {self.token} ".encode()
        return [ln[len(prefix):].decode(errors="replace") for ln in stderr.splitlines()
                if ln.startswith(prefix)]


def for_link(scratch: Path, exe_name: str, map_name: str, object_name: str,
             math_functions: Iterable[str], cache_dir: Path, record: int | None = None,
             limit: int = 0) -> Guard:
    """The guard for the candidate linked in `scratch` (its executable and ld's map); with
    `record`, it also records the blocks of that kernel call (at most `limit`)."""
    candidate = candidate_code(scratch, map_name, object_name)
    image = Image.read(scratch / exe_name)
    allowed = allowed_functions(image, math_functions, candidate)
    if record is not None and not 0 < limit <= blocks.MAX_SEQUENCE:
        raise InfraError(f"the block record's limit must be in 1..{blocks.MAX_SEQUENCE}")
    protect = subtract(writable_segments(image.data),
                       [*candidate, *candidate_data(scratch, map_name, object_name)])
    if len(protect) > MAX_RANGES:
        raise InfraError(f"the writable data to protect is in {len(protect)} pieces")
    return Guard(plugin_path(cache_dir), secrets.token_hex(16), image.symbol(KERNEL_SYMBOL),
                 image.symbol(RETURN_SYMBOL), tuple(close_padding(image, merge(candidate))),
                 tuple(merge((f.start, f.end) for f in allowed)), record, limit, image,
                 tuple(candidate), frame=_word_at(image, FRAME_SYMBOL, FRAME_WORD),
                 top=_word_at(image, TOP_SYMBOL, TOP_WORD, TOP_SEARCH), protect=tuple(protect))


def close_padding(image: Image, ranges: list[Range]) -> list[Range]:
    """Join neighbouring candidate sections across the alignment padding between them (no
    function of the image there), so a kernel split into thousands of sections stays a few
    ranges: the plugin takes at most MAX_RANGES."""
    out: list[Range] = []
    for lo, hi in ranges:
        if out and not image.code_between(out[-1][1], lo):
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    if len(out) > MAX_RANGES:
        raise InfraError(f"the candidate's code is in {len(out)} separate places")
    return out


_REASONS = {
    "outside": "the kernel executed code outside its own text and the functions it may call "
               "(a call into libc or the harness, or a forged return)",
    "stray": "the kernel's code ran outside a call from the harness (a redirected return "
             "address)",
    "syscall": "the kernel made a system call",
    "stray-syscall": "a system call was made after the kernel's code ran outside a call",
    "store-stack": "the kernel wrote into the harness's stack above its own frame and the stack "
                   "guard (the trampoline's saved frame record, registers, return addresses)",
    "store-data": "the kernel wrote into the harness's or libc's data (globals, the call block, "
                  "stdio, atexit handlers, the GOT)",
}


@dataclass(frozen=True)
class Escape:
    """What the guard stopped a run for."""

    kind: ErrorKind
    reason: str


def violation(guard: Guard, stderr: bytes, returncode: int) -> Escape | None:
    """What the guard stopped the run for (None if it did not); InfraError when the run did not
    have the guard at all."""
    said = guard.lines(stderr)
    if not said or said[0] != "start":
        raise InfraError("the emulator ran without the execution guard: "
                         f"{stderr.decode(errors='replace').strip()[-300:] or 'no output'}")
    for line in said[1:]:
        parts = line.split()
        if parts[:1] == ["violation"] and returncode == STATUS and len(parts) >= 2:
            reason = _REASONS.get(parts[1], parts[1])
            if parts[1].endswith("syscall") and len(parts) > 2:
                reason += f" (number {parts[2]})"
            if parts[1] == "store-stack" and len(parts) > 2:
                reason += f" at sp+{parts[2]} as the kernel entered"
            if parts[1] == "store-data" and len(parts) > 2 and parts[2].isdigit():
                reason += f" at {int(parts[2]):#x}"
            store = parts[1].startswith("store-")
            return Escape(ErrorKind.memory_violation if store else ErrorKind.abi_violation,
                          reason)
    return None
