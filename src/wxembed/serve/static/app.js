// The explorer's page: every action is one call to the JSON API under /api (see /docs).
// Plain JavaScript, no library; text from the server is set as text, never as HTML.
"use strict";

const state = { info: null, manifest: null, i: 0, tab: "similar" };
const $ = (id) => document.getElementById(id);
const STATUS_COLOURS = { stored: "#4caf50", missing: "#ff9800", failed: "#d32f2f", pending: "#bbb" };
const MONTHS = "JFMAMJJASOND";

function message(text) { $("message").textContent = text || ""; }

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else if (k === "onclick") node.onclick = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const hourText = (iso) => iso.replace("T", " ").replace(":00:00Z", ":00Z");
const toLocalInput = (iso) => iso.slice(0, 16);          // datetime-local, read as UTC
const fromLocalInput = (value) => value ? value + ":00Z" : "";
const fmt = (v) => v === null || v === undefined ? "\u2014"
  : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v));

// ---- browsing ------------------------------------------------------------------------------
function drawStrip() {
  const canvas = $("strip"), m = state.manifest, n = m.time.length;
  canvas.width = Math.max(canvas.clientWidth, 100);
  const ctx = canvas.getContext("2d"), w = canvas.width / Math.max(n, 1);
  m.status.forEach((s, i) => {
    ctx.fillStyle = STATUS_COLOURS[s] || "#bbb";
    ctx.fillRect(i * w, 0, Math.max(w, 1), canvas.height);
  });
  ctx.fillStyle = "#000";
  ctx.fillRect(state.i * w, 0, Math.max(w, 2), canvas.height);
}

function currentTime() { return state.manifest.time[state.i]; }

function showHour(i) {
  const m = state.manifest;
  state.i = Math.max(0, Math.min(i, m.time.length - 1));
  const t = currentTime(), status = m.status[state.i];
  $("slider").value = state.i;
  $("picker").value = toLocalInput(t);
  $("hour-label").textContent = hourText(t);
  const line = $("hour-status");
  if (status === "stored") {
    line.className = "";
    line.textContent = `stored${m.in_index[state.i] ? ", in the index" : ", not in the index"}` +
      (m.source[state.i] ? ` \u00b7 from ${m.source[state.i]}` : "");
    $("map").src = `/api/hours/${t}/image.png`;
    $("map").hidden = false;
  } else {
    line.className = "bad";
    line.textContent = `${status}${m.reason[state.i] ? ": " + m.reason[state.i] : ""}`;
    $("map").hidden = true;
  }
  drawStrip();
  if (state.tab === "reconstruction") showReconstruction();
}

function goToTime(iso) {
  const i = state.manifest.time.indexOf(iso);
  if (i < 0) { message(`${hourText(iso)} is not in the archive`); return; }
  message("");
  showHour(i);
  window.scrollTo({ top: 0, behavior: "smooth" });
}

function drawScale() {
  const scale = $("scale");
  for (const { dbz, color } of state.info.colour_scale) {
    scale.append(el("span", { style: `background:${color}`, text: String(dbz) }));
  }
  scale.append(el("span", { text: "dBZ" }));
}

// ---- find similar --------------------------------------------------------------------------
function filterQuery() {
  const form = new FormData($("similar-form")), q = new URLSearchParams();
  for (const name of ["k", "metric", "exclude_hours", "months", "hours"]) {
    if (form.get(name)) q.set(name, form.get(name));
  }
  for (const name of ["start", "end"]) if (form.get(name)) q.set(name, form.get(name));
  return q.toString();
}

function showMatches(result) {
  $("similar-query").textContent =
    `${result.matches.length} hours most like ${result.query} (${result.metric} distance)` +
    (result.note ? ` \u2014 ${result.note}` : "");
  const box = $("similar-results");
  box.replaceChildren(...result.matches.map((m) => el("div",
    { class: "card match", onclick: () => goToTime(m.time) },
    el("img", { src: m.thumbnail, alt: m.time }),
    el("div", { class: "what", text: `#${m.rank} ${hourText(m.time)} \u00b7 d = ${fmt(m.distance)}` }))));
}

async function findSimilar(event) {
  if (event) event.preventDefault();
  try {
    message("");
    showMatches(await api(`/api/hours/${currentTime()}/similar?${filterQuery()}`));
  } catch (e) { message(e.message); }
}

