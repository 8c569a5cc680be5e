"""Per-variant harness and C reference executables, built once and cached on disk.

The harness object (generic runtime + the variant's argument table) is linked with each
candidate object; the same runtime (with reference_server.c's serve mode around it, which the
candidate's harness never holds) linked with the variant's own C, compiled at -O0 with
-ffp-contract=off, is the reference that produces the expected records.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import tools
from ..errors import InfraError
from ..kernels.model import DType, Variant
from ..settings import Settings
from . import place

RUNTIME_C = Path(__file__).with_name("harness_runtime.c")
# The reference's entry point: the same runtime with a serve mode (reference_server.py), compiled
# into reference.elf only, so the harness a candidate runs in is the runtime alone.
SERVER_C = Path(__file__).with_name("reference_server.c")
GUARD = 256
# Tests 0-9 and 20-30 are fixed (harness_runtime.c makes their inputs), 10-19 random.
RANDOM_TESTS = range(10, 20)
_DT = {
    DType.float16: "F16", DType.float32: "F32", DType.float64: "F64", DType.int8: "I8",
    DType.int32: "I32", DType.int64: "I64", DType.uint32: "U32",
}
_ROLE = {"in": 0, "out": 1, "inout": 2}
HARNESS_CFLAGS = ("-O2", "-fwrapv", "-ffp-contract=off", "-mcpu=demeter", "-std=gnu11")
REFERENCE_CFLAGS = ("-O0", "-fwrapv", "-ffp-contract=off", "-mcpu=demeter")
# harness.o is prelinked with the C runtime and libraries (the variant's math functions kept),
# so each candidate's link resolves nothing from archives: about a quarter of ld's time.
PRELINK = "prelink-v1"


def overflow_safe(variant: Variant) -> bool:
    """Outputs that sum terms get inputs whose sums cannot overflow finitely: whether such a
    sum overflows depends on the summation order, which the tolerance deliberately leaves free."""
    return variant.reduction or variant.tolerance.terms > 0


def narrow_tests(variant: Variant) -> bool:
    """Tests 28-29 (values a narrower float cannot hold, of one sign) suit sums of products and
    element-wise maps. Normalisations and outputs through a library function get random values
    there instead: with inputs of one sign they cancel (x - mean, y + beta), which the
    tolerance's magnitude (the C on |inputs|) does not see, so honest code would fail."""
    return variant.tolerance.ulps == 0


#: Templates whose result is one selected element (softmax_numer: the maximum it subtracts),
#: and which way the extreme lies.
SELECTIONS = {"max_reduce": 1, "argmax": 1, "min_reduce": -1, "softmax_numer": 1}
#: Fixed tests 0-30 (compare.TEST_NAMES); a selection's position tests follow them, then the
#: outcome-pairs tests of OUTCOME_LANES templates.
BASE_TESTS = 31
#: Bytes a vectorised selection's main loop covers per iteration, at most: four 128-bit
#: accumulators (clang and gcc -O3 for every element type).
UNROLL_BYTES = 64
#: Up to this many elements clang unrolls a selection completely (max_reduce float32 at n = 64,
#: int32 at n = 512: every element its own load and compare), so every position is its own class.
FULLY_UNROLLED = 512


def selection_positions(variant: Variant) -> tuple[int, ...]:
    """Where the position tests of a selection put its unique extreme, one test each.

    A lost accumulator, lane or block (a deleted max in the reduction tree, a wrong load offset,
    a loop that ends one block early) drops every position of one residue class modulo the
    elements per iteration (p = 64 / element size at most), or one position of the tail. The
    last 2p positions hold the main loop's last iteration as long as the tail after it is at
    most p elements, and every tail position, so each such class is decisive in one test; the
    first vector (and one more) covers a peeled head. Arrays a compiler may unroll completely
    (at most FULLY_UNROLLED elements) get every position."""
    if variant.template not in SELECTIONS:
        return ()
    n, size = variant.params["n"], variant.dtype.size
    lanes, period = 16 // size, UNROLL_BYTES // size
    if n <= FULLY_UNROLLED:
        return tuple(range(n))
    return (*range(lanes + 1), *range(n - 2 * period, n))


#: Up to this many elements a compiler may unroll a selection into a chain of compares with one
#: branch per element (gcc -O3 at n = 17): each element is then loaded on two paths, after an
#: update of the running extreme and after none, so each position gets a second test.
BRANCHY_UNROLLED = 64


