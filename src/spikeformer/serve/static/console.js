// spikeformer operations console: plain JavaScript, no dependencies, works offline.
// Reads the service's own routes; changes send the admin key (kept in sessionStorage) as a Bearer token.
"use strict";

const KEY_STORAGE = "spikeformer.console.key";
const $ = (sel) => document.querySelector(sel);
const state = { key: sessionStorage.getItem(KEY_STORAGE) || "", selected: null, lastStats: null, rates: [] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v; // the CSSOM: the page's CSP forbids style attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function showStatus(message, kind = "ok") {
  const s = $("#status");
  s.textContent = message;
  s.className = kind;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["Authorization"] = "Bearer " + state.key;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body: options.body });
  const text = await response.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch (e) { /* plain text */ }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function fmtTime(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function fmtJoules(j) {
  if (j == null || !isFinite(j)) return "-";
  const units = [[1, "J"], [1e-3, "mJ"], [1e-6, "µJ"], [1e-9, "nJ"], [1e-12, "pJ"]];
  for (const [scale, unit] of units) if (Math.abs(j) >= scale) return (j / scale).toFixed(2) + " " + unit;
  return j.toExponential(2) + " J";
}

function fmtMs(seconds) {
  return seconds == null ? "-" : (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + " ms";
}

// -- API key -------------------------------------------------------------------------------------------------------

function renderKeyState() {
  $("#key-state").textContent = state.key ? `key ${state.key.slice(0, 8)}…: changes allowed` : "no key: read only";
  for (const id of ["#ack", "#post-update", "#resolve"]) $(id).disabled = !state.key;
}

$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.key = $("#api-key").value.trim();
  if (state.key) sessionStorage.setItem(KEY_STORAGE, state.key);
  else sessionStorage.removeItem(KEY_STORAGE);
  $("#api-key").value = "";
  renderKeyState();
  loadIncidents();
});

// -- models --------------------------------------------------------------------------------------------------------

async function loadModels() {
  try {
    const index = await api("/v2/repository/index", { method: "POST" });
    const body = $("#models tbody");
    body.replaceChildren();
    const names = [...new Set(index.map((v) => v.name))];
    const select = $("#try-model");
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
    for (const v of index) {
      let meta = null;
      try {
        meta = await api(`/v2/models/${encodeURIComponent(v.name)}/versions/${encodeURIComponent(v.version)}`);
      } catch (e) { meta = null; }
      const p = (meta && meta.parameters) || {};
      const ok = v.state === "READY";
      const integrity = ok
        ? el("span", { class: "state-ok", title: p.sha256 || "" }, "verified " + (p.sha256 || "").slice(0, 12))
        : el("span", { class: "state-bad" }, v.reason || "not verified");
      body.append(el("tr", { dataset: { model: v.name, version: v.version } },
        el("td", {}, v.name), el("td", {}, v.version),
        el("td", {}, el("span", { class: ok ? "state-ok" : "state-bad" }, v.state)),
        el("td", {}, integrity),
        el("td", {}, p.class_names ? p.class_names.length : "-"),
        el("td", {}, p.timesteps != null ? p.timesteps : "-")));
    }
  } catch (e) {
    showStatus("models: " + e.message, "error");
  }
}

// -- hardware ------------------------------------------------------------------------------------------------------

async function loadHardware() {
  try {
    const status = await api("/v1/hardware");
    const body = $("#hardware tbody");
    body.replaceChildren(...status.devices.map((d) => el("tr", {},
      el("td", {}, d.backend), el("td", {}, d.device),
      el("td", {}, el("span", { class: d.available ? "state-ok" : "state-bad" }, d.available ? "yes" : "no")),
      el("td", {}, d.temperature_c != null ? d.temperature_c.toFixed(0) + " °C" : "-"),
      el("td", {}, d.power_w != null ? d.power_w.toFixed(0) + " W" : "-"),
      el("td", {}, d.memory_total_mb ? `${d.memory_used_mb.toFixed(0)} / ${d.memory_total_mb.toFixed(0)} MB` : "-"),
      el("td", { class: "muted" }, d.reason || (d.details && d.details.temperature) || ""))));
  } catch (e) {
    showStatus("hardware: " + e.message, "error");
  }
}

// -- traffic -------------------------------------------------------------------------------------------------------

function quantile(prev, cur, q) {
  // Histogram buckets are cumulative [le, count]; the difference of two polls is the window's histogram.
  const before = new Map((prev ? prev.buckets : []).map(([le, n]) => [String(le), n]));
  const rows = cur.buckets.map(([le, n]) => [le, n - (before.get(String(le)) || 0)]);
  const total = rows.length ? rows[rows.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [le, n] of rows) if (n >= q * total) return le === "+Inf" ? Infinity : Number(le);
  return null;
}

