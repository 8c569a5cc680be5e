"""The verification pipeline: one submission in, one verdict out.

Gates run in order (pipeline.py) and stop at the first failure; any failure of the verifier's
own machinery becomes `infra_error`, so a missing tool or a broken sandbox is never scored as the
model's fault.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import VERIFIER_VERSION, pipeline, reward, sandbox, tools, verdict_cache
from .attempt import Attempt
from .errors import ErrorKind, GateName, InfraError
from .settings import Settings
from .verdict import GateResult, Verdict

TOOLS = ("as", "ld", "qemu", "objdump", "gcc", "clang", "mca", "osaca", "bwrap")


def derive_seed(variant_id: str, assembly: str | bytes, completion: bool, secret: str) -> int:
    """The seed of an attempt that brings none: a keyed hash of its content, so resubmitting the
    same text gets the same tests and verdict (and the verdict cache can answer it), while a
    policy that does not know the deployment's secret cannot predict them."""
    text = assembly if isinstance(assembly, bytes) else assembly.encode("utf-8", "surrogatepass")
    digest = tools.fingerprint("armgym-seed", secret, variant_id, str(int(completion)), text)
    return int(digest[:16], 16) >> 1  # 63 bits, like client seeds


SEED_SCOPES = ("attempt", "group")
# A group seed is sent back with every verdict next to public names (run, step, variant): a
# secret shorter than this could be searched for offline and the next step's tests predicted.
MIN_GROUP_SECRET = 16


def group_seed(run_id: str, step: int, variant_id: str, secret: str) -> int:
    """The seed the attempts of one GRPO group share (same run, step and variant): one C
    reference run serves them all and the group is judged on the same tests, while a new step
    draws new ones nobody can predict without the deployment's secret (ValueError without one
    of at least MIN_GROUP_SECRET characters)."""
    if len(secret) < MIN_GROUP_SECRET:
        raise ValueError(f"group seeds need a seed secret of at least {MIN_GROUP_SECRET} "
                         "characters (ARMGYM_SEED_SECRET)")
    digest = tools.fingerprint("armgym-group-seed", secret, run_id, str(step), variant_id)
    return int(digest[:16], 16) >> 1  # 63 bits, like client seeds


def verify(
    variant_id: str,
    assembly: str | bytes,
    seed: int | None = None,
    *,
    completion: bool = False,
    settings: Settings,
) -> Verdict:
    """Judge `assembly` (or, with completion=True, a raw completion holding <assembly> tags)
    under `settings`, the caller's (`toolchain.settings.get_settings` gives the process's own)."""
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
    attempt = Attempt(variant_id, seed, assembly, completion, settings)
    try:
        mode = sandbox.sandbox_mode(settings)
        versions = tools.versions(TOOLS if mode == "bwrap" else TOOLS[:-1])
        pipeline.run(attempt, pipeline.gates(completion))
    except InfraError as exc:  # the gates that ran before it stay on record
        return infra_verdict(variant_id, seed, str(exc), attempt.results)
    finally:
        attempt.close()
    return verdict_of(variant_id, seed, attempt.results, versions, mode)


def verdict_of(variant_id: str, seed: int, gates: list[GateResult], versions: dict[str, str],
               mode: str) -> Verdict:
    """The verdict of these gate results: the first failure decides it; the reward attached."""
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
    verdict.reward = reward.summary(verdict)
    return verdict


def infra_verdict(variant_id: str, seed: int, message: str,
                  before: Sequence[GateResult] = ()) -> Verdict:
    """The verdict of an attempt the verifier could not finish (a tool missing, a worker that
    gave up), after the gates in `before`: no reward, to be dropped rather than scored."""
    failed = GateResult.fail(GateName.infra, ErrorKind.infra_error, message)
    return verdict_of(variant_id, seed, [*before, failed], {}, "unknown")