def approach_positions(variant: Variant) -> tuple[int, ...]:
    """Where the second position tests of a short selection put its extreme: the same design,
    except that the elements before it approach it strictly (each one a new running extreme), so
    the extreme is reached through the path that follows an update."""
    if variant.template not in SELECTIONS or variant.params["n"] > BRANCHY_UNROLLED:
        return ()
    return tuple(range(variant.params["n"]))


def position_tests(variant: Variant) -> tuple[int, ...]:
    """Every position test's position, in test order (the approached ones after the others)."""
    return (*selection_positions(variant), *approach_positions(variant))


def test_count(variant: Variant, settings: Settings) -> int:
    """Tests per attempt: the settings' count, plus a selection's position tests and the
    outcome-pairs tests when that count includes every fixed family (a reduced count, in some
    tests, runs neither)."""
    tests = settings.tests_per_attempt
    if tests < BASE_TESTS:
        return tests
    return tests + len(position_tests(variant)) + outcome_pair_tests(variant)


#: Templates whose C gives NaN an outcome of its own (quantize: 0 among -128, 127 and the
#: rounded value; relu: 0): their halves test mixes NaN into the halves and saturation bounds,
#: so each outcome sits next to every other in every lane.
NAN_OUTCOME = {"quantize", "relu"}
#: Templates whose float input maps to a few outcomes (quantize: NaN -> 0, -128, 127, rounded)
#: and whose narrow-float test 28 says nothing (every such integer saturates): test 28 puts the
#: outcomes in a bit-sliced pattern instead, so any two lanes of a 16-element group hold NaN
#: and another outcome in some group (a lane-mixing shuffle or mask shows), and the outcome-pairs
#: tests follow the position tests.
OUTCOME_LANES = {"quantize"}
#: Elements of one group (an int8 output vector) and groups of the outcome-pairs design: each lane
#: holds its own 3-subset of six marks, and group (k, o) makes NaN the lanes whose subset holds
#: mark k and gives the others outcome o (of 3). Two lanes' subsets differ, so each holds a mark
#: the other lacks: every ordered pair of lanes meets NaN in the first beside each outcome in the
#: second, which test 28 gives in one direction only (a not-NaN mask of the wrong lanes showed).
OUTCOME_GROUP = 16
OUTCOME_PAIR_GROUPS = 18


