"""The execution guard's record of the timing test (execution/blocks.py) against qemu's own log.

The performance gate costs the blocks the guard recorded during the correctness run; until then
it ran the timing test a second time with `-d in_asm,exec,nochain` and parsed the log
(tests/qemu_log.py keeps that parser). On real kernels, real emulator: the record holds the same
translation blocks in the same order, so the blocks, loop cycles and instruction count the cost
model sees are the same.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import qemu_log
from conftest import VEC_ADD_1024_BODY, asm, baseline

from toolchain import demo, execution, kernels
from toolchain.errors import ErrorKind, InfraError
from toolchain.execution import blocks, harness
from toolchain.gates import object_checks, syntax
from toolchain.gates.performance import gate
from toolchain.gates.performance.trace import build_profile, disassemble, executed_blocks
from toolchain.settings import get_settings

SEED = 23

# Straight loops, a reduction, branches on data, library calls (expf through gelu, sqrtf), gcc's
# shapes and a hand-written NEON kernel.
KERNELS = [
    ("vec_add_n1024_float32", "clang"),
    ("dot_n1000_int8", "gcc"),
    ("max_reduce_n1000_float32", "clang"),
    ("leaky_relu_n1000_float32", "gcc"),
    ("gelu_approx_n100_float32", "clang"),
    ("cosine_similarity_n1000_float32", "gcc"),
    ("dot_n1024_float32", "hand"),
]


@pytest.fixture(scope="module")
def linked() -> Iterator[Callable[[str, str], tuple[Path, str]]]:
    """link(variant_id, text) -> (scratch with candidate.elf and its map, object name)."""
    made: list[Path] = []

    def link(variant_id: str, text: str) -> tuple[Path, str]:
        settings = get_settings()
        scratch = Path(tempfile.mkdtemp(prefix="armgym-blocks-"))
        made.append(scratch)
        result, obj = syntax.assemble(text, scratch, settings)
        assert obj is not None, result.message
        assert execution.link(kernels.get(variant_id), obj, scratch, settings) is None
        return scratch, obj.name

    yield link
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def text_of(variant_id: str, source: str) -> str:
    return demo.DOT_1024_F32_NEON if source == "hand" else baseline(variant_id, source)


@pytest.mark.parametrize(("variant_id", "source"), KERNELS, ids=[f"{v}-{s}" for v, s in KERNELS])
def test_the_record_is_what_qemus_log_shows(linked: Callable[[str, str], tuple[Path, str]],
                                            variant_id: str, source: str) -> None:
    settings = get_settings()
    variant = kernels.get(variant_id)
    scratch, name = linked(variant_id, text_of(variant_id, source))
    test = execution.timing_test(SEED, settings.tests_per_attempt)
    # as the correctness gate runs it: every test, the timing test's call recorded
    res, watch = execution.guarded_run(variant, name, SEED, scratch, settings, budget_s=60.0,
                                       tests=harness.test_count(variant, settings), record=test)
    assert res.returncode == 0 and execution.guard.violation(watch, res.stderr, 0) is None
    recorded = execution.timed(watch, test, scratch).trace
    logged = qemu_log.traced(variant, scratch, name, SEED, test, settings)
    assert recorded is not None
    assert [recorded.extents[tb] for tb in recorded.sequence] == \
        [logged.extents[tb] for tb in logged.sequence]
    assert recorded.instructions == logged.instructions > 0
    image = watch.image
    assert image is not None
    insns = disassemble(image, recorded.addresses(), scratch)
    ours, theirs = build_profile(recorded, insns), build_profile(logged, insns)
    assert ours.blocks == theirs.blocks and ours.cycles == theirs.cycles
    assert list(executed_blocks(recorded, insns)) == list(executed_blocks(logged, insns))


def test_a_run_alone_records_the_same_as_the_whole_run(
        linked: Callable[[str, str], tuple[Path, str]]) -> None:
    """Baselines are measured on the timing test alone; candidates within all tests."""
    settings = get_settings()
    variant = kernels.get("max_reduce_n1000_float32")
    scratch, name = linked(variant.id, baseline(variant.id))
    test = execution.timing_test(SEED, settings.tests_per_attempt)
    whole, watch = execution.guarded_run(variant, name, SEED, scratch, settings, budget_s=60.0,
                                         tests=harness.test_count(variant, settings),
                                         record=test)
    assert whole.returncode == 0
    together = execution.timed(watch, test, scratch)
    alone = gate.measure(variant, scratch, name, SEED, test, settings, 60.0, False)
    assert gate.measure_timed(together, test, scratch, settings) == alone


def test_a_call_longer_than_the_record_is_timeout(
        linked: Callable[[str, str], tuple[Path, str]]) -> None:
    settings = get_settings().replace(trace_limit_blocks=50)
    variant = kernels.get("vec_add_n1024_float32")
    scratch, name = linked(variant.id, asm("""
    mov x9, #100
