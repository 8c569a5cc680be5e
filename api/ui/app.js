// The run dashboard: reads /ui/data/* (the example queries of docs/store.md over the SQL views) and the
// batch stream, with the API key the researcher typed (kept in this tab's sessionStorage only).
// Every value from the server is written with textContent, never parsed as HTML.
"use strict";

const COLORS = ["#2a6fdb", "#1e7b34", "#c2410c", "#7c3aed", "#b3261e", "#0e7490", "#a16207",
                "#be185d", "#4d7c0f", "#334155", "#9333ea", "#0f766e"];
const state = {
  key: sessionStorage.getItem("armgym-key") || "",
  run: null,         // selected run id
  runData: null,     // {steps, mix} as /ui/data/runs/{id} returned them
  charts: {},        // name -> {plot, data}
  mix: null,         // {steps, outcomes, counts: {outcome: [per step]}}
  live: null,        // {batchId, total, done, passed, infra, complete, abort}
  best: [],
};
window.armgym = state;  // for the browser test and the curious

const $ = (sel) => document.querySelector(sel);

class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; }
}

async function api(path) {
  const res = await fetch(path, {headers: {Authorization: `Bearer ${state.key}`}});
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, detail);
  }
  return res.json();
}

function status(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

function cell(row, value, raw) {
  const td = document.createElement("td");
  td.textContent = fmt(value);
  if (raw !== undefined) td.dataset.value = raw === null ? "" : String(raw);
  row.appendChild(td);
  return td;
}

function fill(tbody, rows, render) {
  tbody.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    render(tr, r);
    tbody.appendChild(tr);
  }
}

// --------------------------------------------------------------------------- charts

function chart(name, el, data, series, bars = false) {
  if (state.charts[name]) state.charts[name].plot.destroy();
  const width = Math.max(320, el.clientWidth || 560);
  const opts = {
    width, height: 200,
    scales: {x: {time: false}},
    legend: {show: series.length > 1},
    series: [{label: "step"}, ...series.map((s, i) => ({
      label: s, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
      fill: bars ? COLORS[i % COLORS.length] + "cc" : undefined,
      paths: bars ? uPlot.paths.bars({size: [0.7, 48]}) : undefined,
      points: {show: !bars},
    }))],
    axes: [{label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]}, {}],
  };
  state.charts[name] = {plot: new uPlot(opts, data, el), data};
}

function drawRun() {
  const steps = state.runData.steps;
  const x = steps.map((r) => r.step);
  chart("correctness", $("#chart-correctness"), [x, steps.map((r) => r.correctness_rate)],
        ["correctness rate"]);
  chart("reward", $("#chart-reward"), [x, steps.map((r) => r.mean_reward)], ["mean reward"]);
  chart("speedup", $("#chart-speedup"), [x, steps.map((r) => r.best_speedup)], ["best speedup"]);
  // the outcome mix as stacked bars: each series drawn at its cumulative height, largest first
  const mixSteps = [...new Set(state.runData.mix.map((r) => r.step))].sort((a, b) => a - b);
  const outcomes = [...new Set(state.runData.mix.map((r) => r.outcome))].sort();
  const counts = Object.fromEntries(outcomes.map((o) => [o, mixSteps.map(() => 0)]));
  for (const r of state.runData.mix) counts[r.outcome][mixSteps.indexOf(r.step)] += Number(r.attempts);
  state.mix = {steps: mixSteps, outcomes, counts};
  const cumulative = [];
  let running = mixSteps.map(() => 0);
  for (const o of outcomes) {
    running = running.map((v, i) => v + counts[o][i]);
    cumulative.push(running);
  }
  chart("mix", $("#chart-mix"), [mixSteps, ...cumulative.slice().reverse()],
        outcomes.slice().reverse(), true);
  fill($("#steps tbody"), steps, (tr, r) => {
    cell(tr, r.step, r.step);
    cell(tr, r.attempts, r.attempts);
    cell(tr, r.correctness_rate, r.correctness_rate);
    cell(tr, r.mean_reward, r.mean_reward);
    cell(tr, r.best_speedup, r.best_speedup);
  });
}

// --------------------------------------------------------------------------- runs

async function loadRuns() {
  const {runs} = await api("/ui/data/runs");
  fill($("#runs tbody"), runs, (tr, r) => {
    tr.dataset.run = r.run_id;
    tr.classList.toggle("selected", r.run_id === state.run);
    cell(tr, r.run_id);
    cell(tr, r.steps, r.steps);
    cell(tr, r.attempts, r.attempts);
    cell(tr, r.first_submitted_at);
    cell(tr, r.last_finished_at);
    tr.addEventListener("click", () => selectRun(r.run_id));
  });
  return runs;
}