def outcome_groups_per_test(variant: Variant) -> int:
    """Design groups one outcome-pairs test holds: the array's whole groups (at least one)."""
    return max(1, variant.params["n"] // OUTCOME_GROUP)


def outcome_pair_tests(variant: Variant) -> int:
    """Outcome-pairs tests: as many as hold the whole design (one from n = 288, three at
    n = 100, eighteen at n = 16)."""
    if variant.template not in OUTCOME_LANES:
        return 0
    return -(-OUTCOME_PAIR_GROUPS // outcome_groups_per_test(variant))



def variant_header(variant: Variant) -> str:
    rows = ",\n    ".join(
        f"{{{_DT[a.dtype]}, {int(a.pointer)}, {a.length}, {_ROLE[a.role]}}}"
        for a in variant.signature.args
    )
    positions = selection_positions(variant)
    approach = approach_positions(variant)
    pairs = outcome_pair_tests(variant)
    return (
        f"/* {variant.id} */\n"
        f"#define NARGS {len(variant.signature.args)}\n"
        f"#define REDUCTION {int(overflow_safe(variant))}\n"
        f"#define NARROW_TESTS {int(narrow_tests(variant))}\n"
        f"#define SELECT_SIGN {SELECTIONS.get(variant.template, 0)}\n"
        f"#define NPOS {len(positions)}\n"
        f"static const int POSITIONS[{max(1, len(positions))}] = "
        f"{{{', '.join(map(str, positions)) or '0'}}};\n"
        f"#define NAPPROACH {len(approach)}\n"
        f"#define NAN_OUTCOME {int(variant.template in NAN_OUTCOME)}\n"
        f"#define OUTCOME_LANES {int(variant.template in OUTCOME_LANES)}\n"
        f"#define NOUTCOME {pairs}\n"
        f"#define OUTCOME_PER_TEST {outcome_groups_per_test(variant) if pairs else 1}\n"
        "void kernel(void);\n"
        f"static const struct arg ARGS[NARGS] = {{\n    {rows}\n}};\n"
    )


@dataclass(frozen=True)
class Harness:
    variant_id: str
    object: Path  # harness.o, prelinked: link with a candidate object, runtime=False
    reference: Path  # the C reference linked with the same harness
    slotted: Path  # harness.o linked with place.SLOT_SOURCE: what a candidate is placed into


def _compile(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise InfraError(f"building {what} failed: {proc.stderr.strip()[-2000:]}")


_FINGERPRINTS: dict[tuple[str, str, str], str] = {}


def _fingerprint(variant: Variant) -> str:
    """What the harness build depends on, hashed once per process and variant (an attempt asks
    for its harness several times; the sources and tools do not change under a process)."""
    header = variant_header(variant)
    key = (variant.id, variant.c_source, header)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = tools.fingerprint(
            RUNTIME_C.read_bytes(), SERVER_C.read_bytes(), header, variant.c_source,
            tools.tool("gcc").version, tools.tool("ld").version, " ".join(HARNESS_CFLAGS),
            " ".join(REFERENCE_CFLAGS), PRELINK, tools.tool("as").version, place.SLOT_SOURCE,
        )[:16]
    return _FINGERPRINTS[key]


def _publish(src: Path, dest: Path) -> None:
    """Atomic rename, so concurrent workers building the same harness never see half a file."""
    os.chmod(src, 0o755)
    os.replace(src, dest)


_BUILT: dict[Path, Harness] = {}


def build(variant: Variant, settings: Settings) -> Harness:
    out_dir = settings.cache_dir / "harness" / f"{variant.id}-{_fingerprint(variant)}"
    if out_dir in _BUILT:
        return _BUILT[out_dir]
    harness_o, reference = out_dir / "harness.o", out_dir / "reference.elf"
    slotted = out_dir / "slotted.elf"
    if not (harness_o.exists() and reference.exists() and slotted.exists()):
        _build_into(variant, out_dir, settings)
    _BUILT[out_dir] = Harness(variant.id, harness_o, reference, slotted)
    return _BUILT[out_dir]


def _build_into(variant: Variant, out_dir: Path, settings: Settings) -> None:
    harness_o, reference = out_dir / "harness.o", out_dir / "reference.elf"
    out_dir.mkdir(parents=True, exist_ok=True)
    for parent in [out_dir, *out_dir.parents]:
        if parent == settings.cache_dir.parent:
            break
        os.chmod(parent, 0o755)  # the sandboxed linker runs as an unprivileged user
    gcc = tools.tool("gcc").path
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "harness_variant.h").write_text(variant_header(variant))
        (tmp / "reference.c").write_text(variant.c_source)
        _compile([gcc, *HARNESS_CFLAGS, "-I", str(tmp), "-c", str(RUNTIME_C), "-o",
                  str(tmp / "runtime.o")], f"harness for {variant.id}")
        _compile([gcc, *HARNESS_CFLAGS, "-I", str(tmp), "-c", str(SERVER_C), "-o",
                  str(tmp / "server.o")], f"reference runtime for {variant.id}")
        _compile([gcc, *REFERENCE_CFLAGS, "-c", str(tmp / "reference.c"), "-o",
                  str(tmp / "reference.o")], f"reference for {variant.id}")
        _compile(tools.link_argv([str(tmp / "server.o"), str(tmp / "reference.o")],
                                 str(tmp / "reference.elf")), f"reference link for {variant.id}")
        _compile(tools.prelink_argv([str(tmp / "runtime.o")], str(tmp / "harness.o"),
                                    list(variant.math_functions)), f"harness for {variant.id}")
        (tmp / "slot.s").write_text(place.SLOT_SOURCE)
        _compile([tools.tool("as").path, "-o", str(tmp / "slot.o"), str(tmp / "slot.s")],
                 f"harness slots for {variant.id}")
        _compile(tools.link_argv([str(tmp / "harness.o"), str(tmp / "slot.o")],
                                 str(tmp / "slotted.elf"), runtime=False, keep_relocs=True),
                 f"slotted harness for {variant.id}")
        _publish(tmp / "slotted.elf", out_dir / "slotted.elf")
        _publish(tmp / "harness.o", harness_o)
        _publish(tmp / "reference.elf", reference)
