"""A reproducible mix of distinct, realistic submissions for the benchmark suite (issue 8).

What a training run sends: mostly compiler output (clang and gcc at -O1/-O2/-O3/-Os over a spread
of small and medium variants of every template), some hand-optimised NEON kernels, wrong kernels
(compiler output with one plausible mistake) and a few hostile ones from the corpus under
tests/hostile/ (the cases named in HOSTILE_CASES) plus endless loops. Every item has its own
seed, so no two are the same attempt, and the whole mix depends only on `mix_seed` (and the
toolchain's compilers).

    .venv/bin/python -m bench.mix [--n 512] [--mix-seed 8]     print the mix's composition
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from toolchain import baselines, kernels
from toolchain.demo import DOT_1024_F32_NEON
from toolchain.settings import get_settings
from toolchain.verify import group_seed

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:  # test_hostile imports its helper as a top-level module
    sys.path.insert(0, str(TESTS_DIR))

from conftest import VEC_ADD_1024_BODY, asm  # noqa: E402
from test_hostile import CORPUS_DIR, Case, load_case  # noqa: E402

COMPILERS = baselines.COMPILERS
OPTS = ("-O1", "-O2", "-O3", "-Os")
# Share of each category in the mix; hostile takes what is left.
SHARES = {"compiler": 0.60, "hand": 0.10, "wrong": 0.20}
MAX_WORK = 1024  # product of a variant's shape parameters: small and medium sizes only
ENDLESS = asm("    b .")
# Caller-saved scratch registers a hand-written loop may count with (x0-x2 hold arguments).
COUNTERS = ("x3", "x4", "x5", "x6", "x7", "x9", "x10", "x11", "x12", "x13", "x14", "x15")


@dataclass(frozen=True)
class Submission:
    variant_id: str
    assembly: str
    seed: int
    label: str
    category: str  # compiler | hand | wrong | hostile

    def attempt(self, key: str | None = None) -> dict[str, object]:
        """The item as the API's /step and /batches take it."""
        body: dict[str, object] = {"variant_id": self.variant_id, "assembly": self.assembly,
                                   "seed": self.seed}
        return {**body, "idempotency_key": key} if key else body


# --------------------------------------------------------------------------- variants


def spread(count: int, rng: random.Random) -> list[kernels.Variant]:
    """`count` small or medium variants, round-robin over the templates, random within each."""
    by_template: dict[str, list[kernels.Variant]] = {}
    for v in kernels.suite():
        if math.prod(v.params.values()) <= MAX_WORK:
            by_template.setdefault(v.template, []).append(v)
    for group in by_template.values():
        rng.shuffle(group)
    order = sorted(by_template)
    picked: list[kernels.Variant] = []
    while len(picked) < count and any(by_template.values()):
        for template in order:
            if by_template[template] and len(picked) < count:
                picked.append(by_template[template].pop())
    return picked


def compiler_outputs(variants: list[kernels.Variant]) -> list[tuple[str, str, str]]:
    """(variant id, label, assembly) for every compiler and level, identical texts once."""
    settings = get_settings()
    baselines.build(variants, COMPILERS, OPTS, progress=True, settings=settings)
    out, seen = [], set()
    for v in variants:
        for compiler in COMPILERS:
            for opt in OPTS:
                text = baselines.get(v, compiler, opt, settings=settings).assembly
                if (v.id, text) not in seen:
                    seen.add((v.id, text))
                    out.append((v.id, f"{compiler} {opt}", text))
    return out


# --------------------------------------------------------------------------- hand-written


def _vec_add_q(n: int, counter: str) -> str:
    """The tests' one-vector-per-iteration NEON vec_add loop, for n floats."""
    body = VEC_ADD_1024_BODY.replace("#4096", f"#{4 * n}").replace("x3", counter)
    return asm(body + "    ret")


def _vec_add_ldp(n: int, counter: str) -> str:
    """Two vectors per iteration through ldp/stp (n a multiple of 8)."""
    return asm(f"""\
    mov     {counter}, #{n}
1:  ldp     q0, q1, [x1], #32
    ldp     q2, q3, [x2], #32
    fadd    v0.4s, v0.4s, v2.4s
    fadd    v1.4s, v1.4s, v3.4s
    stp     q0, q1, [x0], #32
    subs    {counter}, {counter}, #8
    b.ne    1b
    ret""")


