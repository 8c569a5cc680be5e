"""The syntax gate: input limits, a directive screen, and GNU as run inside the sandbox.

Policy (§5.1, §6):

* Input: empty or whitespace-only text, bytes that are not UTF-8, NUL bytes, more bytes or lines
  than the settings allow are `input_rejected` before anything runs (toolchain/limits.py, the
  one check, which the API also calls to refuse some of them at the door).
* Directives: `.incbin` and `.include` read files, so they are `forbidden_directive` wherever they
  appear as a statement (after labels, after `;`, in any case, inside macro bodies too). The
  literal-size bloat directives `.fill .space .skip .zero .ds[.x] .dcb[.x]` are refused when
  their size is an integer literal expression above `MAX_LITERAL_FILL` (1 MiB); a size built from
  symbols is left to the object size limit. `.macro .rept .irp .irpc` are allowed (LLMs unroll
  with them); bombs built from them hit the assembler's time, memory and file-size budget, and a
  directive name spelled through macro substitution is the sandbox's job (it only sees an empty
  file system). `.arch .cpu .arch_extension` are allowed: gcc starts its output with
  `.arch armv9-a+crc+...`, and the instruction set is enforced on the assembled bytes instead.
* Assembler: no `--fatal-warnings` (benign warnings such as a truncated `.byte` value or changed
  section attributes must not fail honest code; the object gate judges the bytes), except that a
  warning about an UNPREDICTABLE encoding (e.g. `ldp x0, x0, [x1]`) is an error: what the
  emulator does with it says nothing about the hardware. `--noexecstack` is always passed.
* Errors come back as `{"line", "column", "message"}` with every absolute path removed; an error
  raised in text that is not kernel.s (an include built by a macro, `# N "file"` markers) is
  reported without its content, so no file the assembler can see leaks through a message.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import limits, sandbox
from ..errors import ErrorKind, GateName, InfraError
from ..settings import Settings
from ..tools import GAS_MARCH, tool
from ..verdict import DirectivesDetails, GateResult, SyntaxDetails

GATE = GateName.syntax.value
SOURCE_NAME = "kernel.s"
OBJECT_NAME = "kernel.o"
MAX_LITERAL_FILL = 1 << 20
FORBIDDEN_DIRECTIVES = frozenset({"incbin", "include"})
# GNU as element sizes of the .ds/.dcb families (x = 12-byte extended, p = packed decimal).
_UNIT = {"b": 1, "w": 2, "s": 4, "l": 4, "d": 8, "x": 12, "p": 12}
ASSEMBLER_MEMORY_MB = 512  # an honest 256 KiB source needs a few MiB; a .rept bomb dies at once
MAX_REPORTED_ERRORS = 100
MAX_MESSAGE_CHARS = 400
BUDGET_MESSAGE = "assembler exceeded its time/size budget"
WITHHELD_MESSAGE = "error in text that is not part of the submission (content withheld)"


# --------------------------------------------------------------------------- input limits


def check_input(text: str | bytes, settings: Settings) -> GateResult | None:
    """Refuse input no assembler run should be spent on (toolchain.limits, the check the API
    shares); None when the text may go on."""
    problem = limits.input_problem(text, settings)
    if problem is None:
        return None
    return GateResult.fail(GateName.input, ErrorKind.input_rejected, problem.message)


def decode_source(text: str | bytes) -> str:
    """The submission as text; only call after check_input accepted it."""
    return text if isinstance(text, str) else bytes(text).decode("utf-8")


# --------------------------------------------------------------------------- directive screen


@dataclass(frozen=True)
class Statement:
    """One assembler statement with comments blanked and string contents masked."""

    line: int  # 1-based
    column: int  # 1-based column of the statement's first character
    text: str


# Strings (masked), char literals, block and line comments, separators, and everything else.
_LEX = re.compile(
    r"(?P<hash>(?:(?<=\n)|\A)[ \t\f\v\r]*#[^\n]*)"
    r'|(?P<str>"(?:\\.|[^"\\\n])*"?)'
    r"|(?P<chr>'(?:\\.|[^\\\n])?)"
    r"|(?P<block>/\*.*?(?:\*/|\Z))"
    r"|(?P<line>//[^\n]*)"
    r"|(?P<sep>[;\n])"
    r"|(?P<other>[^\"'/;\n]+|/)",
    re.S,
)
# Labels before a statement, including ones spelled with macro arguments (`\name:`).
_LABELS = re.compile(r'\s*(?:(?:[^\s:"]+|"[^"]*")\s*::?\s*)*')
_DIRECTIVE = re.compile(r"\.([A-Za-z_][\w.$]*)")


def statements(text: str) -> list[Statement]:
    """Split source into statements as GNU as for AArch64 sees them.

    `//` and `/* */` are comments, `#` is a comment only as the first non-blank character of a
    line (outside a block comment), `;` and newline end a statement, and a `;` or `//` inside a
    string or char literal is text. Columns are preserved: comments become blanks and string
    bodies become `x`.
    """
    out: list[Statement] = []
    line, col, start_line, start_col = 1, 1, 1, 1
    parts: list[str] = []
    for m in _LEX.finditer(text):
        kind, tok = m.lastgroup, m.group(0)
        if kind == "sep":
            out.append(Statement(start_line, start_col, "".join(parts)))
            parts = []
            line, col = (line + 1, 1) if tok == "\n" else (line, col + 1)
            start_line, start_col = line, col
            continue
        newlines = tok.count("\n")
        if newlines:  # a block comment spanning lines ends the statement at its last line
            line, col = line + newlines, len(tok) - tok.rindex("\n")
            out.append(Statement(start_line, start_col, "".join(parts)))
            parts, start_line, start_col = [" " * (col - 1)], line, 1
        else:
            parts.append(_mask(kind, tok))
            col += len(tok)
    out.append(Statement(start_line, start_col, "".join(parts)))
    return [s for s in out if s.text.strip()]


def _mask(kind: str | None, tok: str) -> str:
    if kind == "str":
        return '"' + "x" * max(0, len(tok) - 2) + ('"' if len(tok) > 1 and tok[-1] == '"' else "x")
    if kind in ("block", "line", "hash"):
        return " " * len(tok)
    return tok


def directive_of(stmt: Statement) -> tuple[str, str, int] | None:
    """(lower-case name without the dot, argument text, 1-based column) of a directive statement."""
    labels = _LABELS.match(stmt.text)
    pos = labels.end() if labels else 0
    m = _DIRECTIVE.match(stmt.text, pos)
    if m is None:
        return None
    return m.group(1).lower(), stmt.text[m.end():], stmt.column + pos


def check_directives(text: str) -> GateResult | None:
    """Refuse directives that read files or bloat the output; None when there are none."""
    errors = [e for stmt in statements(text) if (e := _directive_error(stmt)) is not None]
    if not errors:
        return None
    first = errors[0]
    return GateResult.fail(
        GateName.directives, ErrorKind.forbidden_directive,
        _summary(errors), DirectivesDetails(errors=errors[:MAX_REPORTED_ERRORS],
                                            directive=first["directive"], line=first["line"]),
    )


def _directive_error(stmt: Statement) -> dict[str, Any] | None:
    found = directive_of(stmt)
    if found is None:
        return None
    name, args, column = found
    if name in FORBIDDEN_DIRECTIVES:
        why = "reads a file"
    else:
        size = _fill_size(name, args)
        if size is None or size <= MAX_LITERAL_FILL:
            return None
        why = f"emits {size} bytes (limit {MAX_LITERAL_FILL})"
    return {"line": stmt.line, "column": column, "directive": f".{name}",
            "message": f"directive .{name} is not allowed: it {why}"}


def _fill_size(name: str, args: str) -> int | None:
    """Bytes a bloat directive emits when its size is a literal expression, else None."""
    base, _, unit = name.partition(".")
    if base not in ("fill", "space", "skip", "zero", "ds", "dcb"):
        return None
    if base in ("fill", "space", "skip", "zero") and unit:
        return None
    width = _UNIT.get(unit or ("w" if base in ("ds", "dcb") else "b"))
    if width is None:
        return None
    fields = _split_args(args)
    count = _literal_int(fields[0]) if fields else None
    if count is None:
        return None
    if base == "fill" and len(fields) > 1:
        size = _literal_int(fields[1])
        width = min(max(size, 0), 8) if size is not None else 1
    return max(count, 0) * width


def _split_args(args: str) -> list[str]:
    depth, fields, cur = 0, [], []
    for ch in args:
        if ch == "," and depth == 0:
            fields.append("".join(cur))
            cur = []
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        cur.append(ch)
    fields.append("".join(cur))
    return [f.strip() for f in fields]


_INT = re.compile(r"0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9]\d*")
_OPS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}


def _literal_int(expr: str) -> int | None:
    """Evaluate an integer expression of literals and + - * / << >> ( ); None otherwise."""
    if not expr or not re.fullmatch(r"[\s\w()+\-*/<>]*", expr):
        return None
    py = _INT.sub(lambda m: str(_gas_int(m.group(0))), expr).replace("/", "//")
    try:
        tree = ast.parse(py, mode="eval")
        return _eval(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _gas_int(tok: str) -> int:
    if tok[:2] in ("0x", "0X", "0b", "0B"):
        return int(tok, 0)
    return int(tok, 8) if tok.startswith("0") else int(tok)


def _eval(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.LShift | ast.RShift) and not 0 <= right <= 64:
            raise ValueError("shift out of range")
        return _OPS[type(node.op)](left, right) & ((1 << 64) - 1)
    raise ValueError("not a literal expression")


# --------------------------------------------------------------------------- assembler


def assembler_argv() -> list[str]:
    """The exact assembler command; paths are relative to the sandbox's /work."""
    return [tool("as").path, f"-march={GAS_MARCH}", "--noexecstack",
            "-o", OBJECT_NAME, SOURCE_NAME]


