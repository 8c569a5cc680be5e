"""Mutation operators over compiler assembly: every one-edit change of a baseline, by class.

Pure text work, deterministic: `candidates` lists every mutation of a listing in a fixed order,
and `pick` draws from them with a seeded generator, round-robin over the classes so that every
class is represented wherever the listing has a site for it. Both GNU (gcc: `bne`, bare
immediates) and LLVM (clang: `b.ne`, `#imm`) spellings are understood.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CLASSES = ("opcode", "immediate", "register", "deletion", "loop_bound", "branch", "condition")

# Mnemonics that are one slip apart: each is replaced by every other member of its group.
_GROUPS = [
    "add sub", "adds subs", "cmp cmn", "and orr eor bic", "ands bics", "orn eon", "mul mneg",
    "madd msub", "smaddl smsubl", "umaddl umsubl", "smull umull", "smull2 umull2",
    "smlal umlal smlsl", "smlal2 umlal2", "lsl lsr asr", "lslv lsrv asrv", "sxtw uxtw",
    "sxtb uxtb", "sxth uxth", "sbfx ubfx", "sbfiz ubfiz", "ldrsb ldrb", "ldrsh ldrh",
    "ldp ldnp", "stp stnp", "fadd fsub fmul", "fdiv fmul", "fmadd fmsub fnmadd fnmsub",
    "fmla fmls", "fmax fmin fmaxnm fminnm", "fmaxv fminv fmaxnmv fminnmv", "fmaxp fminp",
    "fmaxnmp fminnmp", "fabs fneg", "frinta frintn frintz frintm frintp frintx", "scvtf ucvtf",
    "fcvtzs fcvtzu fcvtas fcvtns", "fcmgt fcmge fcmeq", "fcmp fcmpe", "fcmuo fcmeq",
    "smax smin umax umin", "smaxv sminv umaxv uminv", "smaxp sminp umaxp uminp",
    "saddl uaddl ssubl", "saddl2 uaddl2", "saddw uaddw", "saddw2 uaddw2", "sshll ushll",
    "sshll2 ushll2", "sxtl uxtl", "sxtl2 uxtl2", "sadalp uadalp", "saddlp uaddlp", "sdot udot",
    "xtn sqxtn", "xtn2 sqxtn2", "cmgt cmge cmhi cmhs cmeq", "cmlt cmle", "bsl bit bif",
    "zip1 zip2 uzp1 uzp2 trn1 trn2", "abs neg", "sabd uabd", "mla mls",
    "csel csinc csinv csneg", "cset csetm", "cinc cneg", "whilelo whilels whilelt whilele",
    "incw decw", "incd decd", "inch dech", "incb decb", "ushr sshr", "usra ssra", "sqadd uqadd",
    "sqsub uqsub", "umov smov", "addp faddp", "addv uaddlv", "fcsel fcsel", "movi mvni",
    "fcvtl fcvtl2", "uzp1 uzp2", "ptrue pfalse", "fmaxnmv fmaxv", "ld1w ldnt1w", "st1w stnt1w",
]
SWAPS: dict[str, list[str]] = {}
for _group in _GROUPS:
    _names = _group.split()
    for _name in _names:
        SWAPS.setdefault(_name, [])
        SWAPS[_name] += [n for n in _names if n != _name and n not in SWAPS[_name]]

_NEGATE = {"eq": "ne", "ne": "eq", "hs": "lo", "lo": "hs", "cs": "cc", "cc": "cs", "mi": "pl",
           "pl": "mi", "vs": "vc", "vc": "vs", "hi": "ls", "ls": "hi", "ge": "lt", "lt": "ge",
           "gt": "le", "le": "gt"}  # fmt: skip
# One slip away: off by equality, or signed for unsigned.
_NEAR = {"gt": ["ge", "hi"], "ge": ["gt", "hs"], "lt": ["le", "lo"], "le": ["lt", "ls"],
         "hi": ["hs", "gt"], "hs": ["hi", "ge"], "cs": ["hi"], "lo": ["ls", "lt"],
         "cc": ["ls"], "ls": ["lo", "le"], "eq": ["ls", "ge"], "ne": ["hi", "lt"],
         "mi": ["lt", "le"], "pl": ["ge", "gt"], "vs": ["mi"], "vc": ["pl"]}  # fmt: skip
_SELECTS = {"csel", "csinc", "csinv", "csneg", "cset", "csetm", "cinc", "cneg", "cinv", "fcsel",
            "ccmp", "ccmn", "fccmp", "fccmpe"}  # fmt: skip
_COMPARES = {"cmp", "cmn", "subs", "adds", "tst", "ands"}
_MOVES = {"mov", "movz", "movk", "movn"}
_DATA = {".word": 32, ".long": 32, ".xword": 64, ".quad": 64, ".hword": 16, ".short": 16,
         ".byte": 8}  # fmt: skip

_COND_BRANCH = re.compile(r"^b\.?(eq|ne|hs|lo|cs|cc|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)$")
_INT = re.compile(r"(?<![\w.#])(#?)(-?(?:0x[0-9a-fA-F]+|\d+))(?![\w.])")
_FLOAT = re.compile(r"#(-?\d+\.\d+(?:e[-+]?\d+)?)")
_REG = re.compile(r"(?<![\w.])([xw])(\d+|zr)\b|(?<![\w.])([vqdshbz])(\d+)\b|(?<![\w.])(p)(\d+)\b")
_BANKS = {"x": "gpr", "w": "gpr", "v": "fp", "q": "fp", "d": "fp", "s": "fp", "h": "fp",
          "b": "fp", "z": "fp", "p": "pred"}  # fmt: skip
_BANK_SIZE = {"gpr": 31, "fp": 32, "pred": 16}


@dataclass(frozen=True)
class Mutation:
    cls: str  # one of CLASSES
    line: int  # 0-based line of the listing
    after: str | None  # the new line; None deletes it
    what: str  # short description: "fadd -> fsub", "#16 -> #17", "x9 -> x12", ...

    def apply(self, lines: list[str]) -> str:
        out = list(lines)
        if self.after is None:
            del out[self.line]
        else:
            out[self.line] = self.after
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Line:
    index: int
    text: str
    mnemonic: str  # "" for anything that is not an instruction
    operands: str  # the operand text, comment stripped
    head: str  # what precedes the operands (indentation + mnemonic + separator)


def parse(listing: str) -> list[Line]:
    out = []
    for i, text in enumerate(listing.splitlines()):
        code = text.split("//", 1)[0].rstrip()
        stripped = code.strip()
        if not stripped or stripped.endswith(":") or stripped.startswith(("#", "@")):
            out.append(Line(i, text, "", "", ""))
            continue
        m = re.match(r"(\s*)(\S+)(\s*)(.*)$", code)
        assert m is not None
        mnemonic = m[2].lower()
        if mnemonic.startswith(".") and mnemonic not in _DATA:
            mnemonic = ""
        out.append(Line(i, text, mnemonic, m[4], m[1] + m[2] + m[3]))
    return out


def _is_instruction(line: Line) -> bool:
    return bool(line.mnemonic) and not line.mnemonic.startswith(".")


def _fmt_int(value: int, like: str, hashed: str) -> str:
    text = hex(value) if like.lower().startswith(("0x", "-0x")) else str(value)
    if value < 0 and text.startswith("0x"):
        text = "-" + hex(-value)
    return hashed + text


def _bounds(params: dict[str, int]) -> set[int]:
    """Values a trip count, an end offset or a vector-rounded bound of the variant can take."""
    values: set[int] = set()
    for p in params.values():
        for step in (1, 2, 4, 8, 16, 32, 64):
            for base in (p, p - p % step):
                for size in (1, 2, 4, 8):
                    values |= {base * size, (base - 1) * size, base * size // step}
    return {v for v in values if v >= 8}


def _next_is_conditional(lines: list[Line], i: int) -> bool:
    seen = 0
    for line in lines[i + 1:]:
        if not _is_instruction(line):
            continue
        if _COND_BRANCH.match(line.mnemonic) or line.mnemonic in _SELECTS:
            return True
        seen += 1
        if seen >= 3:
            return False
    return False


def candidates(listing: str, params: dict[str, int]) -> list[Mutation]:
    """Every mutation of `listing`, in listing order (class by class within a line)."""
    lines = parse(listing)
    bounds = _bounds(params)
    used: dict[str, set[int]] = {"gpr": set(), "fp": set(), "pred": set()}
    for line in lines:
        if _is_instruction(line):
            for m in _REG.finditer(line.operands):
                letter, number = _reg_parts(m)
                if number.isdigit():
                    used[_BANKS[letter]].add(int(number))
    out: list[Mutation] = []
    for line in lines:
        if line.mnemonic in _DATA:
            out += _literal(line)
        elif _is_instruction(line):
            out += _opcode(line)
            out += _branch(line)
            out += _immediates(line, lines, bounds)
            out += _registers(line, used)
            out.append(Mutation("deletion", line.index, None, f"delete `{line.text.strip()}`"))
    return out


def _rebuild(line: Line, operands: str, mnemonic: str | None = None) -> str:
    head = line.head if mnemonic is None else line.head.replace(
        line.head.strip(), mnemonic, 1)
    return head + operands


def _opcode(line: Line) -> Iterator[Mutation]:
    for other in SWAPS.get(line.mnemonic, []):
        yield Mutation("opcode", line.index, _rebuild(line, line.operands, other),
                       f"{line.mnemonic} -> {other}")


def _branch(line: Line) -> Iterator[Mutation]:
    mn = line.mnemonic
    if m := _COND_BRANCH.match(mn):
        cond = m[1]
        dot = "." if "." in mn else ""
        for other in _alternatives(cond):
            yield Mutation("branch", line.index, _rebuild(line, line.operands, f"b{dot}{other}"),
                           f"{mn} -> b{dot}{other}")
    elif mn in ("cbz", "cbnz", "tbz", "tbnz"):
        other = {"cbz": "cbnz", "cbnz": "cbz", "tbz": "tbnz", "tbnz": "tbz"}[mn]
        yield Mutation("branch", line.index, _rebuild(line, line.operands, other),
                       f"{mn} -> {other}")
    elif mn in _SELECTS:
        ops = line.operands.split(",")
        cond = ops[-1].strip().lower()
        if cond in _NEGATE:
            for other in _alternatives(cond):
                new = ",".join([*ops[:-1], ops[-1].replace(ops[-1].strip(), other)])
                yield Mutation("condition", line.index, _rebuild(line, new),
                               f"{mn} {cond} -> {other}")


def _alternatives(cond: str) -> list[str]:
    return [_NEGATE[cond], *[c for c in _NEAR.get(cond, []) if c != _NEGATE[cond]]]


def _immediates(line: Line, lines: list[Line], bounds: set[int]) -> Iterator[Mutation]:
    ops = line.operands
    compare = line.mnemonic in _COMPARES and _next_is_conditional(lines, line.index)
    for m in _INT.finditer(ops):
        hashed, text = m[1], m[2]
        value = _int(text)
        is_bound = compare or (line.mnemonic in _MOVES and value in bounds)
        cls = "loop_bound" if is_bound else "immediate"
        news = [value + 1, value - 1, value + 16, value - 16] if is_bound else \
            [value + 1, value - 1, 0, 2 * value]
        for new in dict.fromkeys(n for n in news if n != value):
            after = ops[:m.start()] + hashed + _fmt_int(new, text, "") + ops[m.end():]
            yield Mutation(cls, line.index, _rebuild(line, after), f"{hashed}{text} -> "
                           f"{hashed}{new}")
    for m in _FLOAT.finditer(ops):
        value = float(m[1])
        for new in dict.fromkeys((2 * value, -value, value + 1.0)):
            after = ops[:m.start()] + f"#{new!r}" + ops[m.end():]
            yield Mutation("immediate", line.index, _rebuild(line, after),
                           f"#{m[1]} -> #{new!r}")


def _literal(line: Line) -> Iterator[Mutation]:
    bits = _DATA[line.mnemonic]
    m = _INT.fullmatch(line.operands.strip())
    if not m:
        return
    value = _int(m[2]) & ((1 << bits) - 1)
    for bit in dict.fromkeys((0, bits // 2, bits - 2, bits - 1)):
        new = value ^ (1 << bit)
        yield Mutation("immediate", line.index, _rebuild(line, str(new)),
                       f"literal {line.mnemonic} bit {bit} flipped")


def _int(text: str) -> int:
    """An integer as the assemblers write it (0x.., or decimal with leading zeros: movi #00)."""
    return int(text, 16) if text.lower().lstrip("-").startswith("0x") else int(text, 10)


def _reg_parts(m: re.Match[str]) -> tuple[str, str]:
    if m[1]:
        return m[1], m[2]
    if m[3]:
        return m[3], m[4]
    return m[5], m[6]


def _registers(line: Line, used: dict[str, set[int]]) -> Iterator[Mutation]:
    ops = line.operands
    for m in _REG.finditer(ops):
        letter, number = _reg_parts(m)
        bank = _BANKS[letter]
        current = 31 if number == "zr" else int(number)
        # One register the function uses elsewhere and one it never touches (an unwritten read).
        rng = random.Random(f"{line.index}:{m.start()}:{ops}")
        pools = [sorted(used[bank] - {current}),
                 sorted(set(range(_BANK_SIZE[bank])) - used[bank] - {current})]
        for pool in pools:
            if not pool:
                continue
            new = rng.choice(pool)
            start, end = (m.start(2), m.end(2)) if m[1] else (m.start(4), m.end(4)) if m[3] \
                else (m.start(6), m.end(6))
            after = ops[:start] + str(new) + ops[end:]
            yield Mutation("register", line.index, _rebuild(line, after),
                           f"{letter}{number} -> {letter}{new}")
        if bank == "gpr" and number != "zr" and letter in "xw":
            after = ops[:m.start(2)] + "zr" + ops[m.end(2):]
            yield Mutation("register", line.index, _rebuild(line, after),
                           f"{letter}{number} -> {letter}zr")


def pick(pool: list[Mutation], rng: random.Random,
         accept: Callable[[Mutation], bool], count: int) -> list[Mutation]:
    """Up to `count` accepted mutations: classes in turn (in CLASSES order), random within each.

    `accept` is asked in draw order (it assembles the mutant and rejects one that does not
    assemble or whose object is identical to the original's)."""
    by_class: dict[str, list[Mutation]] = {c: [] for c in CLASSES}
    for mutation in pool:
        by_class[mutation.cls].append(mutation)
    for group in by_class.values():
        rng.shuffle(group)
    order = list(CLASSES)
    rng.shuffle(order)
    chosen: list[Mutation] = []
    while len(chosen) < count and any(by_class.values()):
        for cls in order:
            while by_class[cls] and len(chosen) < count:
                mutation = by_class[cls].pop()
                if accept(mutation):
                    chosen.append(mutation)
                    break
    return chosen
