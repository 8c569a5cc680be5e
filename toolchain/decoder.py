"""One llvm-objdump pass over an attempt's code: the object check's words and the linked code.

The object check must know which words of the assembled object's code sections llvm-objdump
cannot decode as Neoverse V2 instructions; the performance gate needs the instruction text of
every address the kernel executed, from the linked executable's bytes (relocations applied). Both
are decoded in one process: chunks of bytes at given addresses, each an executable section of
one symbol-less ELF (no mapping symbols, so data words are decoded as the CPU would decode them).
AArch64 words decode one at a time, so decoding a whole range gives each word the text that
decoding it alone would; the linked chunks are everything the kernel may execute (its own code
and its allowed functions, the execution guard's ranges), decoded before it runs.

llvm-objdump stays the one decoder of record, but a word's answer (valid or `<unknown>`, and its
normalised text) is a pure function of the word: normalise turns every PC-relative target into
`.`, so the text does not depend on where the word sits. `Words` keeps those answers in memory
and on disk (keyed by objdump's version, flags and the normalisation), and `decode` given one
runs llvm-objdump only on the words it has never seen, all of them in one process. The one
context-dependent rule is objdump's own: a run of two or more zero words is skipped (`...`),
a lone zero word is `udf #0`; `decode` applies it the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import tools
from .cache import DiskCache
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
    return _mnemonic(text), text


def _mnemonic(text: str) -> str:
    return text.split(" ", 1)[0].lower()


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


def decode(chunks: Sequence[tuple[int, bytes]], workdir: Path,
           words: Words | None = None) -> list[Decoded]:
    """Every word of every chunk, as one llvm-objdump run decodes it; with `words`, only the
    words it does not hold are decoded (in one run, at addresses of their own: the normalised
    text does not depend on the address) and the result is the same."""
    if not chunks:
        return []
    if words is None:
        return _parse(_run(symbol_less_image(chunks), workdir), len(chunks))
    split = [_words_of(blob) for _, blob in chunks]
    wanted = {w for ws in split for w in ws}
    answers = words.lookup(wanted)
    missing = sorted(wanted - answers.keys())
    if missing:  # distinct words: at most one zero word, so objdump skips none of them
        image = symbol_less_image([(0, struct.pack(f"<{len(missing)}I", *missing))])
        found = _parse(_run(image, workdir), 1)[0]
        unknown = set(found.unknown)
        new = {}
        for i, w in enumerate(missing):
            insn = found.insns.get(4 * i)
            if insn is None or insn.word != w:
                raise InfraError(f"llvm-objdump did not decode the word {w:#010x}")
            new[w] = Answer(4 * i in unknown, insn.text)
        words.store(new)
        answers.update(new)
    return [_from_answers(addr, ws, answers) for (addr, _), ws in zip(chunks, split, strict=True)]


def _words_of(blob: bytes) -> list[int]:
    """The whole words of a chunk (a trailing partial word is printed as bytes, never parsed)."""
    return list(struct.unpack_from(f"<{len(blob) // 4}I", blob))


def _from_answers(address: int, words: Sequence[int], answers: dict[int, Answer]) -> Decoded:
    """One chunk as objdump prints it: a run of two or more zero words is skipped (`...`)."""
    out = Decoded()
    for i, w in enumerate(words):
        if w == 0 and ((i > 0 and words[i - 1] == 0) or (i + 1 < len(words) and not words[i + 1])):
            continue
        answer, at = answers[w], address + 4 * i
        if answer.unknown:
            out.unknown.append(at)
        out.insns[at] = Insn(at, w, _mnemonic(answer.text), answer.text)
    return out


def _parse(listing: str, count: int) -> list[Decoded]:
    out = [Decoded() for _ in range(count)]
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


# --------------------------------------------------------------------------- the word cache

SHARDS = 256  # files per decoder key; a word's file is a hash of the word
SHARD_WORDS = 1024  # words kept per file (the oldest dropped): at most 256 Ki words
REMEMBER_PER_CALL = 1024  # new words one decode call may add (a flood of random words cannot
#                           push out the usual code's words in one attempt)
_HEADER = "armgym-decoder-words 1 "


@dataclass(frozen=True)
class Answer:
    """llvm-objdump's answer for one word: `<unknown>` or not, and its normalised text."""

    unknown: bool
    text: str