def assembler_limits(settings: Settings) -> sandbox.Limits:
    """Budget of one assembler run: memory, CPU and an output-file cap near the object limit."""
    mib = 1024 * 1024
    return sandbox.Limits(
        cpu_seconds=max(1, math.ceil(settings.assemble_timeout_s)) + 1,
        address_space_mb=min(ASSEMBLER_MEMORY_MB, settings.memory_limit_mb),
        file_size_mb=math.ceil(settings.max_object_bytes / mib) + 1,
    )


def assemble(
    text: str, scratch: Path, settings: Settings
) -> tuple[GateResult, Path | None]:
    """Assemble `text` as kernel.s in `scratch` under the sandbox; the object on success.
    Untimed: pipeline.run times every gate, in one place."""
    scratch = Path(scratch)
    argv = assembler_argv()  # raises InfraError when GNU as is missing
    source, obj = scratch / SOURCE_NAME, scratch / OBJECT_NAME
    obj.unlink(missing_ok=True)
    source.write_text(text, encoding="utf-8")
    run = sandbox.run(argv, scratch, timeout_s=settings.assemble_timeout_s,
                      limits=assembler_limits(settings), settings=settings)
    stderr = run.stderr.decode("utf-8", "replace")
    _raise_if_sandbox_broken(run, stderr)
    if run.timed_out or _out_of_budget(run, stderr):
        budget = [{"line": 0, "column": 0, "message": BUDGET_MESSAGE}]
        return _fail(Diagnostics(budget, [], 1)), None
    diag = parse_messages(stderr, text)
    if run.returncode != 0 and not diag.errors:
        diag.errors, diag.error_count = [{"line": 0, "column": 0,
                                          "message": _crash_message(run.returncode)}], 1
    if diag.errors:
        return _fail(diag), None
    if not obj.is_file():
        raise InfraError("GNU as reported success but wrote no object")
    return GateResult(GATE, True, details=_details(diag, object_bytes=obj.stat().st_size)), obj


