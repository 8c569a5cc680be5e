"""The verification pipeline: one submission in, one verdict out.

Gates run in order and stop at the first failure; any failure of the verifier's own machinery
becomes `infra_error`, so a missing tool or a broken sandbox is never scored as the model's fault.
"""

from __future__ import annotations

import shutil
import time

from . import VERIFIER_VERSION, kernels, reward, sandbox, tools, verdict_cache
from . import scratch as scratch_dirs
from .completion import extract_assembly
from .errors import ErrorKind, InfraError
from .execution import ReferenceRun
from .gates import correctness, object_checks, performance, syntax
from .settings import Settings, get_settings
from .verdict import GateResult, Verdict

TOOLS = ("as", "ld", "qemu", "objdump", "gcc", "clang", "mca", "osaca", "bwrap")


def derive_seed(variant_id: str, assembly: str | bytes, completion: bool, secret: str) -> int:
    """The seed of an attempt that brings none: a keyed hash of its content, so resubmitting the
    same text gets the same tests and verdict (and the verdict cache can answer it), while a
    policy that does not know the deployment's secret cannot predict them."""
    text = assembly if isinstance(assembly, bytes) else assembly.encode("utf-8", "surrogatepass")
    digest = tools.fingerprint("armgym-seed", secret, variant_id, str(int(completion)), text)
    return int(digest[:16], 16) >> 1  # 63 bits, like client seeds


def verify(
    variant_id: str,
    assembly: str | bytes,
    seed: int | None = None,
    *,
    completion: bool = False,
    settings: Settings | None = None,
) -> Verdict:
    """Judge `assembly` (or, with completion=True, a raw completion holding <assembly> tags)."""
    settings = settings or get_settings()
    if seed is None:
        seed = derive_seed(variant_id, assembly, completion, settings.seed_secret)
    cache = verdict_cache.for_settings(settings)
    cache_key = verdict_cache.key(variant_id, assembly, seed, completion, settings) \
        if cache else ""
    if cache and (hit := cache.get(cache_key)) is not None:
        return hit
    verdict = _verify(variant_id, assembly, seed, completion, settings)
    if cache:
        cache.put(cache_key, verdict)
    return verdict


def _verify(variant_id: str, assembly: str | bytes, seed: int, completion: bool,
            settings: Settings) -> Verdict:
    gates: list[GateResult] = []
    try:
        mode = sandbox.sandbox_mode(settings)
        versions = tools.versions(TOOLS if mode == "bwrap" else TOOLS[:-1])
        _run_gates(variant_id, assembly, seed, completion, settings, gates)
    except InfraError as exc:
        gates.append(GateResult.fail("infra", ErrorKind.infra_error, str(exc)))
        mode, versions = "unknown", {}
    failed = next((g for g in gates if not g.passed), None)
    verdict = Verdict(
        variant_id=variant_id,
        seed=seed,
        passed=failed is None,
        error_kind=failed.kind if failed else None,
        message=failed.message if failed else "all gates passed",
        gates=gates,
        versions=versions,
        verifier_version=VERIFIER_VERSION,
        sandbox=mode,
    )
    verdict.extra["reward"] = reward.summary(verdict)
    return verdict


def _timed(gates: list[GateResult], start: float, result: GateResult | None, name: str) -> bool:
    """Record a gate's result (None = passed); True when the pipeline may go on."""
    result = result or GateResult(name, True)
    if not result.seconds:
        result.seconds = time.perf_counter() - start
    gates.append(result)
    return result.passed


def _run_gates(variant_id: str, assembly: str | bytes, seed: int, completion: bool,
               settings: Settings, gates: list[GateResult]) -> None:
    start = time.perf_counter()
    if not _timed(gates, start, syntax.check_input(assembly, settings), "input"):
        return
    text = assembly.decode() if isinstance(assembly, bytes) else assembly
    if completion:
        start = time.perf_counter()
        body = extract_assembly(text)
        bad = None if body else GateResult.fail(
            "format", ErrorKind.format_error, "expected exactly one <assembly>...</assembly> block")
        if not _timed(gates, start, bad, "format"):
            return
        text = body or ""
    try:
        variant = kernels.get(variant_id)
    except KeyError:
        gates.append(GateResult.fail("variant", ErrorKind.unknown_variant,
                                     f"unknown variant id {variant_id[:100]!r}"))
        return
    start = time.perf_counter()
    if not _timed(gates, start, syntax.check_directives(text), "directives"):
        return
    scratch = scratch_dirs.make("verify")
    reference: ReferenceRun | None = None
    try:
        result, obj = syntax.assemble(text, scratch, settings)
        if not _timed(gates, start, result, "syntax") or obj is None:
            return
        reference = ReferenceRun(variant, seed, settings)
        reference.start()  # runs while the object is checked
        start = time.perf_counter()
        allowed = frozenset(variant.math_functions)
        if not _timed(gates, start, object_checks.check_object(obj, allowed, settings), "object"):
            return
        result = correctness.run(variant, obj, seed, scratch, settings, reference)
        gates.append(result)
        if result.passed:
            gates.extend(performance.run(variant, obj, text, seed, scratch, settings, reference))
    finally:
        if reference is not None:
            reference.settle()
        shutil.rmtree(scratch, ignore_errors=True)
