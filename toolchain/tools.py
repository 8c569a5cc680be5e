"""Where the external tools are, what versions they are, and the exact flags the verifier uses.

Versions go into every verdict; a missing tool is an infrastructure failure, never a pass.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from .errors import InfraError

TRIPLE = "aarch64-linux-gnu"
# Neoverse V2: Armv9.0-A with SVE2 and its optional extensions; GNU as 2.40 has no
# -mcpu=neoverse-v2, so the architecture is spelled out. Nothing V2 lacks (SME) is enabled.
GAS_MARCH = (
    "armv9-a+sve2-bitperm+i8mm+bf16+fp16fml+memtag+rng+crypto+sve2-aes+sve2-sha3+sve2-sm4"
    "+crc+profile"
)
# The byte-level instruction check decodes with exactly this feature set.
OBJDUMP_MATTR = "+sve2-bitperm,+aes,+sha2,+sha3,+sm4,+sve2-aes,+sve2-sha3,+sve2-sm4"
# qemu-user CPU configured like V2: 128-bit SVE vectors, no SME.
QEMU_CPU = "max,sve-default-vector-length=16,sme=off"
CLANG_FLAGS = ("--target=aarch64-linux-gnu", "-mcpu=neoverse-v2", "-fno-addrsig")
GCC_FLAGS = ("-mcpu=demeter",)  # gcc 12 names the Neoverse V2 core "demeter"
COMMON_CFLAGS = ("-fwrapv", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fno-ident")


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    version: str


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return str(Path(found).resolve()) if name.endswith(("-as", "-ld")) else found
    return None


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"{Path(argv[0]).name} --version failed: {exc}") from exc
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def zig_path() -> str | None:
    try:
        import ziglang  # type: ignore[import-untyped]
    except ImportError:
        return None
    exe = Path(ziglang.__file__).parent / "zig"
    return str(exe) if exe.exists() else None


_LOOKUP: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "as": ((f"{TRIPLE}-as",), ["--version"]),
    "ld": ((f"{TRIPLE}-ld.bfd", f"{TRIPLE}-ld"), ["--version"]),
    "gcc": ((f"{TRIPLE}-gcc",), ["--version"]),
    "qemu": (("qemu-aarch64",), ["--version"]),
    "objdump": (("llvm-objdump-19", "llvm-objdump"), ["--version"]),
    "mca": (("llvm-mca-19", "llvm-mca"), ["--version"]),
    "readelf": ((f"{TRIPLE}-readelf",), ["--version"]),
    "bwrap": (("bwrap",), ["--version"]),
}


@cache
def tool(name: str) -> Tool:
    """Find a tool and its version once per process; raise InfraError when it is missing."""
    if name == "clang":
        zig = zig_path()
        if zig is None:
            raise InfraError("pinned clang (PyPI package ziglang) is not installed")
        version = _first_line([zig, "clang", "--version"])
        zig_version = _first_line([zig, "version"])
        return Tool("clang", zig, f"{version} (zig {zig_version})")
    if name == "osaca":
        return _osaca()
    names, flags = _LOOKUP[name]
    path = _which(*names)
    if path is None:
        raise InfraError(f"{names[0]} is not installed")
    line = _first_line([path, *flags])
    if name in ("objdump", "mca"):
        line = next((m for m in [re.search(r"LLVM version [\d.]+", _all(path))] if m), None)
        line = line.group(0) if line else "unknown"
    return Tool(name, path, line)


def _osaca() -> Tool:
    """OSACA runs in process (the cross-check's second model); its version is the package's."""
    try:
        import osaca  # type: ignore[import-untyped]
    except ImportError as exc:
        raise InfraError("OSACA (PyPI package osaca) is not installed") from exc
    return Tool("osaca", str(Path(osaca.__file__).parent), f"osaca {osaca.__version__}")


def _all(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout + out.stderr


def versions(
    names: tuple[str, ...] = ("as", "ld", "qemu", "objdump", "gcc", "clang"),
) -> dict[str, str]:
    return {n: tool(n).version for n in names}


@lru_cache(maxsize=1)
def link_inputs() -> tuple[list[str], list[str]]:
    """Objects before and after the user's objects for a static link, as gcc would pass them.

    Calling ld directly (instead of the gcc driver, which adds collect2 and another process)
    keeps the per-attempt link to one process.
    """
    gcc = tool("gcc").path

    def file(name: str) -> str:
        out = subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True)
        path = Path(out.stdout.strip())
        if not path.is_absolute() or not path.exists():
            raise InfraError(f"cross gcc cannot find {name}")
        return str(path.resolve())

    before = [file("crt1.o"), file("crti.o"), file("crtbeginT.o")]
    after = [
        "--start-group", file("libm.a"), file("libgcc.a"), file("libgcc_eh.a"), file("libc.a"),
        "--end-group", file("crtend.o"), file("crtn.o"),
    ]
    return before, after


# The object checks decode only .text* (gates/object_checks.py), which is sound only when the
# link keeps everything else out of executable segments: GNU ld for AArch64 puts .rodata and
# .eh_frame in the R+X segment unless told otherwise. Every link of a candidate uses these;
# tests/test_gate_object.py checks that they do keep data out.
REQUIRED_LINK_FLAGS = ("-z", "separate-code", "-z", "noexecstack")


def link_argv(objects: list[str], output: str, map_file: str | None = None, *,
              runtime: bool = True, keep_relocs: bool = False) -> list[str]:
    """The static link; `map_file` also writes ld's map (where each input section landed);
    `keep_relocs` keeps the relocations in the output (`-q`: the slotted harness's references
    to `kernel`, execution/place.py).

    runtime=False links objects that already hold the C runtime and libraries (a harness made by
    `prelink_argv`): ld then resolves nothing from archives, which is most of its time."""
    before, after = link_inputs() if runtime else ([], [])
    extra = (["-Map", map_file] if map_file else []) + (["-q"] if keep_relocs else [])
    return [tool("ld").path, "-static", "-X", "-EL", "-maarch64linux", *REQUIRED_LINK_FLAGS,
            *extra, "-o", output, *before, *objects, *after]


def prelink_argv(objects: list[str], output: str, keep: list[str]) -> list[str]:
    """One relocatable object of `objects`, the C runtime and every library member they (and the
    symbols in `keep`) need: linked with a candidate by `link_argv(..., runtime=False)`."""
    before, after = link_inputs()
    return [tool("ld").path, "-r", "-EL", "-maarch64linux", "-o", output, *before, *objects,
            *[f"-u{name}" for name in keep], *after]


def fingerprint(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def python_version() -> str:
    return sys.version.split()[0]
