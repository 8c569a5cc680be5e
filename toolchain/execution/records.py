"""Parse the harness's binary records into arrays the comparison can work on."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..kernels.model import DType, Variant
from .harness import GUARD

TEST_MAGIC = 0x54534554
ABS_MAGIC = 0x53424154
INPUT_MAGIC = 0x54504E49  # "INPT": a test's pointer arguments before the call (harness mode D)
_REG_BYTES = 88 + 64 + 88 + 64 + 32 + 64 + 64

NP_DTYPE = {
    DType.float16: np.float16, DType.float32: np.float32, DType.float64: np.float64,
    DType.int8: np.int8, DType.int32: np.int32, DType.int64: np.int64, DType.uint32: np.uint32,
}


@dataclass
class Buffer:
    before: bytes  # guard zone below the buffer
    data: bytes
    after: bytes  # guard zone above the buffer


@dataclass
class Record:
    test: int
    ret: bytes  # the return value's bytes (x0 or v0, as wide as the return type)
    buffers: dict[str, Buffer]
    scalars: dict[str, bytes]  # each scalar argument's bytes, as the kernel received it
    canary_x: bytes
    canary_d: bytes
    after_x: bytes
    after_d: bytes
    sp_before: int
    sp_after: int
    fpcr_before: int
    fpcr_after: int
    stack_guard: bytes
    stack_after: bytes
    abs_ret: bytes = b""
    abs_outputs: dict[str, bytes] | None = None


class Truncated(Exception):
    """The stream ended inside a record: the kernel died or escaped before the test finished."""


def _ret_bytes(variant: Variant, x0: bytes, v0: bytes) -> bytes:
    ret = variant.signature.ret
    if ret is None:
        return b""
    return (v0 if ret.is_float else x0)[: ret.size]


def parse(variant: Variant, stream: bytes, with_abs: bool,
          first: int = 0) -> tuple[list[Record], bool]:
    """Records in order from test `first`; the flag says whether the stream ended cleanly."""
    args = [a for a in variant.signature.args if a.pointer]
    scalar_args = [a for a in variant.signature.args if not a.pointer]
    records: list[Record] = []
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(stream):
            raise Truncated
        chunk = stream[pos : pos + n]
        pos += n
        return chunk

    try:
        while pos < len(stream):
            magic, test = struct.unpack("<II", take(8))
            if magic != TEST_MAGIC or test != first + len(records):
                return records, False
            x0, v0 = take(8), take(16)
            scalars = {a.name: take(8)[: a.dtype.size] for a in scalar_args}
            buffers = {}
            for a in args:
                n = a.length * a.dtype.size
                buffers[a.name] = Buffer(take(GUARD), take(n), take(GUARD))
            regs = take(_REG_BYTES)
            sp_b, sp_a, fp_b, fp_a = struct.unpack("<4Q", regs[304:336])
            rec = Record(
                test, _ret_bytes(variant, x0, v0), buffers, scalars, regs[0:88], regs[88:152],
                regs[152:240], regs[240:304], sp_b, sp_a, fp_b, fp_a, regs[336:400],
                regs[400:464],
            )
            if with_abs:
                magic, atest = struct.unpack("<II", take(8))
                if magic != ABS_MAGIC or atest != test:
                    return records, False
                ax0, av0 = take(8), take(16)
                rec.abs_ret = _ret_bytes(variant, ax0, av0)
                rec.abs_outputs = {
                    a.name: take(a.length * a.dtype.size) for a in args if a.role != "in"
                }
            records.append(rec)
    except Truncated:
        return records, False
    return records, True


def split_inputs(variant: Variant, stream: bytes, test: int) -> tuple[bytes | None, bytes]:
    """(the INPT record's bytes for `test`, the records after it); None when it is missing."""
    size = sum(a.length * a.dtype.size + 2 * GUARD for a in variant.signature.args if a.pointer)
    if len(stream) < 8 + size or struct.unpack("<II", stream[:8]) != (INPUT_MAGIC, test):
        return None, stream
    return stream[8 : 8 + size], stream[8 + size :]
