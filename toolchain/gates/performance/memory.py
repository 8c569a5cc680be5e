"""Dependencies through memory, which both cost models would otherwise not see.

llvm-mca assumes loads and stores never alias (and assuming they always do serialises every
streaming loop behind its own stores), and OSACA's dependency graph ignores memory too. So a value
passed through a stack slot (`str s0, [sp, #12]` ... `ldr s0, [sp, #12]`) would cut a dependency
chain for free: -O0 code would look as fast as -O3, and a policy could hide the latency of a
reduction by spilling its accumulator every iteration. Store-to-load forwarding costs several
cycles on Neoverse V2, never zero.

Within one loop cycle, an access through a base register that nothing in the cycle writes (sp,
the frame pointer, a pointer kept in a register) names a fixed slot (base, offset). A load from a
slot depends on the last store to it, earlier in the cycle or in the previous iteration. Accesses
through a base the cycle advances (streaming loops) are left alone: they touch new addresses
every iteration. Slots are tracked per byte offset for plain `ldr/str/ldur/stur/ldp/stp`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_ACCESS = re.compile(
    r"^(?P<op>ldr|ldur|str|stur|ldp|stp) (?P<regs>[^\[]+?), \[(?P<base>[a-z0-9]+)"
    r"(?:, #(?P<off>-?(?:0x[0-9a-f]+|\d+)))?\](?P<pre>!)?(?P<post>, #-?(?:0x[0-9a-f]+|\d+))?$")
_REGISTER = re.compile(r"\b([wxbhsdqvz])(\d+)\b|\b(sp|wsp)\b")
_WIDTH = {"w": 4, "x": 8, "b": 1, "h": 2, "s": 4, "d": 8, "q": 16}

Reg = tuple[str, str]  # ("r", "9") for w9/x9, ("v", "0") for b0..q0/v0/z0, ("r", "sp")
Slot = tuple[Reg, int]


def register(token: str) -> Reg | None:
    m = _REGISTER.fullmatch(token.strip())
    if not m:
        return None
    if m.group(3):
        return ("r", "sp")
    return ("r" if m.group(1) in "wx" else "v", m.group(2))


@dataclass(frozen=True)
class Access:
    store: bool
    pairs: tuple[tuple[Slot, Reg, str], ...]  # (slot, register, its prefix) per transferred reg


def access(text: str) -> Access | None:
    """The slots a plain load or store touches, or None for anything else."""
    m = _ACCESS.match(text)
    if not m:
        return None
    base = register(m.group("base"))
    regs = [r.strip() for r in m.group("regs").split(",")]
    if base is None or m.group("pre") or m.group("post") or not 1 <= len(regs) <= 2:
        return None
    offset = int(m.group("off") or "0", 0)
    pairs = []
    for i, token in enumerate(regs):
        reg = register(token)
        width = _WIDTH.get(token[:1])
        if reg is None or width is None:
            return None
        pairs.append(((base, offset + i * width), reg, token[:1]))
    return Access(m.group("op").startswith("st"), tuple(pairs))


def written(text: str) -> set[Reg]:
    """Registers an instruction writes, as far as slot tracking needs to know (conservative)."""
    mnemonic, _, rest = text.partition(" ")
    out: set[Reg] = set()
    if "]!" in rest or re.search(r"\], #", rest):  # write-back of the base
        m = re.search(r"\[([a-z0-9]+)", rest)
        reg = register(m.group(1)) if m else None
        if reg:
            out.add(reg)
    operands = [o.strip() for o in rest.split(",")]
    if mnemonic.startswith(("st", "b", "cb", "tb", "ret", "cmp", "cmn", "tst", "fcmp", "prfm")):
        return out
    count = 2 if mnemonic in ("ldp", "ldpsw", "ldnp", "ldaxp", "ldxp") else 1
    for token in operands[:count]:
        reg = register(token.split(".")[0].strip("{} "))
        if reg:
            out.add(reg)
    return out


def slot_dependencies(texts: Sequence[str]) -> list[Access | None]:
    """Per instruction of one cycle: its fixed-slot access, or None (module doc)."""
    moving = set().union(*(written(t) for t in texts)) if texts else set()
    out: list[Access | None] = []
    for text in texts:
        acc = access(text)
        if acc is not None and all(slot[0] not in moving for slot, _, _ in acc.pairs):
            out.append(acc)
        else:
            out.append(None)
    return out


def used_registers(texts: Sequence[str]) -> set[Reg]:
    found: set[Reg] = set()
    for text in texts:
        for m in _REGISTER.finditer(text):
            found.add(("r", "sp") if m.group(3) else
                      ("r" if m.group(1) in "wx" else "v", m.group(2)))
    return found
