"""The closed set of error kinds a verdict can carry.

Trainers key on these strings, so they never change meaning; `infra_error` marks a verdict that
says nothing about the model and must be dropped, not scored.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    format_error = "format_error"
    input_rejected = "input_rejected"
    unknown_variant = "unknown_variant"
    forbidden_directive = "forbidden_directive"
    assemble_error = "assemble_error"
    object_rejected = "object_rejected"
    link_error = "link_error"
    crash = "crash"
    timeout = "timeout"
    wrong_output = "wrong_output"
    abi_violation = "abi_violation"
    memory_violation = "memory_violation"
    input_modified = "input_modified"
    cross_check_disagreement = "cross_check_disagreement"
    infra_error = "infra_error"


ERROR_KIND_DOCS: dict[ErrorKind, str] = {
    ErrorKind.format_error: "a raw completion had no single well-formed "
    "<assembly>...</assembly> block",
    ErrorKind.input_rejected: "empty, oversized, non-UTF-8 or NUL-containing submission",
    ErrorKind.unknown_variant: "the variant id is not in the suite",
    ErrorKind.forbidden_directive: "a directive that reads files or bloats output "
    "(.incbin, .include, ...)",
    ErrorKind.assemble_error: "GNU as rejected the text (line, column and message are returned)",
    ErrorKind.object_rejected: "the assembled object breaks a rule: symbols, sections, size, "
    "system-call or halting instructions, instructions Neoverse V2 lacks",
    ErrorKind.link_error: "the object could not be linked with the harness",
    ErrorKind.crash: "the kernel died with a signal (bad address, illegal instruction, ...)",
    ErrorKind.timeout: "the kernel exceeded its instruction or time budget",
    ErrorKind.wrong_output: "an output differs from the C reference beyond the documented bound",
    ErrorKind.abi_violation: "a callee-saved register (x19-x29, sp, d8-d15) or FPCR "
    "was not restored; code outside the kernel's text and its allowed math functions ran "
    "during a test, the kernel's code ran outside a call, or it made a system call (the "
    "execution guard); or, in the timing run, a tampered trace",
    ErrorKind.memory_violation: "a write landed in a guard zone around an output buffer, in "
    "the caller's frame (the stack guard, or the harness's stack above it: saved registers and "
    "return addresses), or in the harness's or libc's data (the execution guard)",
    ErrorKind.input_modified: "a const input buffer was changed",
    ErrorKind.cross_check_disagreement: "the two cost estimates disagree (or llvm-mca cannot "
    "price an executed instruction); speedup reward withheld, correctness kept",
    ErrorKind.infra_error: "the verifier itself failed (tool missing, sandbox "
    "broken); drop, don't score",
}


class GateName(StrEnum):
    """The gates of the pipeline (toolchain/pipeline.py), in order; a gate's result carries its
    name whether it passed or failed. `infra` is the record of a verification the verifier's
    own machinery could not finish."""

    input = "input"
    format = "format"
    variant = "variant"
    directives = "directives"
    syntax = "syntax"
    object = "object"
    correctness = "correctness"
    performance = "performance"
    cross_check = "cross_check"
    infra = "infra"


class InfraError(RuntimeError):
    """A failure of the verifier's own machinery, never to be blamed on the submission."""
