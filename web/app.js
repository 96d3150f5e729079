// app.js — the web view: the list of runs and studies, a run's live page, a study's trials.
// Reads the JSON API under /api/ (docs/web.md) and follows a run through /api/events (Server-Sent
// Events). The buttons post to /api/control, the same requests as `bulkhead plugins restart`.
"use strict";

const $ = (id) => document.getElementById(id);
const session = { csrf: null, stream: null, retry: null };
const colors = ["#3566c8", "#d0652a", "#2f8f5b", "#9a48b8", "#b8860b", "#c0392b", "#16a3a3", "#777"];

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok && !("ok" in body)) throw new Error(body.error || response.statusText);
  return body;
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "message error" : "message";
  box.hidden = !text;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function show(view) {
  for (const id of ["list-view", "run-view", "study-view"]) $(id).hidden = id !== view;
}

// A live stream, opened again from the start after a break (its first events carry everything).
function follow(url, handlers, onRestart) {
  clearTimeout(session.retry);
  if (session.stream) session.stream.close();
  const stream = new EventSource(url);
  session.stream = stream;
  $("connection").hidden = false;
  stream.onopen = () => { $("connection").textContent = "live"; $("connection").classList.add("live"); };
  stream.onerror = () => {
    $("connection").textContent = "offline";
    $("connection").classList.remove("live");
    stream.close();
    session.retry = setTimeout(() => { onRestart(); follow(url, handlers, onRestart); }, 3000);
  };
  for (const [event, handle] of Object.entries(handlers))
    stream.addEventListener(event, (e) => handle(JSON.parse(e.data)));
}

function stopFollowing() {
  clearTimeout(session.retry);
  if (session.stream) session.stream.close();
  session.stream = null;
  $("connection").hidden = true;
}

// ---------------------------------------------------------------------------------------------
// The list of runs and studies
// ---------------------------------------------------------------------------------------------

async function showList() {
  stopFollowing();
  show("list-view");
  $("title").textContent = "";
  const all = await api("/api/runs");
  $("title").textContent = all.root;
  const runs = $("runs").tBodies[0], studies = $("studies").tBodies[0];
  runs.replaceChildren(...all.runs.map((r) => element("tr", { class: "clickable", onclick: () => (location.hash = "run=" + encodeURIComponent(r.id)) },
    element("td", {}, r.name), element("td", {}, r.status),
    element("td", {}, r.progress ? `${r.progress.epoch}/${r.progress.max_epochs}` : r.max_epochs ?? "-"),
    element("td", { class: "number" }, r.last ? r.last.step : "-"),
    element("td", { class: "number" }, r.last ? r.last.loss.toFixed(4) : "-"))));
  studies.replaceChildren(...all.studies.map((s) => element("tr", { class: "clickable", onclick: () => (location.hash = "study=" + encodeURIComponent(s.id)) },
    element("td", {}, s.name), element("td", {}, s.status), element("td", {}, s.method),
    element("td", { class: "number" }, s.trials),
    element("td", {}, s.best_trial === null ? "-" : `trial ${s.best_trial}: ${s.main_metric} ${Number(s.best_score).toPrecision(4)}`))));
  if (!all.runs.length && !all.studies.length) say(`no runs or studies under ${all.root} yet`);
}

// ---------------------------------------------------------------------------------------------
// A run
// ---------------------------------------------------------------------------------------------

const run = {
  id: null, config: {}, live: false, records: [], charts: null, drawing: false, sliders: new Map(),
};

function runCharts() {
  if (!run.charts) {
    run.charts = { loss: new LineChart($("loss-chart"), { xLabel: "step" }), lr: new LineChart($("lr-chart"), { xLabel: "step" }) };
    $("smoothing").addEventListener("input", () => { $("smoothing-value").textContent = $("smoothing").value; redraw(); });
    $("log-scale").addEventListener("change", () => { run.charts.loss.setLogY($("log-scale").checked); });
  }
  return run.charts;
}

// Charts are drawn at most once a frame, however many records arrive.
function redraw() {
  if (run.drawing) return;
  run.drawing = true;
  requestAnimationFrame(() => {
    run.drawing = false;
    const steps = run.records.filter((r) => "loss" in r);
    const loss = steps.map((r) => [r.step, r.loss]);
    const validation = run.records.filter((r) => "val_loss" in r).map((r) => [r.step, r.val_loss]);
    const charts = runCharts();
    charts.loss.setSeries([
      { name: "", color: "#ccc", width: 1, points: loss },
      { name: "loss", color: colors[0], points: smooth(loss, Number($("smoothing").value)) },
      { name: "val_loss", color: colors[5], points: validation, dots: true },
    ]);
    charts.lr.setSeries([{ name: "learning rate", color: colors[2], points: steps.map((r) => [r.step, r.lr]) }]);
    showProgress();
  });
}