1:  subs x9, x9, #1
    b.ne 1b
    ret"""))
    with pytest.raises(gate.Failed) as failed:
        gate.measure(variant, scratch, name, SEED, 12, settings, 60.0, False)
    assert failed.value.kind == ErrorKind.timeout and "50 blocks" in str(failed.value)


def record(token: bytes, flags: int, tbs: list[tuple[int, int]], seq: list[int]) -> bytes:
    head = struct.pack("<16s64sIIQ", blocks.MAGIC, token, flags, len(tbs), len(seq))
    return head + b"".join(struct.pack("<QQ", *t) for t in tbs) + \
        b"".join(struct.pack("<I", s) for s in seq)


def test_reading_a_record(tmp_path: Path) -> None:
    path = tmp_path / blocks.RECORD_NAME
    path.write_bytes(record(b"t0k", 1, [(0x400, 0x40c), (0x500, 0x500)], [0, 1, 0]))
    trace = blocks.read(path, "t0k")
    assert trace.extents == [(0x400, 0x404, 0x408, 0x40c), (0x500,)]
    assert list(trace.sequence) == [0, 1, 0] and trace.instructions == 9
    assert trace.addresses() == {0x400, 0x404, 0x408, 0x40c, 0x500}


@pytest.mark.parametrize(("token", "flags", "tbs", "seq", "raised"), [
    (b"other", 1, [(0x400, 0x400)], [0], InfraError),  # not this run's token
    (b"t0k", 0, [(0x400, 0x400)], [0], InfraError),  # the call never returned
    (b"t0k", 1, [(0x400, 0x400)], [1], InfraError),  # an id it does not hold
    (b"t0k", 1, [(0x402, 0x400)], [0], InfraError),  # a block that ends before it starts
    (b"t0k", 3, [(0x400, 0x400)], [0], blocks.OverBudget),
    (b"t0k", 5, [(0x400, 0x400)], [0], blocks.OverBudget),  # too many translations
])
def test_a_bad_record_is_refused(tmp_path: Path, token: bytes, flags: int,
                                 tbs: list[tuple[int, int]], seq: list[int],
                                 raised: type[Exception]) -> None:
    path = tmp_path / blocks.RECORD_NAME
    path.write_bytes(record(token, flags, tbs, seq))
    with pytest.raises(raised):
        blocks.read(path, "t0k")


def test_no_record_is_infra_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError):
        blocks.read(tmp_path / blocks.RECORD_NAME, "t0k")
    (tmp_path / blocks.RECORD_NAME).write_bytes(b"armgym")
    with pytest.raises(InfraError):
        blocks.read(tmp_path / blocks.RECORD_NAME, "t0k")


@pytest.mark.parametrize(("variant_id", "source"), KERNELS[:5],
                         ids=[f"{v}-{s}" for v, s in KERNELS[:5]])
def test_one_decoder_pass_decodes_as_two_did(linked: Callable[[str, str], tuple[Path, str]],
                                             variant_id: str, source: str) -> None:
    """The object gate decodes the object's words and all the linked kernel may execute in one
    llvm-objdump run; the executed addresses get the text a pass of their own gives them."""
    settings = get_settings()
    variant = kernels.get(variant_id)
    scratch, name = linked(variant_id, text_of(variant_id, source))
    allowed = frozenset(variant.math_functions)
    checked = object_checks.check_static(scratch / name, allowed, settings)
    assert isinstance(checked, object_checks.Checked)
    test = execution.timing_test(SEED, settings.tests_per_attempt)
    watch = execution.prepare(variant, scratch / name, scratch, settings, test).guard()
    result, decoded = object_checks.finish(checked, allowed, scratch, watch.chunks())
    alone = object_checks.check_object(scratch / name, allowed, settings)
    assert result.passed and alone.passed and result.details == alone.details
    words = {a: i for chunk in decoded for a, i in chunk.insns.items()}
    res, _ = execution.guarded_run(variant, name, SEED, scratch, settings, budget_s=60.0,
                                   tests=test + 1, watch=watch)
    assert res.returncode == 0
    trace = watch.recorded(scratch)
    assert watch.image is not None
    assert disassemble(watch.image, trace.addresses(), scratch, words) == \
        disassemble(watch.image, trace.addresses(), scratch)


def test_one_decoder_pass_finds_the_words_v2_lacks(
        linked: Callable[[str, str], tuple[Path, str]]) -> None:
    settings = get_settings()
    variant = kernels.get("vec_add_n1024_float32")
    text = asm("    .inst 0xc0080000\n" + VEC_ADD_1024_BODY + "    ret")  # SME: zero {za}
    scratch, name = linked(variant.id, text)
    checked = object_checks.check_static(scratch / name, frozenset(), settings)
    assert isinstance(checked, object_checks.Checked)
    watch = execution.prepare(variant, scratch / name, scratch, settings, 12).guard()
    result, _ = object_checks.finish(checked, frozenset(), scratch, watch.chunks())
    alone = object_checks.check_object(scratch / name, frozenset(), settings)
    assert not result.passed and result.kind == ErrorKind.object_rejected
    assert result.message == alone.message and "not available on Neoverse V2" in result.message