def _details(diag: Diagnostics, **fields: Any) -> SyntaxDetails:
    """The gate's details, with the warnings only when there are any."""
    return SyntaxDetails.model_validate(
        {**fields, **({"warnings": diag.warnings} if diag.warnings else {})})


def _raise_if_sandbox_broken(run: sandbox.RunResult, stderr: str) -> None:
    """bwrap failing to start the tool is ours to fix, never the submission's fault."""
    if run.returncode != 0 and stderr.startswith("bwrap:") and SOURCE_NAME not in stderr:
        raise InfraError(f"sandbox failed to run the assembler: {sanitize(stderr.strip())}")


def _out_of_budget(run: sandbox.RunResult, stderr: str) -> bool:
    killed = run.signal is not None or run.returncode > 128  # bwrap exits 128+signal
    return killed and _signal_of(run.returncode) in _BUDGET_SIGNALS or "out of memory" in stderr


_BUDGET_SIGNALS = frozenset({9, 24, 25})  # SIGKILL, SIGXCPU, SIGXFSZ


def _signal_of(returncode: int) -> int:
    return -returncode if returncode < 0 else returncode - 128


def _crash_message(returncode: int) -> str:
    if returncode < 0 or returncode > 128:
        return f"assembler crashed on this input (signal {_signal_of(returncode)})"
    return f"assembler failed (exit status {returncode})"


def _fail(diag: Diagnostics) -> GateResult:
    message = _summary(diag.errors, diag.error_count)
    return GateResult(GATE, False, ErrorKind.assemble_error, message,
                      _details(diag, errors=diag.errors))


def _summary(errors: list[dict[str, Any]], count: int | None = None) -> str:
    first = errors[0]
    where = f"line {first['line']}, column {first['column']}: " if first["line"] else ""
    more = (count if count is not None else len(errors)) - 1
    return f"{where}{first['message']}" + (f" (and {more} more)" if more > 0 else "")


# --------------------------------------------------------------------------- messages

_MESSAGE = re.compile(r"^(?P<file>.*?):(?:(?P<line>\d+):)?\s*(?P<level>Error|Warning|Fatal error):"
                      r"\s*(?P<msg>.*)$")