function drawRates() {
  const canvas = $("#rate-chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...state.rates);
  ctx.strokeStyle = "#2f6fde";
  ctx.lineWidth = 2;
  ctx.beginPath();
  state.rates.forEach((r, i) => {
    const x = (i / 59) * (w - 4) + 2, y = h - 4 - (r / max) * (h - 8);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#6b7280";
  ctx.font = "11px sans-serif";
  ctx.fillText(`max ${max.toFixed(1)} req/s`, 6, 12);
}

async function loadStats() {
  try {
    const s = await api("/v1/stats");
    const prev = state.lastStats;
    if (prev) {
      const dt = Math.max(s.time - prev.time, 1e-3);
      const rate = (s.requests.total - prev.requests.total) / dt;
      const okNow = s.requests.by_status.ok || 0, okBefore = prev.requests.by_status.ok || 0;
      const failed = (s.requests.total - okNow - (prev.requests.total - okBefore)) / dt;
      $("#rate").textContent = rate.toFixed(2);
      $("#errors").textContent = failed.toFixed(2);
      const p50 = quantile(prev.latency_seconds, s.latency_seconds, 0.5);
      const p99 = quantile(prev.latency_seconds, s.latency_seconds, 0.99);
      $("#p50").textContent = p50 == null ? "-" : (p50 === Infinity ? "> 10 s" : "≤ " + fmtMs(p50));
      $("#p99").textContent = p99 == null ? "-" : (p99 === Infinity ? "> 10 s" : "≤ " + fmtMs(p99));
      const de = s.energy_joules.count - prev.energy_joules.count;
      const perInference = de > 0 ? (s.energy_joules.sum - prev.energy_joules.sum) / de
        : (s.energy_joules.count ? s.energy_joules.sum / s.energy_joules.count : null);
      $("#energy").textContent = fmtJoules(perInference);
      state.rates.push(rate);
      if (state.rates.length > 60) state.rates.shift();
      drawRates();
    }
    $("#inflight").textContent = `${s.in_flight} · ${s.queue_depth}`;
    const statuses = Object.entries(s.requests.by_status).map(([k, v]) => `${k} ${v}`).join(", ");
    $("#totals").textContent = `since start (${(s.uptime_s / 60).toFixed(0)} min): ${s.requests.total} requests`
      + (statuses ? ` (${statuses})` : "") + (s.maintenance.enabled ? " · MAINTENANCE MODE" : "");
    state.lastStats = s;
  } catch (e) {
    showStatus("stats: " + e.message, "error");
  }
}

// -- incidents -----------------------------------------------------------------------------------------------------

function flags(i) {
  const out = [];
  if (i.ack_overdue) out.push(el("span", { class: "flag" }, "ack overdue"));
  if (i.update_overdue) out.push(el("span", { class: "flag" }, "update overdue"));
  if (i.postmortem_overdue) out.push(el("span", { class: "flag" }, "post-mortem overdue"));
  return out;
}

async function loadIncidents() {
  try {
    const { incidents } = await api("/v1/incidents?status=active&status=resolved&limit=50");
    const body = $("#incidents tbody");
    body.replaceChildren(...incidents.map((i) => el("tr", {
      class: "clickable" + (state.selected === i.id ? " selected" : ""),
      dataset: { incident: i.id, status: i.status },
      onclick: () => selectIncident(i.id),
    },
      el("td", {}, i.id), el("td", {}, el("span", { class: "badge " + i.sev }, i.sev)),
      el("td", {}, i.title), el("td", { class: "incident-status" }, i.status),
      el("td", {}, i.commander || "-"), el("td", {}, fmtTime(i.started_at)), el("td", {}, ...flags(i)))));
    if (!incidents.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no open incidents")));
    if (state.selected) await loadIncident(state.selected);
  } catch (e) {
    showStatus("incidents: " + e.message, "error");
  }
}

async function loadIncident(id) {
  const i = await api(`/v1/incidents/${id}`);
  $("#incident-detail").hidden = false;
  $("#incident-title").replaceChildren(el("span", { class: "badge " + i.sev }, i.sev), ` #${i.id} ${i.title}`);
  $("#incident-meta").textContent = `${i.status} · started ${fmtTime(i.started_at)} · commander `
    + `${i.commander || "none"} · acknowledge by ${fmtTime(i.ack_due_at)}`
    + (i.update_due_at ? ` · next update due ${fmtTime(i.update_due_at)}` : "")
    + (i.postmortem_due_at ? ` · post-mortem due ${fmtTime(i.postmortem_due_at)}` : "")
    + (i.summary ? ` · ${i.summary}` : "");
  $("#incident-detail").dataset.status = i.status;
  $("#timeline").replaceChildren(...(i.timeline || []).map((e) => el("li", { class: e.visibility },
    `${fmtTime(e.time)} · ${e.author} · ${e.kind}${e.visibility === "internal" ? " (internal)" : ""}: ${e.message}`)));
}

async function selectIncident(id) {
  state.selected = id;
  document.querySelectorAll("#incidents tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.incident == id));
  try { await loadIncident(id); } catch (e) { showStatus(e.message, "error"); }
}

async function incidentAction(path, json, done) {
  if (!state.selected) return;
  try {
    const result = await api(`/v1/incidents/${state.selected}/${path}`, { method: "POST", json });
    let message = done;
    if (result.silence_errors && result.silence_errors.length) message += " (silence failed: " + result.silence_errors[0] + ")";
    else if (result.silences && result.silences.length) message += ` (silence ${result.silences[0].silenceID})`;
    showStatus(message, "ok");
  } catch (e) {
    showStatus(e.message, "error");
  }
  await loadIncidents();
}

$("#ack").addEventListener("click", () =>
  incidentAction("acknowledge", { silence: $("#ack-silence").checked }, `incident #${state.selected} acknowledged`));
$("#post-update").addEventListener("click", () => {
  const json = { message: $("#update-message").value };
  if ($("#update-progress").value) json.progress = $("#update-progress").value;
  if ($("#update-next").value) json.next_steps = $("#update-next").value;
  incidentAction("updates", json, `update posted on incident #${state.selected}`);
});
$("#resolve").addEventListener("click", () => {
  const json = {};
  if ($("#resolve-cause").value) json.root_cause = $("#resolve-cause").value;
  if ($("#resolve-resolution").value) json.resolution = $("#resolve-resolution").value;
  incidentAction("resolve", json, `incident #${state.selected} resolved`);
});

// -- try a model ---------------------------------------------------------------------------------------------------

function bars(list, items, max) {
  list.replaceChildren(...items.map(([name, value, label]) => el("li", {},
    el("span", { class: "name", title: name }, name),
    el("span", {}, el("div", { class: "bar", style: `width:${Math.max(1, (100 * value) / (max || 1))}%` })),
    el("span", {}, label))));
}

function drawRaster(layer) {
  const steps = layer.spikes.length, shown = steps ? layer.spikes[0].length : 0;
  const cw = Math.max(8, Math.floor(160 / Math.max(steps, 1))), ch = 4;
  const canvas = el("canvas", { width: Math.max(steps * cw, 8), height: Math.max(shown * ch, 8) });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#1d2430";
  for (let t = 0; t < steps; t++) {
    for (let n = 0; n < shown; n++) if (layer.spikes[t][n]) ctx.fillRect(t * cw + 1, n * ch, cw - 2, ch - 1);
  }
  return el("figure", { dataset: { layer: layer.name } }, canvas,
    el("figcaption", {}, `${layer.name}: ${shown} of ${layer.neurons} neurons, ${steps} steps, `
      + `rate ${(layer.firing_rate * 100).toFixed(1)} %`));
}

$("#try-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("#try-file").files[0];
  if (!file) { showStatus("choose a PNG or JPEG image first", "error"); return; }
  const form = new FormData();
  form.append("file", file);
  if ($("#try-model").value) form.append("model", $("#try-model").value);
  $("#try-run").disabled = true;
  try {
    const r = await api("/v1/console/try", { method: "POST", body: form });
    const p = r.prediction;
    $("#try-result").hidden = false;
    $("#prediction").replaceChildren(el("b", { "data-testid": "predicted-class" }, p.class_name),
      ` (class ${p.class_index}, ${(100 * p.probabilities[p.class_name]).toFixed(1)} %) by ${p.model_name} `
      + `version ${p.model_version}; ${r.timesteps} time steps, ${Math.round(r.total_spikes)} spikes`);
    const probs = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
    bars($("#probabilities"), probs.map(([k, v]) => [k, v, (100 * v).toFixed(1) + " %"]), 1);
    const rates = r.firing_rates.map((f) => [f.layer, f.rate, (100 * f.rate).toFixed(1) + " %"]);
    bars($("#firing-rates"), rates, Math.max(...rates.map((x) => x[1]), 1e-9));
    $("#rasters").replaceChildren(...r.raster.map(drawRaster));
    $("#try-energy tbody").replaceChildren(...r.energy.map((e) => el("tr", { dataset: { hardware: e.hardware } },
      el("td", {}, e.hardware), el("td", {}, fmtJoules(e.joules)),
      el("td", { class: "muted" }, e.assumed ? e.notes.join(" ") : "published constants: " + e.sources.join("; ")))));
    showStatus(`classified as ${p.class_name}`, "ok");
  } catch (e) {
    showStatus("try: " + e.message, "error");
  } finally {
    $("#try-run").disabled = false;
  }
});

// -- start ---------------------------------------------------------------------------------------------------------

$("#refresh-models").addEventListener("click", loadModels);
$("#refresh-hardware").addEventListener("click", loadHardware);
$("#refresh-incidents").addEventListener("click", loadIncidents);
renderKeyState();
loadModels();
loadHardware();
loadStats();
loadIncidents();
setInterval(loadStats, 2000);
setInterval(loadIncidents, 5000);
setInterval(loadHardware, 30000);
