"""Reward components, profiles and GRPO z-scores: pure logic over verdict records."""

from __future__ import annotations

import pytest

from toolchain import reward
from toolchain.errors import ErrorKind
from toolchain.verdict import GateResult, Verdict

FIRST = ("input", "directives", "syntax", "object", "correctness")


def verdict(*gates: GateResult) -> Verdict:
    failed = next((g for g in gates if not g.passed), None)
    return Verdict(variant_id="vec_add_n16_float32", seed=1, passed=failed is None,
                   error_kind=failed.kind if failed else None,
                   message=failed.message if failed else "", gates=list(gates),
                   verifier_version="t", sandbox="bwrap")


def passed(*names: str) -> list[GateResult]:
    return [GateResult(n, True) for n in names]


def perf(speedup: float, agree: bool = True) -> list[GateResult]:
    gates = [GateResult("performance", True, details={"speedup": speedup})]
    if agree:
        return gates + [GateResult("cross_check", True)]
    return gates + [GateResult.fail("cross_check", ErrorKind.cross_check_disagreement, "x")]


def test_a_faster_correct_kernel_earns_its_clipped_speedup() -> None:
    v = verdict(*passed(*FIRST), *perf(1.8))
    c = reward.components(v)
    assert c == reward.Components(None, 1.0, 1.0, 1.8, False)
    assert reward.reward(v, "binary_plus_speedup") == pytest.approx(0.8)
    assert reward.reward(v, "additive") == pytest.approx(1 + 1 + 0.8)


def test_speedup_is_clipped_to_three() -> None:
    v = verdict(*passed(*FIRST), *perf(11.0))
    assert reward.reward(v, "binary_plus_speedup") == pytest.approx(2.0)
    assert reward.reward(v, "additive") == pytest.approx(4.0)


def test_slower_than_the_compiler_earns_no_speedup_term() -> None:
    v = verdict(*passed(*FIRST), *perf(0.5))
    assert reward.reward(v, "binary_plus_speedup") == 0.0
    assert reward.reward(v, "additive") == pytest.approx(2.0)


def test_disagreement_withholds_speedup_but_keeps_correctness() -> None:
    v = verdict(*passed(*FIRST), *perf(2.5, agree=False))
    c = reward.components(v)
    assert c is not None and c.correctness == 1.0 and c.speedup is None and c.speedup_withheld
    assert reward.reward(v, "additive") == pytest.approx(2.0)
    assert reward.reward(v, "binary_plus_speedup") == 0.0


def test_wrong_output_scores_syntax_only() -> None:
    v = verdict(*passed(*FIRST[:4]), GateResult.fail("correctness", ErrorKind.wrong_output, "x"))
    assert reward.components(v) == reward.Components(None, 1.0, 0.0, None, False)
    assert reward.reward(v, "additive") == 1.0
    assert reward.reward(v, "binary_plus_speedup") == 0.0


def test_a_kernel_that_misbehaves_when_traced_loses_correctness() -> None:
    v = verdict(*passed(*FIRST), GateResult.fail("performance", ErrorKind.abi_violation, "x"))
    c = reward.components(v)
    assert c is not None and c.correctness == 0.0 and c.speedup is None


def test_format_counts_only_for_completions() -> None:
    bad = verdict(*passed("input"), GateResult.fail("format", ErrorKind.format_error, "x"))
    assert reward.components(bad) == reward.Components(0.0, 0.0, 0.0, None, False)
    good = verdict(*passed("input", "format", *FIRST[1:]), *perf(1.0))
    assert reward.reward(good, "additive") == pytest.approx(3.0)


def test_infra_error_yields_no_reward_never_zero() -> None:
    v = verdict(GateResult.fail("infra", ErrorKind.infra_error, "qemu missing"))
    assert reward.components(v) is None
    assert reward.summary(v) is None
    for name in reward.PROFILES:
        assert reward.reward(v, name) is None


def test_profiles_declare_determinism() -> None:
    for profile in reward.PROFILES.values():
        assert profile.deterministic and not profile.platform_dependent


def test_group_zscores_are_centred_scaled_and_clipped() -> None:
    z = reward.group_zscores([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0])
    assert z[-1] == 1.5  # (10 - 1) / 3 = 3, clipped
    assert all(v == pytest.approx(-1 / 3) for v in z[:-1])
    assert reward.group_zscores([1.0, 3.0]) == [-1.0, 1.0]


def test_group_zscores_leave_infra_errors_out() -> None:
    assert reward.group_zscores([None, 1.0, 3.0, None]) == [None, -1.0, 1.0, None]
    assert reward.group_zscores([2.0, 2.0, None]) == [0.0, 0.0, None]
    assert reward.group_zscores([None, None]) == [None, None]


def _served(v: Verdict) -> dict:
    """A verdict as the farm stores and serves it (the reward summary attached)."""
    v.reward = reward.summary(v)
    return v.to_json()


SERVED = {
    "faster": lambda: verdict(*passed(*FIRST), *perf(1.8)),
    "withheld": lambda: verdict(*passed(*FIRST), *perf(2.5, agree=False)),
    "wrong": lambda: verdict(*passed(*FIRST[:4]),
                             GateResult.fail("correctness", ErrorKind.wrong_output, "x")),
    "completion without a block": lambda: verdict(
        *passed("input"), GateResult.fail("format", ErrorKind.format_error, "x")),
    "infra": lambda: verdict(*passed("input"),
                             GateResult.fail("infra", ErrorKind.infra_error, "x")),
}


@pytest.mark.parametrize("case", sorted(SERVED))
def test_one_reward_under_a_profile_for_the_store_the_api_and_the_client(case: str) -> None:
    """reward_of (store, routes) and the client's copy (armgym_client.models, which may not
    import the server's code) give the same reward for every profile, and the same default."""
    from armgym_client import models

    doc = _served(SERVED[case]())
    attempt = {"status": "done", "error_kind": doc["error_kind"], "verdict": doc}
    assert models.DEFAULT_PROFILE == reward.DEFAULT_PROFILE
    for profile in [*reward.PROFILES, None]:
        args = () if profile is None else (profile,)
        ours = reward.reward_of(doc, *args)
        theirs = models.profile_reward(attempt, profile or models.DEFAULT_PROFILE)
        assert ours == theirs, (profile, ours, theirs)
        if case != "infra":
            assert ours == reward.reward(SERVED[case](), profile or reward.DEFAULT_PROFILE)
    assert (reward.reward_of(doc) is None) == (case == "infra")
    if case == "infra":  # no reward under any name
        assert reward.reward_of(doc, "no_such_profile") is None
    else:
        with pytest.raises(KeyError):
            reward.reward_of(doc, "no_such_profile")