// Time left: the epochs still to come at the mean epoch's wall time (validation and hooks
// included), or, before the first epoch ends, the steps still to come at the recent steps' pace.
function eta(progress, steps, step) {
  const left = progress.max_epochs * progress.epoch_length - step;
  const epochs = run.records.filter((r) => "epoch_s" in r).map((r) => r.epoch_s);
  if (epochs.length) return (left / progress.epoch_length) * (epochs.reduce((a, b) => a + b, 0) / epochs.length);
  const recent = steps.slice(-50);
  if (!recent.length) return null;
  const batch = run.config.batch_size || 32;
  return left * (recent.reduce((sum, r) => sum + batch / r.samples_per_s, 0) / recent.length);
}

function duration(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "-";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = Math.round(seconds % 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

function showProgress() {
  const steps = run.records.filter((r) => "loss" in r);
  const last = steps[steps.length - 1];
  $("run-speed").textContent = last ? last.samples_per_s.toFixed(1) : "-";
  const progress = run.progress;
  if (!progress) {
    $("run-step").textContent = last ? last.step : "-";
    return;
  }
  // The live report is rewritten every 2 s; the metrics come as they are written.
  const step = Math.max(progress.global_step, last ? last.step + 1 : 0);
  const epoch = last ? Math.max(progress.epoch, last.epoch) : progress.epoch;
  const total = progress.max_epochs * progress.epoch_length;
  $("run-epoch").textContent = `${Math.min(epoch + 1, progress.max_epochs)} / ${progress.max_epochs}`;
  $("run-step").textContent = `${step} / ${total}`;
  $("run-progress").value = total ? step / total : 0;
  $("run-eta").textContent = run.live ? duration(eta(progress, steps, step)) : "-";
}

function onRunSummary(summary) {
  run.live = summary.live;
  run.progress = summary.progress;
  $("run-status").textContent = summary.status;
  for (const button of document.querySelectorAll("#run-view button")) button.disabled = !run.live;
  showProgress();
}

function onSamples(listing) {
  const box = $("samples");
  if (!listing.prompts.length) return;
  box.replaceChildren(...listing.prompts.map((prompt) => {
    const images = prompt.images;
    const key = prompt.index;
    // A slider the user moved stays where it is; one at the newest image follows new ones.
    const chosen = run.sliders.has(key) ? Math.min(run.sliders.get(key), images.length - 1) : images.length - 1;
    const image = element("img", { alt: prompt.prompt || `prompt ${key}` });
    const label = element("span", { class: "hint" });
    const slider = element("input", { type: "range", min: 0, max: images.length - 1, value: chosen });
    const choose = (i) => {
      image.src = `/api/sample?run=${encodeURIComponent(run.id)}&name=${encodeURIComponent(images[i].name)}`;
      label.textContent = `step ${images[i].step} (${i + 1} of ${images.length})`;
    };
    slider.addEventListener("input", () => {
      const i = Number(slider.value);
      if (i === images.length - 1) run.sliders.delete(key);
      else run.sliders.set(key, i);
      choose(i);
    });
    choose(chosen);
    return element("div", { class: "sample", dataset: { prompt: key, images: images.length } },
      element("p", {}, prompt.prompt || `prompt ${key}`), image, slider, label);
  }));
}

// One row per plugin: its hooks' calls and faults summed, the latency of its busiest hook.
function pluginRow(plugin) {
  const hooks = Object.entries(plugin.hooks || {}).filter(([name]) => !name.startsWith("("));
  const sum = (key) => Object.values(plugin.hooks || {}).reduce((n, h) => n + (h[key] || 0), 0);
  const busiest = hooks.sort((a, b) => (b[1].calls || 0) - (a[1].calls || 0))[0];
  const ms = (v) => (v === null || v === undefined ? "-" : v.toFixed(2));
  const faults = sum("errors") + sum("timeouts") + sum("crashes") + sum("invalid_replies");
  const lastError = plugin.quarantine_reason || plugin.last_fault || "";
  const state = plugin.status || (plugin.quarantined ? "quarantined" : "running");
  const button = (action, text) => element("button", { dataset: { action, plugin: plugin.name }, onclick: () => control(action, plugin.name) }, text);
  return element("tr", { dataset: { plugin: plugin.name } },
    element("td", {}, plugin.name),
    element("td", { class: "state state-" + state }, state),
    element("td", { class: "number calls" }, sum("calls")),
    element("td", { class: "number", title: busiest ? busiest[0] : "" }, busiest ? ms(busiest[1].p50_ms) : "-"),
    element("td", { class: "number", title: busiest ? busiest[0] : "" }, busiest ? ms(busiest[1].p99_ms) : "-"),
    element("td", { class: "number faults" }, faults),
    element("td", { class: "number restarts" }, plugin.restarts),
    element("td", { class: "number reloads" }, plugin.reloads),
    element("td", { class: "error" }, lastError),
    element("td", { class: "buttons" }, button("restart_plugin", "restart"), button("stop_plugin", "stop")));
}

function onPlugins(report) {
  const rows = report.plugins.map(pluginRow);
  $("plugins").tBodies[0].replaceChildren(...(rows.length ? rows : [element("tr", {}, element("td", { colspan: 10, class: "hint" }, "no plugins in this run"))]));
  for (const button of document.querySelectorAll("#plugins button")) button.disabled = !run.live;
}

async function control(action, plugin) {
  if (action === "stop_run" && !confirm("Stop the run? It ends at the next optimizer step, with its final samples and checkpoint.")) return;
  if (action === "stop_plugin" && !confirm(`Stop ${plugin} for the rest of the run?`)) return;
  say(`${action.replace("_", " ")}${plugin ? " " + plugin : ""}: waiting for the trainer...`);
  try {
    const answer = await api("/api/control", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf },
      body: JSON.stringify({ run: run.id, action, plugin }),
    });
    say(answer.message, !answer.ok);
  } catch (error) {
    say(error.message, true);
  }
}

