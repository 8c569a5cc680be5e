"""The armgym command as a user runs it: a fresh process, real tools."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import baseline


def armgym(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_tasks_filter_and_json() -> None:
    out = armgym("tasks", "--template", "gemv", "--dtype", "float64", "--json")
    rows = json.loads(out.stdout)
    assert len(rows) == 21 and all(r["template"] == "gemv" for r in rows)  # 16 + 5 odd shapes
    assert {"variant_id", "difficulty", "split", "signature"} <= set(rows[0])


def test_baselines_build_takes_only_the_odd_shapes() -> None:
    out = armgym("baselines", "build", "--template", "popcount", "--shapes", "odd",
                 "--compiler", "clang")
    assert out.returncode == 0, out.stderr
    assert " 5 total in " in out.stdout  # popcount_n{17,100,1000,1023,4095}_uint32


def test_show_gives_source_signature_and_baseline() -> None:
    data = json.loads(armgym("show", "vec_add_n1024_float32", "--json").stdout)
    assert "void kernel(float *restrict a" in data["c_source"]
    assert data["baseline"]["assembly"].count("kernel:") == 1
    assert "-mcpu=neoverse-v2" in data["baseline"]["flags"]
    assert armgym("show", "nope_n1_float32").returncode != 0


def test_verify_exit_codes_and_summary() -> None:
    good = armgym("verify", "relu_n64_float32", "-", "--seed", "3", stdin=baseline(
        "relu_n64_float32"))
    assert good.returncode == 0 and "PASS" in good.stdout and "seed=3" in good.stdout
    bad = armgym("verify", "relu_n64_float32", "-", stdin="kernel:\n  ret\n")
    assert bad.returncode == 1 and "object_rejected" in bad.stdout  # kernel is not global


def test_demo_matches_its_expectations() -> None:
    out = armgym("demo")
    assert out.returncode == 0, out.stdout + out.stderr
    from toolchain.demo import CASES

    assert f"{len(CASES)}/{len(CASES)} verdicts as expected" in out.stdout
