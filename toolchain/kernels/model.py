"""Data model of the kernel suite: what a variant is and how its function is called.

The signature is machine-readable so that the harness generator, the API and trainers can
all call a kernel without parsing C.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Literal


class DType(str, Enum):
    """Element types of the suite; the value is the name used in variant ids."""

    float16 = "float16"
    float32 = "float32"
    float64 = "float64"
    int8 = "int8"
    int32 = "int32"
    int64 = "int64"
    uint32 = "uint32"

    @property
    def c_type(self) -> str:
        return _C_TYPES[self]

    @property
    def size(self) -> int:
        return _SIZES[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.float16, DType.float32, DType.float64)


_C_TYPES = {
    DType.float16: "_Float16",
    DType.float32: "float",
    DType.float64: "double",
    DType.int8: "int8_t",
    DType.int32: "int32_t",
    DType.int64: "int64_t",
    DType.uint32: "uint32_t",
}
_SIZES = {
    DType.float16: 2,
    DType.float32: 4,
    DType.float64: 8,
    DType.int8: 1,
    DType.int32: 4,
    DType.int64: 8,
    DType.uint32: 4,
}

Role = Literal["in", "out", "inout"]


@dataclass(frozen=True)
class Arg:
    """One parameter of `kernel`: a pointer to `length` elements, or a scalar (length 0)."""

    name: str
    dtype: DType
    pointer: bool
    length: int = 0
    role: Role = "in"

    def c_decl(self) -> str:
        if not self.pointer:
            return f"{self.dtype.c_type} {self.name}"
        const = "const " if self.role == "in" else ""
        return f"{const}{self.dtype.c_type} *restrict {self.name}"


@dataclass(frozen=True)
class Signature:
    """`ret_c_type` overrides the spelling of the return type in C (popcount returns `unsigned`,
    the same type as `uint32_t` on AArch64); machine-readable consumers use `ret`."""

    args: tuple[Arg, ...]
    ret: DType | None = None
    ret_c_type: str | None = None

    def c_prototype(self, name: str = "kernel") -> str:
        ret = self.ret_c_type or (self.ret.c_type if self.ret else "void")
        return f"{ret} {name}({', '.join(a.c_decl() for a in self.args)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "args": [
                {
                    "name": a.name,
                    "kind": "pointer" if a.pointer else "scalar",
                    "dtype": a.dtype.value,
                    "length": a.length,
                    "role": a.role,
                }
                for a in self.args
            ],
            "return": self.ret.value if self.ret else None,
        }


@dataclass(frozen=True)
class Tolerance:
    """How far a float output may be from the C reference, in units of the dtype's roundoff.

    An output passes when |candidate - reference| <= factor * u * (|ref| + magnitude), where u is
    the unit roundoff and `magnitude` is the reference kernel's output on |inputs| (for a sum of
    products that is exactly sum |terms|, the quantity the classic bound for summation in any
    order is proportional to). `factor` is 2 * terms + 2 for a reduction over `terms` elements
    (any association order, fused or separate multiply-add) plus `ulps` for outputs that pass
    through a math-library function. Integers and strict float outputs (plain element-wise
    arithmetic) compare bit for bit, sign of zero included; NaN matches NaN of any payload.
    """

    terms: int = 0
    ulps: int = 0
    contract: bool = False  # an output is a multiply-add the compiler may fuse

    @property
    def strict(self) -> bool:
        """No reassociation, fusion or library call: the bits must match, sign of zero included."""
        return self.terms == 0 and self.ulps == 0 and not self.contract

    @property
    def factor(self) -> float:
        return 0.0 if self.strict else 2.0 * self.terms + 2.0 + self.ulps


@dataclass(frozen=True)
class Variant:
    id: str
    template: str
    params: dict[str, int]
    dtype: DType
    c_source: str
    signature: Signature
    difficulty: int
    split: Literal["train", "eval"]
    tolerance: Tolerance = field(default_factory=Tolerance)
    math_functions: tuple[str, ...] = ()
    reduction: bool = False

    def to_json(self, with_source: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variant_id": self.id,
            "template": self.template,
            "params": dict(self.params),
            "dtype": self.dtype.value,
            "signature": self.signature.to_json(),
            "difficulty": self.difficulty,
            "split": self.split,
            "tolerance": asdict(self.tolerance),
            "math_functions": list(self.math_functions),
        }
        if with_source:
            out["c_source"] = self.c_source
        return out