async function showRun(id) {
  show("run-view");
  say("");
  Object.assign(run, { id, records: [], progress: null, live: false, sliders: new Map() });
  $("title").textContent = id;
  $("samples").replaceChildren(element("p", { class: "hint" }, "no samples yet"));
  const summary = await api(`/api/run?run=${encodeURIComponent(id)}`);
  run.config = summary.config || {};
  $("config").textContent = JSON.stringify(summary.config, null, 2);
  follow(`/api/events?run=${encodeURIComponent(id)}`, {
    run: onRunSummary,
    metrics: (records) => { run.records.push(...records); redraw(); },
    samples: onSamples,
    plugins: onPlugins,
  }, () => { run.records = []; });
}

for (const id of ["save-now", "stop-run"]) $(id).addEventListener("click", (e) => control(e.target.dataset.action));

// ---------------------------------------------------------------------------------------------
// A study
// ---------------------------------------------------------------------------------------------

let trialsChart = null;

async function onStudy(record) {
  const spec = record.spec || {};
  $("study-status").textContent = record.status;
  $("study-method").textContent = record.method;
  $("study-metric").textContent = `${spec.main_metric} (${spec.higher_is_better ? "higher" : "lower"} is better)`;
  $("trials").tBodies[0].replaceChildren(...record.trials.map((t) => element("tr",
    { class: "clickable" + (t.trial === record.best_trial ? " best" : ""), onclick: () => (location.hash = "run=" + encodeURIComponent(t.run)) },
    element("td", {}, t.trial), element("td", {}, JSON.stringify(t.params)), element("td", {}, t.status),
    element("td", { class: "number" }, t.score === null ? "-" : Number(t.score).toPrecision(5)),
    element("td", { class: "number" }, Math.round(t.seconds)))));
  trialsChart = trialsChart || new LineChart($("trials-chart"), { xLabel: "step" });
  const curves = await Promise.all(record.trials.map((t) => api(`/api/metrics?run=${encodeURIComponent(t.run)}`).catch(() => ({ records: [] }))));
  trialsChart.setSeries(curves.map((c, i) => ({
    name: `trial ${record.trials[i].trial}`,
    color: colors[i % colors.length],
    width: record.trials[i].trial === record.best_trial ? 3 : 1.5,
    points: smooth(c.records.filter((r) => "loss" in r).map((r) => [r.step, r.loss]), 0.6),
  })));
}

function showStudy(id) {
  show("study-view");
  say("");
  $("title").textContent = id;
  follow(`/api/events?study=${encodeURIComponent(id)}`, { study: onStudy }, () => {});
}

// ---------------------------------------------------------------------------------------------

function route() {
  const where = new URLSearchParams(location.hash.slice(1));
  const done = where.get("run") ? showRun(where.get("run")) : where.get("study") ? showStudy(where.get("study")) : showList();
  Promise.resolve(done).catch((error) => say(error.message, true));
}

async function start() {
  try {
    const info = await api("/api/session");
    session.csrf = info.csrf_token;
    // bulkhead train --web: its run is the page.
    if (info.run && !location.hash) history.replaceState(null, "", "#run=" + encodeURIComponent(info.run));
  } catch (error) {
    say(error.message, true);
    return;
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