async function selectRun(runId) {
  state.run = runId;
  for (const tr of document.querySelectorAll("#runs tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.run === runId);
  }
  $("#run-section").hidden = false;
  $("#run-title").textContent = `Run ${runId}`;
  await refreshRun();
  await followNewestBatch();
}

async function refreshRun() {
  if (state.run === null) return;
  state.runData = await api(`/ui/data/runs/${encodeURIComponent(state.run)}`);
  drawRun();
}

// --------------------------------------------------------------------------- live batch

async function followNewestBatch() {
  if (state.run === null) return;
  const {batches} = await api(`/ui/data/batches?run_id=${encodeURIComponent(state.run)}&limit=1`);
  const newest = batches[0];
  if (!newest) { $("#live-batch").textContent = "no batch in this run"; return; }
  if (state.live && state.live.batchId === newest.batch_id) return;  // already following it
  if (state.live && state.live.abort) state.live.abort.abort();
  streamBatch(newest);
}

function showLive() {
  const l = state.live;
  $("#live-batch").textContent = `batch ${l.batchId} (step ${fmt(l.step)}): ` +
    (l.complete ? "complete" : "running");
  $("#live-progress").max = l.total;
  $("#live-progress").value = l.done;
  $("#live-counts").textContent =
    `${l.done} / ${l.total} done · ${l.passed} passed · ${l.done - l.passed - l.infra} failed · ${l.infra} infra_error`;
  $("#live-counts").dataset.done = String(l.done);
  $("#live-counts").dataset.total = String(l.total);
  $("#live-counts").dataset.passed = String(l.passed);
  $("#live-counts").dataset.infra = String(l.infra);
}

async function streamBatch(batch) {
  const abort = new AbortController();
  state.live = {batchId: batch.batch_id, step: batch.step, total: batch.total, done: 0,
                passed: 0, infra: 0, complete: false, abort, seen: 0};
  showLive();
  $("#live-results tbody").replaceChildren();
  try {
    const res = await fetch(`/batches/${encodeURIComponent(batch.batch_id)}/stream`,
                            {headers: {Authorization: `Bearer ${state.key}`}, signal: abort.signal});
    if (!res.ok) throw new ApiError(res.status, res.statusText);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line) onStreamLine(JSON.parse(line));
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") status(`live view: ${err.message}`, true);
    return;
  }
  await refreshRun();  // the batch finished: its step is complete in the views
  await loadRuns();
}

function onStreamLine(msg) {
  const l = state.live;
  if (msg.event === "end") {
    l.complete = Boolean(msg.complete);
    showLive();
    return;
  }
  const verdict = msg.verdict || {};
  l.done += 1;
  if (verdict.passed) l.passed += 1;
  if (verdict.error_kind === "infra_error") l.infra += 1;
  const body = $("#live-results tbody");
  const tr = document.createElement("tr");
  cell(tr, (msg.attempt_id || "").slice(0, 8));
  cell(tr, msg.variant_id);
  const outcome = cell(tr, verdict.passed ? "pass" : verdict.error_kind);
  outcome.className = verdict.passed ? "pass" : "fail";
  cell(tr, msg.reward);  // the stored reward column (the verdict may report several profiles)
  body.prepend(tr);
  while (body.children.length > 20) body.lastChild.remove();
  showLive();
  if (l.done % 10 === 0) refreshRun().catch(() => {});  // charts follow the batch as it runs
}

// --------------------------------------------------------------------------- best kernels

async function loadBest() {
  const {best} = await api("/ui/data/best");
  state.best = best;
  fill($("#best tbody"), best, (tr, r) => {
    tr.dataset.variant = r.variant_id;
    cell(tr, r.variant_id);
    cell(tr, r.speedup, r.speedup);
    cell(tr, r.cycles, r.cycles);
    cell(tr, r.found_by);
    cell(tr, r.run_id);
    cell(tr, r.step, r.step);
    tr.addEventListener("click", () => showKernel(r.variant_id));
  });
}

async function showKernel(variantId) {
  const k = await api(`/best/${encodeURIComponent(variantId)}/download?format=json`);
  for (const tr of document.querySelectorAll("#best tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.variant === variantId);
  }
  $("#kernel").hidden = false;
  $("#kernel").dataset.attempt = k.attempt_id;
  $("#kernel-title").textContent = `${k.variant_id}: ${fmt(k.speedup)}x, ${fmt(k.cycles, 1)} cycles`;
  const v = k.verdict || {};
  const verdict = $("#kernel-verdict");
  verdict.textContent = `${v.passed ? "passed" : "failed"} · error kind ${v.error_kind || "none"} · ` +
    `reward ${fmt(k.reward)} · found by ${k.found_by} in ${k.run_id || "-"} step ${fmt(k.step)} · ` +
    `verifier ${v.verifier_version || "?"}`;
  verdict.className = v.passed ? "pass" : "fail";
  $("#kernel-gates").replaceChildren(...(v.gates || []).map((g) => {
    const li = document.createElement("li");
    li.textContent = `${g.name}: ${g.passed ? "pass" : g.error_kind}${g.message ? " - " + g.message : ""}`;
    li.className = g.passed ? "pass" : "fail";
    return li;
  }));
  $("#kernel-assembly").textContent = k.assembly;
}

// --------------------------------------------------------------------------- start

async function connect() {
  try {
    const runs = await loadRuns();
    await loadBest();
    $("#dashboard").hidden = false;
    status(`${runs.length} runs, ${state.best.length} variants solved`);
    const wanted = new URLSearchParams(location.search).get("run");
    const pick = runs.find((r) => r.run_id === wanted) || runs[0];
    if (pick) await selectRun(pick.run_id);
  } catch (err) {
    $("#dashboard").hidden = true;
    status(err.status === 401 || err.status === 403
           ? `${err.message}: this key may not read the history` : `error: ${err.message}`, true);
  }
}

$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.key = $("#key").value.trim();
  sessionStorage.setItem("armgym-key", state.key);
  connect();
});

setInterval(() => {
  if (state.key && state.run !== null) followNewestBatch().catch(() => {});
}, 2000);

if (state.key) connect();