def decoder_key() -> str:
    """What an answer depends on: objdump's version and flags, and the normalisation."""
    return tools.fingerprint(tool("objdump").version, *objdump_argv("")[1:-1],
                             _ANNOTATION.pattern, _BARE_ADDRESS.pattern, UNKNOWN, _HEADER)[:16]


def _shard(word: int) -> int:
    return ((word * 0x9E3779B1) & 0xFFFFFFFF) >> 24


def _encode(answers: dict[int, Answer]) -> str:
    body = "".join(f"{w:08x} {int(a.unknown)} {a.text}\n" for w, a in answers.items())
    return f"{_HEADER}{tools.fingerprint(body)}\n{body}"


def _decode(text: str) -> dict[int, Answer]:
    """A file's answers; ValueError (a miss) unless its digest matches, so a torn or corrupted
    file is never trusted."""
    head, _, body = text.partition("\n")
    if head != _HEADER + tools.fingerprint(body):
        raise ValueError("not a decoder words file, or corrupted")
    out = {}
    for line in body.splitlines():
        parts = line.split(" ", 2)
        if len(parts) != 3 or len(parts[0]) != 8 or parts[1] not in ("0", "1"):
            raise ValueError(f"bad decoder words line {line[:40]!r}")
        out[int(parts[0], 16)] = Answer(parts[1] == "1", parts[2])
    return out


class Words:
    """Decoded words in memory and, with a directory, in one file per shard shared by every
    worker on the machine (atomic writes; a file another worker rewrote is read again before
    objdump runs on a word this process does not hold)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._shards: dict[int, dict[int, Answer]] = {}
        self._files: DiskCache[dict[int, Answer]] = DiskCache(0, _encode, _decode)
        self._lock = threading.Lock()

    def _path(self, shard: int) -> Path | None:
        return self.directory / f"{shard:02x}.words" if self.directory else None

    def _read(self, shard: int) -> dict[int, Answer]:
        path = self._path(shard)
        return (self._files.get(path) if path else None) or {}

    def lookup(self, words: Iterable[int]) -> dict[int, Answer]:
        """The answers held for `words` (the rest are not in the result)."""
        found: dict[int, Answer] = {}
        with self._lock:
            missing = []
            for w in words:
                shard = self._shards.get(_shard(w))
                if shard is None:
                    shard = self._shards[_shard(w)] = self._read(_shard(w))
                if w in shard:
                    found[w] = shard[w]
                else:
                    missing.append(w)
            for s in {_shard(w) for w in missing} if self.directory else ():
                self._shards[s] = {**self._shards[s], **self._read(s)}
            for w in missing:
                if w in self._shards[_shard(w)]:
                    found[w] = self._shards[_shard(w)][w]
        return found

    def store(self, answers: dict[int, Answer]) -> None:
        """Remember up to REMEMBER_PER_CALL new answers, merged into their files."""
        by_shard: dict[int, dict[int, Answer]] = {}
        for w in sorted(answers)[:REMEMBER_PER_CALL]:
            by_shard.setdefault(_shard(w), {})[w] = answers[w]
        with self._lock:
            for s, new in by_shard.items():
                merged = {**self._shards.get(s, {}), **self._read(s), **new}
                merged = dict(list(merged.items())[-SHARD_WORDS:])
                self._shards[s] = merged
                path = self._path(s)
                if path is not None:
                    with contextlib.suppress(OSError):  # unwritten: decoded again next time
                        self._files.put(path, merged)


_WORDS: dict[Path, Words] = {}
_WORDS_LOCK = threading.Lock()


def words_at(cache_dir: Path) -> Words:
    """The process's word cache under `cache_dir` for this objdump and its flags."""
    directory = cache_dir / "decoder" / decoder_key()
    with _WORDS_LOCK:
        if directory not in _WORDS:
            _WORDS[directory] = Words(directory)
        return _WORDS[directory]
