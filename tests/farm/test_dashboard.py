"""The run dashboard (/ui) in a real headless Chromium (Debian's chromium and chromedriver, driven
by Selenium) for a real run of 200 attempts verified by the farm's Celery workers: its charts and
tables against the SQL views (through the example queries of docs/store.md), the live view of
a batch while it runs, the best kernel with its assembly and verdict, the key it needs, and data
that tries to be HTML. Saves the screenshot docs/store.md shows (docs/run-dashboard.png,
rewritten when ARMGYM_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from store.queries import EXAMPLES

from .conftest import FARM, USER_KEY, Api, Workers, wait_batch
from .mix import HOSTILE, VARIANTS, asm, honest

pytestmark = FARM
REPO = Path(__file__).resolve().parents[2]
STEPS, PER_STEP = 5, 40
HOSTILE_NAME = '<img src=x onerror="window.pwned=1">'
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--no-first-run",
                "--window-size=1400,2300")


def step_attempts(step: int, rng: random.Random) -> list[dict[str, Any]]:
    """A step of a run that gets better: step+1 honest kernels, two wrong ones, the rest refused
    by cheap gates (so 200 real verifications stay cheap). Fresh seeds: nothing from a cache."""
    pairs: list[tuple[str, str]] = []
    for i in range(step + 1):
        variant = VARIANTS[i % 2]
        pairs.append((variant, honest(variant, "clang" if (i + step) % 2 else "gcc")))
    pairs += [(VARIANTS[0], asm("    ret")), (VARIANTS[1], asm("    ret"))]
    cheap = [h[1] for h in HOSTILE if h[0] in ("exit through svc", "unknown mnemonic",
                                               ".incbin a host file", "no kernel symbol")]
    while len(pairs) < PER_STEP:
        pairs.append((VARIANTS[len(pairs) % 2], cheap[len(pairs) % len(cheap)]))
    rng.shuffle(pairs)
    return [{"variant_id": v, "assembly": t, "seed": rng.randrange(2**62)} for v, t in pairs]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium and chromedriver are needed (Debian packages chromium, "
                    "chromium-driver; ./scripts/setup.sh installs them)")
    options = Options()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # the page is still drawing: an element not there yet
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def sql(api: Api, name: str, **params: Any) -> list[dict[str, Any]]:
    engine = api.engine()
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(EXAMPLES[name]), params)]
    finally:
        engine.dispose()


def cells(driver: Any, table: str) -> list[list[str]]:
    """data-value of each cell (the raw number) or its text, per row."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map(tr => "
        "[...tr.children].map(td => td.dataset.value !== undefined ? td.dataset.value "
        ": td.textContent))", table)


def number(value: str) -> float | None:
    return None if value == "" else float(value)