def _dot_16(n: int, counter: str) -> str:
    """The demo's sixteen-partial-sum NEON dot product, for n floats (a multiple of 16)."""
    return DOT_1024_F32_NEON.replace("#1024", f"#{n}").replace("x2", counter)


def _dot_4(n: int, counter: str) -> str:
    """Four partial sums in one vector (n a multiple of 4)."""
    return asm(f"""\
    movi    v0.4s, #0
    mov     {counter}, #{n}
1:  ldr     q1, [x0], #16
    ldr     q2, [x1], #16
    fmla    v0.4s, v1.4s, v2.4s
    subs    {counter}, {counter}, #4
    b.ne    1b
    faddp   v0.4s, v0.4s, v0.4s
    faddp   s0, v0.2s
    ret""")


def _sum_8(n: int, counter: str) -> str:
    """Eight partial sums in two vectors (n a multiple of 8)."""
    return asm(f"""\
    movi    v0.4s, #0
    movi    v1.4s, #0
    mov     {counter}, #{n}
1:  ldp     q2, q3, [x0], #32
    fadd    v0.4s, v0.4s, v2.4s
    fadd    v1.4s, v1.4s, v3.4s
    subs    {counter}, {counter}, #8
    b.ne    1b
    fadd    v0.4s, v0.4s, v1.4s
    faddp   v0.4s, v0.4s, v0.4s
    faddp   s0, v0.2s
    ret""")


# (template, style, smallest multiple of n it handles, generator)
HAND: tuple[tuple[str, str, int, Callable[[int, str], str]], ...] = (
    ("vec_add", "NEON q loop", 4, _vec_add_q),
    ("vec_add", "NEON ldp/stp loop", 8, _vec_add_ldp),
    ("dot", "NEON 16 partial sums", 16, _dot_16),
    ("dot", "NEON 4 partial sums", 4, _dot_4),
    ("sum_reduce", "NEON 8 partial sums", 8, _sum_8),
)


def hand_written(rng: random.Random) -> list[tuple[str, str, str]]:
    """(variant id, label, assembly): every style at every float32 size up to MAX_WORK, each
    with a loop counter register drawn at random (models differ in such choices)."""
    out = []
    for template, style, multiple, make in HAND:
        for v in kernels.filter_variants(template, "float32"):
            n = v.params["n"]
            if n % multiple == 0 and n <= MAX_WORK:
                for counter in rng.sample(COUNTERS, 3):
                    out.append((v.id, f"hand: {style}", make(n, counter)))
    return out


# --------------------------------------------------------------------------- wrong


def _fadd_to_fsub(text: str) -> str:
    return text.replace("fadd", "fsub", 1)


def _double_bound(text: str) -> str:
    """A loop bound (first `cmp`/`mov`/`subs` immediate >= 8) doubled: the loop runs past its
    buffers but still ends, since a step that divides n also divides 2n."""
    m = re.search(r"^\s*(?:cmp|mov|subs)\s+[wx]\d+,\s*(?:[wx]\d+,\s*)?#(\d+)\s*$", text, re.M)
    if not m or int(m.group(1)) < 8:
        return text
    return text[:m.start(1)] + str(2 * int(m.group(1))) + text[m.end(1):]


def _drop_before_ret(text: str) -> str:
    """The last instruction before the first `ret` removed."""
    lines = text.splitlines()
    rets = [i for i, ln in enumerate(lines) if ln.strip() == "ret"]
    if not rets:
        return text
    before = [i for i in range(rets[0]) if re.match(r"\s+[a-z]", lines[i])
              and not lines[i].strip().startswith(".")]
    return text if not before else "\n".join(lines[:before[-1]] + lines[before[-1] + 1:]) + "\n"


def _ret_at_once(text: str) -> str:
    return re.sub(r"^kernel:\s*$", "kernel:\n    ret", text, count=1, flags=re.M)


