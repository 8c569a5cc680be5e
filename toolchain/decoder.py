"""One llvm-objdump pass over an attempt's code: the object check's words and the linked code.

The object check must know which words of the assembled object's code sections llvm-objdump
cannot decode as Neoverse V2 instructions; the performance gate needs the instruction text of
every address the kernel executed, from the linked executable's bytes (relocations applied). Both
are decoded in one process: chunks of bytes at given addresses, each an executable section of
one symbol-less ELF (no mapping symbols, so data words are decoded as the CPU would decode them).
AArch64 words decode one at a time, so decoding a whole range gives each word the text that
decoding it alone would; the linked chunks are everything the kernel may execute (its own code
and its allowed functions, the execution guard's ranges), decoded before it runs.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InfraError
from .tools import OBJDUMP_MATTR, tool

OBJDUMP_TIMEOUT_S = 60.0

_LINE = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]{8})\s+(\S.*)$")
_SECTION = re.compile(r"^Disassembly of section \.text\.(\d+):$")
_BARE_ADDRESS = re.compile(r"(?<=[\s,])0x[0-9a-f]+\b")
_ANNOTATION = re.compile(r"\s*(<[^>]*>|//.*)")
UNKNOWN = "<unknown>"

BRANCHES = frozenset({
    "b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz", "tbnz", "braa", "brab", "braaz",
    "brabz", "blraa", "blrab", "blraaz", "blrabz", "retaa", "retab", "eret", "eretaa", "eretab",
})
CALLS = frozenset({"bl", "blr", "blraa", "blrab", "blraaz", "blrabz"})


@dataclass(frozen=True)
class Insn:
    address: int
    word: int
    mnemonic: str
    text: str  # normalised: PC-relative targets become `.`, annotations dropped

    @property
    def branch(self) -> bool:
        return self.mnemonic in BRANCHES or self.mnemonic.startswith(("b.", "bc."))

    @property
    def call(self) -> bool:
        return self.mnemonic in CALLS


@dataclass
class Decoded:
    """One chunk's words: each address's instruction, and the addresses objdump could not
    decode (`<unknown>`)."""

    insns: dict[int, Insn] = field(default_factory=dict)
    unknown: list[int] = field(default_factory=list)


def normalise(asm: str) -> tuple[str, str]:
    """(mnemonic, text) of one objdump instruction; branch targets are irrelevant to timing."""
    text = _ANNOTATION.sub("", asm).strip()
    text = _BARE_ADDRESS.sub(".", " ".join(text.split()))
    return text.split(" ", 1)[0].lower(), text


def symbol_less_image(chunks: Sequence[tuple[int, bytes]]) -> bytes:
    """An ELF64 relocatable with one executable section `.text.<i>` per chunk, at the chunk's
    address, and no symbols: mapping symbols would make objdump print words as data."""
    names = b"\0.shstrtab\0" + b"".join(b".text.%d\0" % i for i in range(len(chunks)))
    ehdr, shdr = struct.Struct("<16sHHIQQQIHHHHHH"), struct.Struct("<IIQQQQIIQQ")
    body = bytearray()
    offsets = []
    for _, blob in chunks:
        offsets.append(ehdr.size + len(body))
        body += blob + b"\0" * (-len(blob) % 8)
    names_off = ehdr.size + len(body)
    shoff = (names_off + len(names) + 7) & ~7
    count = len(chunks) + 2
    image = bytearray(ehdr.pack(b"\x7fELF\x02\x01\x01" + b"\0" * 9, 1, 183, 1, 0, 0, shoff, 0,
                                ehdr.size, 0, 0, shdr.size, count, 1))
    image += body + names + b"\0" * (shoff - names_off - len(names))
    image += shdr.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    image += shdr.pack(1, 3, 0, 0, names_off, len(names), 0, 0, 1, 0)
    name_at = len(b"\0.shstrtab\0")
    for i, ((addr, blob), off) in enumerate(zip(chunks, offsets, strict=True)):
        image += shdr.pack(name_at, 1, 0x6, addr, off, len(blob), 0, 0, 4, 0)  # PROGBITS, AX
        name_at += len(b".text.%d\0" % i)
    return bytes(image)


def objdump_argv(path: str) -> list[str]:
    return [tool("objdump").path, "-d", "--mcpu=neoverse-v2", f"--mattr={OBJDUMP_MATTR}", path]


def decode(chunks: Sequence[tuple[int, bytes]], workdir: Path) -> list[Decoded]:
    """Every word of every chunk, as one llvm-objdump run decodes it."""
    if not chunks:
        return []
    listing = _run(symbol_less_image(chunks), workdir)
    out = [Decoded() for _ in chunks]
    current: Decoded | None = None
    for line in listing.splitlines():
        section = _SECTION.match(line)
        if section:
            current = out[int(section.group(1))]
            continue
        m = _LINE.match(line)
        if m is None or current is None:
            continue
        addr, asm = int(m.group(1), 16), m.group(3)
        if UNKNOWN in asm:
            current.unknown.append(addr)
        mnemonic, text = normalise(asm)
        current.insns[addr] = Insn(addr, int(m.group(2), 16), mnemonic, text)
    return out


def _run(image: bytes, workdir: Path) -> str:
    fd, name = tempfile.mkstemp(prefix=".code-", suffix=".o", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(image)
        try:
            out = subprocess.run(objdump_argv(name), capture_output=True, text=True,
                                 errors="replace", timeout=OBJDUMP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfraError(f"llvm-objdump failed to run: {exc}") from exc
        if out.returncode != 0:
            raise InfraError(f"llvm-objdump failed: {out.stderr.strip()[:300]}")
        return out.stdout
    finally:
        os.unlink(name)
