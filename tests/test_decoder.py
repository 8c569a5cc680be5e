"""The decoder's word cache (toolchain/decoder.py) against llvm-objdump run on every word.

With a `Words` cache, `decode` runs llvm-objdump only on words it has never seen, at addresses
of their own, and builds each chunk from the per-word answers. That must give what one objdump
run over the chunks at their real addresses gives: on compiler output, on the hostile corpus's
objects, on linked code, with PC-relative forms, zero runs (which objdump skips) and words V2
lacks; and a corrupted cache file must not be believed.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VEC_ADD_1024_BODY, asm, baseline

from toolchain import decoder, execution, kernels
from toolchain import scratch as scratch_dirs
from toolchain.errors import ErrorKind
from toolchain.gates import object_checks, syntax
from toolchain.settings import get_settings

HOSTILE = Path(__file__).with_name("hostile")
BASELINES = [("vec_add_n1024_float32", "clang"), ("dot_n1000_int8", "gcc"),
             ("gelu_approx_n100_float32", "clang"), ("prefix_sum_n1000_int32", "gcc"),
             ("matmul_m16_n16_k8_float32", "clang"), ("popcount_n1024_uint32", "gcc")]
# Every PC-relative form (b, bl, b.cond, cbz, tbz, adr, adrp, ldr/prfm literal), backwards
# too, zero words alone, in pairs and beside words whose low bytes are zero, SME, SVE2, NEON.
WORDS = [0x14000005, 0x94000003, 0x54000040, 0xB4000040, 0xB5FFFFE0, 0x36080040, 0x10000040,
         0x90000000, 0xF0FFFFE0, 0x58000040, 0x1C000040, 0x98000040, 0xD8000040, 0x17FFFFFF,
         0, 0x8B000000, 0, 0, 0xC0800000, 0xC0080000, 0xD503477F, 0x4E20D400, 0x01000000, 0,
         0x45C09000, 0, 0, 0, 0x00000100, 0xD65F03C0, 0]


MADE: list[Path] = []


def fresh() -> Path:
    """A scratch directory of its own (the sandbox binds the directory a tool runs in)."""
    MADE.append(scratch_dirs.make("decoder-test"))
    return MADE[-1]


@pytest.fixture
def scratch() -> Iterator[Path]:
    yield fresh()
    while MADE:
        shutil.rmtree(MADE.pop(), ignore_errors=True)


class Runs:
    """Counts llvm-objdump runs (the real ones: it wraps decoder._run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count, real = 0, decoder._run

        def counted(image: bytes, workdir: Path) -> str:
            self.count += 1
            return real(image, workdir)
        monkeypatch.setattr(decoder, "_run", counted)


def objects() -> list[tuple[str, bytes]]:
    """(name, code bytes) of compiler baselines and of every hostile case that assembles."""
    settings = get_settings()
    texts = [(f"{v}-{c}", baseline(v, c)) for v, c in BASELINES]
    texts += [(p.name, p.read_text(errors="replace")) for p in sorted(HOSTILE.glob("*.s"))]
    out = []
    for name, text in texts:
        _, obj = syntax.assemble(text, fresh(), settings)
        if obj is None:
            continue
        try:
            elf = object_checks.parse_elf(obj.read_bytes())
        except object_checks.ElfError:
            continue
        blob, _ = object_checks.code_blob(elf)
        if blob:
            out.append((name, blob))
    return out


def test_cached_decoding_is_objdumps_on_baselines_and_the_hostile_corpus(scratch: Path) -> None:
    found = objects()
    assert len(found) >= 40  # the baselines and every hostile case that assembles (39 today)
    ours = struct.pack(f"<{len(WORDS)}I", *WORDS)
    cold = decoder.Words(scratch / "words")
    for name, blob in [*found, ("words", ours)]:
        for chunks in ([(0, blob)], [(0x4123A0, blob), (0xFFC, blob[:6]), (0x1000, blob)]):
            alone = decoder.decode(chunks, scratch)
            assert decoder.decode(chunks, scratch, cold) == alone, name
            again = decoder.Words(scratch / "words")  # answered from the files only
            assert decoder.decode(chunks, scratch, again) == alone, name
    decoded = decoder.decode([(0x4123A0, ours)], scratch)[0]
    assert {hex(a - 0x4123A0) for a in decoded.unknown} == {"0x48", "0x4c", "0x58"}
    assert {decoded.insns[0x4123A0 + 4 * i].text for i in range(14)} >= {
        "b .", "bl .", "b.eq .", "cbz x0, .", "tbz w0, #0x1, .", "adr x0, .", "adrp x0, .",
        "ldr x0, .", "prfm pldl1keep, ."}
    assert 0x4123A0 + 4 * 16 not in decoded.insns  # a zero pair: skipped, as objdump does
    assert decoded.insns[0x4123A0 + 4 * 14].text == "udf #0x0"  # a lone zero word


def test_a_word_never_seen_costs_one_objdump_run(scratch: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runs = Runs(monkeypatch)
    words = decoder.Words(scratch / "words")
    first = struct.pack("<4I", 0x8B000000, 0x8B010020, 0xD65F03C0, 0x4E20D400)
    decoder.decode([(0, first), (0x1000, first)], scratch, words)
    assert runs.count == 1
    decoder.decode([(0x2000, first)], scratch, words)
    decoder.decode([(0x3000, first)], scratch, decoder.Words(scratch / "words"))
    assert runs.count == 1
    new = first + struct.pack("<2I", 0x8B020040, 0x8B020040)
    assert decoder.decode([(0, new)], scratch, words) == decoder.decode([(0, new)], scratch)
    assert runs.count == 3  # one for the new word, one for the uncached reference


def test_words_v2_lacks_are_refused_the_same_way_warm_or_cold(scratch: Path) -> None:
    settings = get_settings()
    variant = kernels.get("vec_add_n1024_float32")
    words = decoder.Words(scratch / "words")
    for inst in (0xC0080000, 0xD503477F, 0xC0800000):  # SME zero, smstart, mova
        where = fresh()
        text = asm(f"    .inst {inst:#x}\n" + VEC_ADD_1024_BODY + "    ret")
        _, obj = syntax.assemble(text, where, settings)
        assert obj is not None
        assert execution.link(variant, obj, where, settings) is None
        checked = object_checks.check_static(obj, frozenset(), settings)
        alone = object_checks.check_object(obj, frozenset(), settings)
        if not isinstance(checked, object_checks.Checked):  # refused before decoding
            assert checked == alone
            continue
        watch = execution.prepare(variant, obj, where, settings, 12).guard()
        plain = object_checks.finish(checked, frozenset(), where, watch.chunks())
        for _ in range(2):  # cold, then every word from the cache
            cached = object_checks.finish(checked, frozenset(), where, watch.chunks(), words)
            assert cached == plain
        assert cached[0].error_kind == alone.error_kind == ErrorKind.object_rejected
        assert cached[0].message == alone.message


def test_a_corrupted_cache_file_is_not_believed(scratch: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    blob = struct.pack("<3I", 0x8B000000, 0xCB000000, 0xD65F03C0)  # add, sub, ret
    truth = decoder.decode([(0, blob)], scratch)
    decoder.decode([(0, blob)], scratch, decoder.Words(scratch / "words"))
    files = sorted((scratch / "words").glob("*.words"))
    assert files
    for f in files:  # every add becomes a sub, the digest left as it was
        f.write_text(f.read_text().replace(" add ", " sub "))
    runs = Runs(monkeypatch)
    fresh = decoder.Words(scratch / "words")
    assert decoder.decode([(0, blob)], scratch, fresh) == truth
    assert runs.count == 1  # decoded again, and the files written anew
    assert decoder.decode([(0, blob)], scratch, decoder.Words(scratch / "words")) == truth
    assert runs.count == 1
    (files[0]).write_text("armgym-decoder-words 1 x\n8b000000 0 sub x0, x0, x0\n")
    assert decoder.decode([(0, blob)], scratch, decoder.Words(scratch / "words")) == truth