async function searchUpload() {
  const file = $("upload").files[0];
  if (!file) { message("choose a GRIB2 or .npy file first"); return; }
  try {
    message("");
    showMatches(await api(`/api/similar?${filterQuery()}`, { method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream" } }));
  } catch (e) { message(e.message); }
}

// ---- reconstruction ------------------------------------------------------------------------
function scoreTable(table, columns) {
  // columns: {name: [{label, value, better}]} with the same rows in each
  const names = Object.keys(columns);
  const head = el("tr", {}, el("th", { text: "score" }), ...names.map((n) => el("th", { text: n })));
  const rows = columns[names[0]].map((row, r) => {
    const values = names.map((n) => columns[n][r].value);
    const finite = values.filter((v) => typeof v === "number");
    const pick = row.better === "lower" ? Math.min : row.better === "higher" ? Math.max : null;
    const best = pick && finite.length > 1 ? pick(...finite) : null;
    return el("tr", {}, el("td", { text: row.label }), ...values.map((v) =>
      el("td", { text: fmt(v), class: v === best ? "best" : "" })));
  });
  table.replaceChildren(head, ...rows);
}

async function showReconstruction() {
  const t = currentTime();
  if (!state.info.model) { message("no model is served: start with --checkpoint"); return; }
  if (state.manifest.status[state.i] !== "stored") return;
  $("recon-original").src = `/api/hours/${t}/image.png?view=original&width=600`;
  $("recon-decoded").src = `/api/hours/${t}/image.png?view=reconstruction&width=600`;
  $("recon-matched").src = `/api/hours/${t}/image.png?view=matched&width=600`;
  $("recon-difference").src = `/api/hours/${t}/image.png?view=difference&width=600`;
  try {
    const r = await api(`/api/hours/${t}/reconstruction`);
    scoreTable($("recon-scores"), { reconstruction: r.scores, "probability-matched": r.matched_scores });
  } catch (e) { message(e.message); }
}

// ---- regimes -------------------------------------------------------------------------------
function bars(counts, labels) {
  const ns = "http://www.w3.org/2000/svg", w = 10, h = 40, max = Math.max(...counts, 1);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "bars");
  svg.setAttribute("viewBox", `0 0 ${counts.length * w} ${h + 10}`);
  counts.forEach((c, i) => {
    const rect = document.createElementNS(ns, "rect"), bh = (h * c) / max;
    Object.entries({ x: i * w + 1, y: h - bh, width: w - 2, height: bh }).forEach(([k, v]) =>
      rect.setAttribute(k, v));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${labels[i]}: ${c} hours`;
    rect.append(title);
    const text = document.createElementNS(ns, "text");
    Object.entries({ x: i * w + 2, y: h + 9 }).forEach(([k, v]) => text.setAttribute(k, v));
    text.textContent = labels[i].length === 1 || i % 6 === 0 ? labels[i] : "";
    svg.append(rect, text);
  });
  return svg;
}

function showRegimes(result) {
  $("clustering-note").textContent = `k = ${result.k}, ${result.hours} hours` +
    (result.adjusted_rand_index != null
      ? `; adjusted Rand index against the true regimes ${fmt(result.adjusted_rand_index)}` : "");
  $("regimes").replaceChildren(...result.clusters.map((c) => el("div",
    { class: "card regime", onclick: () => goToTime(c.nearest_time) },
    c.image ? el("img", { src: c.image + "?width=400", alt: `centroid ${c.cluster}` }) : "",
    el("div", { class: "what", text: `cluster ${c.cluster}: ${c.hours} hours ` +
      `(${Math.round(100 * c.share)} %), nearest ${hourText(c.nearest_time)}` }),
    el("div", { class: "what", text: "by month" }), bars(c.by_month, MONTHS.split("")),
    el("div", { class: "what", text: "by UTC hour" }),
    bars(c.by_hour, [...Array(24).keys()].map(String)))));
}

async function loadRegimes(pick) {
  try {
    const list = await api("/api/clusters");
    $("run-clustering").disabled = !list.allow_clustering;
    $("run-clustering").title = list.allow_clustering ? "" : "start the server with --allow-clustering";
    $("stored-k").replaceChildren(...list.stored.map((s) =>
      el("option", { value: s.k, text: `k = ${s.k} (${s.sizes.join(", ")})` })));
    if (!list.stored.length) {
      $("clustering-note").textContent = "no clustering is stored in the index" +
        (list.allow_clustering ? "; run one" : " (wxembed cluster, or serve --allow-clustering)");
      return;
    }
    const k = pick || list.stored[0].k;
    $("stored-k").value = k;
    showRegimes(await api(`/api/clusters/${k}`));
  } catch (e) { message(e.message); }
}

async function runClustering() {
  const k = $("run-k").value;
  $("clustering-note").textContent = `running k-means with k = ${k}...`;
  try {
    message("");
    const result = await api(`/api/clusters?k=${encodeURIComponent(k)}`, { method: "POST" });
    await loadRegimes(result.k);
    showRegimes(result);
  } catch (e) { message(e.message); $("clustering-note").textContent = ""; }
}

// ---- interpolation -------------------------------------------------------------------------
async function interpolate(event) {
  if (event) event.preventDefault();
  const form = new FormData($("interp-form"));
  const q = new URLSearchParams({ start: fromLocalInput(form.get("start")),
    end: fromLocalInput(form.get("end")), weight: form.get("weight") || "0.5" });
  try {
    message("");
    const r = await api(`/api/interpolate?${q}`);
    const captions = { truth: `real ${hourText(r.truth_time)}`,
      embedding_midpoint: "decoded embedding mix", pixel_average: "pixel average" };
    $("interp-images").replaceChildren(...Object.entries(r.images).map(([panel, src]) =>
      el("figure", {}, el("img", { src: src + "&width=600", alt: panel }),
        el("figcaption", { text: captions[panel] }))));
    scoreTable($("interp-scores"), { "decoded mix": r.scores.embedding_midpoint,
      "pixel average": r.scores.pixel_average, "reconstruction of the real hour": r.scores.reconstruction });
  } catch (e) { message(e.message); }
}

function presetInterpolation() {
  const t = currentTime(), later = state.manifest.time[Math.min(state.i + 2, state.manifest.time.length - 1)];
  const form = $("interp-form");
  form.start.value = toLocalInput(t);
  form.end.value = toLocalInput(later);
}

// ---- scores --------------------------------------------------------------------------------
async function showScores() {
  if (!state.info.evaluation) { $("scores-note").textContent = "no evaluation.json is served"; return; }
  try {
    const s = await api("/api/scores");
    $("scores-note").textContent = `From wxembed evaluate: model ${s.model_id}, ` +
      `${s.held_out_hours} held-out hours (${s.held_out_first} to ${s.held_out_last}), ` +
      `${s.train_hours} training hours.` + (s.same_model ? "" : " Not the model served here.");
    const columns = {};
    for (const m of s.methods) columns[m] = s.rows.map((r) => ({ label: r.label, better: r.better, value: r[m] }));
    scoreTable($("scores-table"), columns);
  } catch (e) { message(e.message); }
}

// ---- tabs and start-up ---------------------------------------------------------------------
function openTab(name) {
  state.tab = name;
  document.querySelectorAll("nav#tabs button").forEach((b) =>
    b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => { s.hidden = s.id !== `tab-${name}`; });
  if (name === "reconstruction") showReconstruction();
  if (name === "regimes") loadRegimes();
  if (name === "interpolate") presetInterpolation();
  if (name === "scores") showScores();
}

async function start() {
  try {
    state.info = await api("/api/info");
    state.manifest = await api("/api/manifest");
  } catch (e) { message(e.message); return; }
  const { archive, model, index } = state.info;
  $("served").textContent = `${archive.name} \u00b7 ${archive.grid}` +
    (model ? ` \u00b7 model ${model.model_id} (${model.embedding_dim} numbers)` : " \u00b7 no model") +
    (index ? ` \u00b7 index ${index.name}: ${index.hours} hours` : " \u00b7 no index");
  $("summary").textContent = Object.entries(archive.summary).map(([k, v]) => `${v} ${k}`).join(", ");
  $("diff-limit").textContent = state.info.difference_limit;
  drawScale();
  $("slider").max = state.manifest.time.length - 1;
  $("slider").oninput = () => showHour(Number($("slider").value));
  $("prev").onclick = () => showHour(state.i - 1);
  $("next").onclick = () => showHour(state.i + 1);
  $("picker").onchange = () => goToTime(fromLocalInput($("picker").value));
  $("strip").onclick = (e) => showHour(Math.floor(e.offsetX / e.target.clientWidth * state.manifest.time.length));
  $("similar-form").onsubmit = findSimilar;
  $("search-upload").onclick = searchUpload;
  $("show-k").onclick = async () => { try { showRegimes(await api(`/api/clusters/${$("stored-k").value}`)); } catch (e) { message(e.message); } };
  $("run-clustering").onclick = runClustering;
  $("interp-form").onsubmit = interpolate;
  document.querySelectorAll("nav#tabs button").forEach((b) => { b.onclick = () => openTab(b.dataset.tab); });
  const first = state.manifest.status.indexOf("stored");
  showHour(first < 0 ? 0 : first);
  window.onresize = drawStrip;
  document.body.dataset.ready = "1";
}

start();