def test_run_dashboard_in_chromium(farm_server: Api, celery_workers: Workers, browser: Any,
                                   tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    client = farm_server.client()
    run_id = f"dashboard-{uuid.uuid4().hex[:8]}"
    rng = random.Random(16)
    hostile = client.post("/batches", json={"run_id": HOSTILE_NAME, "step": 0, "attempts": [
        {"variant_id": VARIANTS[0], "assembly": asm("    hvc #0\n    ret")}]})
    assert hostile.status_code == 202, hostile.text
    for step in range(STEPS - 1):
        res = client.post("/batches", json={"run_id": run_id, "step": step, "model": "m",
                                            "attempts": step_attempts(step, rng)})
        assert res.status_code == 202, res.text
        assert wait_batch(client, res.json()["batch_id"])["complete"]

    # the data endpoints need a key; the page without one shows only the key form
    for path in ("/ui/data/runs", f"/ui/data/runs/{run_id}", "/ui/data/best",
                 "/ui/data/batches"):
        assert httpx.get(farm_server.url + path, timeout=30).status_code == 401, path
    assert httpx.get(f"{farm_server.url}/ui/static/../routes/ui.py", timeout=30
                     ).status_code == 404
    assert httpx.get(f"{farm_server.url}/ui/static/index.html", timeout=30).status_code == 404
    browser.get(f"{farm_server.url}/ui?run={run_id}")
    assert browser.find_element(By.ID, "dashboard").get_attribute("hidden") is not None
    browser.find_element(By.ID, "key").send_keys("agk_not_a_key")
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    until(lambda: "401" in browser.find_element(By.ID, "status").text, "the 401 message")
    assert browser.find_element(By.ID, "dashboard").get_attribute("hidden") is not None

    key = browser.find_element(By.ID, "key")
    key.clear()
    key.send_keys(USER_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    until(lambda: len(cells(browser, "#steps")) == STEPS - 1, "the run's first steps")

    # the last step is submitted with the page open: the live view follows it to the end
    last = client.post("/batches", json={"run_id": run_id, "step": STEPS - 1, "model": "m",
                                         "attempts": step_attempts(STEPS - 1, rng)})
    assert last.status_code == 202
    batch_id = last.json()["batch_id"]
    until(lambda: batch_id in browser.find_element(By.ID, "live-batch").text,
          "the live view to pick up the new batch", timeout=30)
    until(lambda: "complete" in browser.find_element(By.ID, "live-batch").text,
          "the live batch to complete", timeout=240)
    final = wait_batch(client, batch_id)
    counts = browser.find_element(By.ID, "live-counts")
    assert int(counts.get_attribute("data-done")) == int(counts.get_attribute("data-total")) \
        == PER_STEP
    assert int(counts.get_attribute("data-passed")) == sum(
        bool(r["verdict"]["passed"]) for r in final["results"]) == STEPS
    assert len(browser.find_elements(By.CSS_SELECTOR, "#live-results tbody tr")) == 20
    until(lambda: len(cells(browser, "#steps")) == STEPS, "the run's last step")

    # the tables and charts show what the SQL views say
    curve = sql(farm_server, "run_curve", run_id=run_id)
    assert sum(r["attempts"] for r in curve) == STEPS * PER_STEP
    until(lambda: [int(float(row[1])) for row in cells(browser, "#steps")] ==
          [r["attempts"] for r in curve], "the steps table to settle")
    for row, want in zip(cells(browser, "#steps"), curve, strict=True):
        assert int(row[0]) == want["step"]
        for got, field in zip(row[2:], ("correctness_rate", "mean_reward", "best_speedup"),
                              strict=True):
            assert number(got) == pytest.approx(want[field]), (field, row, want)
    charts = browser.execute_script(
        "return Object.fromEntries(Object.entries(window.armgym.charts)"
        ".map(([k, v]) => [k, v.data]))")
    assert charts["correctness"] == [[r["step"] for r in curve],
                                     pytest.approx([r["correctness_rate"] for r in curve])]
    assert charts["reward"][1] == pytest.approx([r["mean_reward"] for r in curve])
    assert charts["speedup"][1] == pytest.approx([r["best_speedup"] for r in curve])
    assert [r["correctness_rate"] for r in curve] == sorted(r["correctness_rate"] for r in curve)
    mix = browser.execute_script("return window.armgym.mix")
    want_mix: dict[str, list[int]] = {}
    for r in sql(farm_server, "run_error_mix", run_id=run_id):
        want_mix.setdefault(r["outcome"], [0] * STEPS)[r["step"]] += int(r["attempts"])
    assert mix["steps"] == list(range(STEPS)) and mix["counts"] == want_mix
    assert {"pass", "wrong_output", "object_rejected", "assemble_error"} <= set(want_mix)
    assert want_mix["pass"] == [s + 1 for s in range(STEPS)]

    runs = {row[0]: row for row in cells(browser, "#runs")}
    (want_run,) = [r for r in sql(farm_server, "runs") if r["run_id"] == run_id]
    assert int(runs[run_id][1]) == want_run["steps"] == STEPS
    assert int(float(runs[run_id][2])) == int(want_run["attempts"]) == STEPS * PER_STEP
    assert HOSTILE_NAME in runs  # shown as text, not run as HTML
    assert browser.execute_script("return window.pwned === undefined")

    best = sql(farm_server, "best_kernels")
    table = cells(browser, "#best")
    assert [row[0] for row in table] == [r["variant_id"] for r in best]
    for row, want in zip(table, best, strict=True):
        assert number(row[1]) == pytest.approx(want["speedup"])
        assert row[3] == want["found_by"]
    browser.find_element(By.CSS_SELECTOR, f'#best tr[data-variant="{VARIANTS[0]}"]').click()
    (kernel,) = sql(farm_server, "best_kernel", variant_id=VARIANTS[0])
    until(lambda: browser.execute_script(
        "return document.getElementById('kernel-assembly').textContent") == kernel["assembly"],
        "the best kernel's assembly")
    assert browser.find_element(By.ID, "kernel-verdict").text.startswith("passed")
    gates = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#kernel-gates li")]
    assert any(g.startswith("performance: pass") for g in gates), gates

    shot = tmp_path / "run-dashboard.png"
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    if os.environ.get("ARMGYM_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, REPO / "docs" / "run-dashboard.png")