_ABS_PATH = re.compile(r"(?<![\w.)\]}])/(?:[\w.+\-@]+/)*[\w.+\-@]+/?")


def sanitize(message: str) -> str:
    """Drop the sandbox's /work/ prefix and replace any other absolute path with <path>."""
    message = message.replace(f"{sandbox.SANDBOX_ROOT}/", "")
    message = _ABS_PATH.sub("<path>", message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return message


@dataclass
class Diagnostics:
    """GNU as's messages: the first MAX_REPORTED_ERRORS of each level, and how many errors."""

    errors: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    error_count: int


def parse_messages(stderr: str, source: str) -> Diagnostics:
    """GNU as diagnostics, each {"line", "column", "message"}.

    UNPREDICTABLE-encoding warnings count as errors. Diagnostics from any file other than
    kernel.s are collapsed into one withheld entry so no other file's text is echoed. Columns
    are only worked out for reported entries, so a flood of errors costs no more than the cap.
    """
    lines = source.split("\n")
    seen: dict[int, _SourceLine] = {}
    out = Diagnostics([], [], 0)
    withheld = False
    for raw in stderr.splitlines():
        m = _MESSAGE.match(raw)
        if m is None:
            continue
        is_error = m["level"] != "Warning" or "unpredictable" in m["msg"].lower()
        if Path(m["file"]).name != SOURCE_NAME or (m["file"] != SOURCE_NAME and m["line"]):
            withheld = withheld or is_error
            continue
        out.error_count += is_error
        bucket = out.errors if is_error else out.warnings
        if len(bucket) < MAX_REPORTED_ERRORS:
            bucket.append(_entry(int(m["line"] or 0), m["msg"], lines, seen))
    if withheld:
        out.errors.append({"line": 0, "column": 0, "message": WITHHELD_MESSAGE})
        out.error_count += 1
    return out


def _entry(line: int, msg: str, lines: list[str], seen: dict[int, _SourceLine]) -> dict[str, Any]:
    column = 0
    if line:
        text = lines[line - 1] if line <= len(lines) else ""
        if line not in seen:
            seen[line] = _SourceLine(text)
        column = _column(seen[line], msg)
    return {"line": line, "column": column, "message": sanitize(msg)}


class _SourceLine:
    """A source line with whitespace squeezed out; successive errors on it are searched for left
    to right (GNU as reports the statements of a line in order)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.index = [i for i, ch in enumerate(text) if not ch.isspace()]
        self.hay = "".join(text[i] for i in self.index).lower()
        self.cursor = 0  # index into hay where the next statement search starts

    def find(self, needle: str, advance: bool = False) -> int | None:
        squeezed = "".join(needle.split()).lower()
        if not squeezed:
            return None
        at = self.hay.find(squeezed, self.cursor)
        if at < 0:
            at = self.hay.find(squeezed)
        if at < 0:
            return None
        if advance:
            self.cursor = at + 1
        return self.index[at]


_STATEMENT_ECHO = re.compile(r" -- `(.*)'$")
_QUOTED = re.compile(r"`([^`']+)'")
_OPERAND = re.compile(r"at operand (\d+)")


def error_column(line: str, msg: str) -> int:
    """1-based column of what the message points at within the source line.

    The statement GNU as echoes after ` -- ` (whitespace squeezed, mnemonic lower-cased) is
    found in the line; "at operand N" moves to that operand. Otherwise the first quoted text
    of the message is looked for, and failing that the first non-blank character is used.
    """
    return _column(_SourceLine(line), msg)


def _column(src: _SourceLine, msg: str) -> int:
    echo = _STATEMENT_ECHO.search(msg)
    if echo:
        pos = src.find(echo.group(1), advance=True)
        if pos is not None:
            operand = _OPERAND.search(msg)
            if operand:
                pos = _operand_start(src.text, pos, int(operand.group(1)))
            return pos + 1
    for quoted in _QUOTED.findall(_STATEMENT_ECHO.sub("", msg)):
        pos = src.find(quoted)
        if pos is not None:
            return pos + 1
    return src.index[0] + 1 if src.index else 1


def _operand_start(line: str, stmt_start: int, operand: int) -> int:
    """Start of operand N (1-based) of the statement at stmt_start, or its end when absent."""
    i, n = stmt_start, len(line)
    while i < n and not line[i].isspace():
        i += 1  # the mnemonic
    depth, current = 0, 1
    while i < n and line[i] in " \t":
        i += 1
    end = i
    while i < n and line[i] != ";" and not line.startswith("//", i):
        ch = line[i]
        if current == operand and not ch.isspace():
            return i
        depth += {"[": 1, "{": 1, "(": 1, "]": -1, "}": -1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            current += 1
        if not ch.isspace():
            end = i + 1
        i += 1
    return end