MUTATIONS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("fadd -> fsub", _fadd_to_fsub),
    ("loop bound doubled", _double_bound),
    ("last instruction before ret dropped", _drop_before_ret),
    ("returns at once", _ret_at_once),
)


def wrong(pool: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Every mutation of every compiler output that changes it."""
    out = []
    for variant_id, label, text in pool:
        for what, mutate in MUTATIONS:
            changed = mutate(text)
            if changed != text:
                out.append((variant_id, f"wrong: {label}, {what}", changed))
    return out


# --------------------------------------------------------------------------- hostile


# The corpus cases the mix draws its hostile items from, by file name (tests/hostile/NAME.s), in
# this order. Named rather than globbed so that a case added to the corpus changes nothing here:
# a recording of the mix (bench.verdicts record) compares with one made on a checkout with more
# cases. These are the cases that fitted the mix (`unfit`) when the list was pinned; adding a
# name changes the mix from then on, as does editing a named case.
HOSTILE_CASES: tuple[str, ...] = (
    "01_svc_exit_stub", "02_hvc", "03_smc", "04_svc_inst", "05_svc_word_after_ret",
    "06_svc_in_macro", "07_svc_bytes", "08_svc_in_rodata", "09_hlt_brk",
    "13_include_after_label_upper", "18_macro_incbin_proc", "19_macro_include_passwd",
    "20_space_literal", "21_fill_literal", "22_rept_bomb", "23_nested_rept", "24_space_symbolic",
    "25_zero_symbolic_bss", "26_macro_recursion", "40_skip_register_capture",
    "41_return_to_harness_caller", "46_write_past_end", "47_write_before_start",
    "48_write_far_away", "50_write_const_input", "51_write_caller_frame", "52_clobber_x19",
    "53_clobber_d15", "54_clobber_sp", "55_clobber_x29", "56_clobber_x30", "57_clobber_fpcr",
    "58_store_to_text", "60_code_in_data", "61_sme_smstart", "62_sme_inst", "63_sme_mnemonic",
    "64_sme_arch_extension", "65_cycle_counter", "66_unallocated_word", "68_too_many_lines",
    "71_empty", "72_whitespace_only", "78_run_after_return", "82_saved_frame_pointer",
    "83_saved_callee_register", "84_harness_frames_above",
)


def unfit(case: Case, limit: int) -> str | None:
    """Why the mix cannot take a corpus case, None when it can: the API must accept it (UTF-8,
    no NUL, a known variant, under the size limit), it must need no host set-up (no
    placeholders), and it must not run away (each costs a timeout; `ENDLESS` stands for them)."""
    try:
        text = case.body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if "@" in text:
        return "has placeholders for host set-up"
    if "\x00" in text or len(case.body) > limit:
        return "the API refuses it (NUL or over the size limit)"
    if case.category == "infinite-loop" or case.expect.value == "timeout":
        return "runs away"
    try:
        kernels.get(case.variant)
    except KeyError:
        return f"unknown variant {case.variant!r}"
    return None


def hostile(variants: list[kernels.Variant], names: Iterable[str] = HOSTILE_CASES,
            corpus: Path = CORPUS_DIR) -> list[tuple[str, str, str]]:
    """The named corpus cases, each on its own variant, then again on the spread's variants.
    A named case that is gone or no longer fits stops the build: the mix would change."""
    limit = get_settings().max_source_bytes
    cases = []
    for name in names:
        path = corpus / f"{name}.s"
        if not path.is_file():
            raise SystemExit(f"bench.mix: hostile case {name!r} (HOSTILE_CASES) is gone: no "
                             f"{path}. Restore it, or drop its name, which changes the mix "
                             "(recordings of the old one no longer compare)")
        case = load_case(path)
        why = unfit(case, limit)
        if why:
            raise SystemExit(f"bench.mix: hostile case {name!r} (HOSTILE_CASES) no longer fits "
                             f"the mix: {why}")
        cases.append((case.variant, f"hostile: {case.title}", case.body.decode("utf-8")))
    out = list(cases)
    for v in variants:
        out += [(v.id, label, text) for _, label, text in cases]
    return out


def unpinned(corpus: Path = CORPUS_DIR) -> list[str]:
    """Corpus cases that would fit the mix but are not in HOSTILE_CASES (added since)."""
    limit, pinned = get_settings().max_source_bytes, set(HOSTILE_CASES)
    return [p.stem for p in sorted(corpus.glob("*.s"))
            if p.stem not in pinned and unfit(load_case(p), limit) is None]


# --------------------------------------------------------------------------- the mix


def _take(rng: random.Random, pool: list[tuple[str, str, str]], count: int,
          seen: set[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """`count` items of `pool` at random, none already `seen` (same variant and text)."""
    picked = []
    for item in rng.sample(pool, len(pool)):
        if len(picked) == count:
            break
        if (item[0], item[2]) not in seen:
            seen.add((item[0], item[2]))
            picked.append(item)
    if len(picked) < count:
        raise SystemExit(f"the mix needs {count} items of a kind, only {len(picked)} exist; "
                         "raise --variants")
    return picked


def build(n: int = 512, mix_seed: int = 8, variants: int = 48,
          endless: int = 2) -> list[Submission]:
    """The mix: n distinct submissions in a shuffled, reproducible order."""
    rng = random.Random(mix_seed)
    spread_variants = spread(variants, rng)
    compiled = compiler_outputs(spread_variants)
    counts = {kind: round(n * share) for kind, share in SHARES.items()}
    counts["hostile"] = n - sum(counts.values()) - endless
    seen: set[tuple[str, str]] = set()
    items: list[tuple[str, tuple[str, str, str]]] = []
    pools = {"compiler": compiled, "hand": hand_written(rng), "wrong": wrong(compiled),
             "hostile": hostile(spread_variants)}
    for kind, pool in pools.items():
        items += [(kind, it) for it in _take(rng, pool, counts[kind], seen)]
    loops = _endless_targets(spread_variants, endless)
    items += [("hostile", (v, "hostile: b . (endless loop)", ENDLESS)) for v in loops]
    rng.shuffle(items)
    seeds = rng.sample(range(1, 2**62), len(items))
    return [Submission(variant, text, seed, label, kind)
            for (kind, (variant, label, text)), seed in zip(items, seeds, strict=True)]


def reseeded(mix: list[Submission], salt: int) -> list[Submission]:
    """The same items with seeds of their own that no other pass used (the mix's are warmed)."""
    seeds = random.Random(salt).sample(range(1, 2**62), len(mix))
    return [replace(item, seed=seed) for item, seed in zip(mix, seeds, strict=True)]


BENCH_RUN = "bench-run"
BENCH_SECRET = "bench-seed-secret-not-a-deployment's"


def grouped(mix: list[Submission], size: int) -> list[Submission]:
    """The mix as a GRPO trainer with seed_scope='group' sends it: the items of each variant in
    groups of up to `size` (one group per step of that variant), each group sharing the seed
    the farm derives for (run, step, variant), a group's items next to each other."""
    by_variant: dict[str, list[Submission]] = {}
    for item in mix:
        by_variant.setdefault(item.variant_id, []).append(item)
    groups = [(variant, step, items[k:k + size])
              for variant, items in by_variant.items()
              for step, k in enumerate(range(0, len(items), size))]
    random.Random(len(mix)).shuffle(groups)  # groups in any order, as steps interleave
    return [replace(item, seed=group_seed(BENCH_RUN, step, variant, BENCH_SECRET))
            for variant, step, items in groups for item in items]


def _endless_targets(variants: Iterable[kernels.Variant], count: int) -> list[str]:
    return [v.id for v in list(variants)[:count]]


def composition(mix: list[Submission]) -> dict[str, int]:
    return dict(Counter(s.category for s in mix))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--mix-seed", type=int, default=8)
    parser.add_argument("--variants", type=int, default=48)
    args = parser.parse_args()
    mix = build(args.n, args.mix_seed, args.variants)
    print(composition(mix), f"{len({s.variant_id for s in mix})} variants")
    for label, count in Counter(s.label for s in mix).most_common():
        print(f"{count:5}  {label}")
    if extra := unpinned():
        print(f"corpus cases that fit but are not in HOSTILE_CASES: {', '.join(extra)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
