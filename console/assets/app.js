// Strata console: one page, hash routes, the JSON API of the process serving it.
"use strict";

const page = document.getElementById("page");
const login = document.getElementById("login");
const LAYERS = ["landing", "raw", "enriched", "ranked"];

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "-"; }
function secs(ms) { return ms == null ? "-" : (ms / 1000).toFixed(1) + " s"; }
function num(n) { return n == null ? "-" : Number(n).toLocaleString("en-US"); }

class LoggedOut extends Error {}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) throw new LoggedOut();
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showLogin() {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").textContent = "";
  page.innerHTML = "";
  login.hidden = false;
}

login.addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: login.user.value, password: login.password.value }),
  });
  if (!response.ok) {
    error.textContent = (await response.json()).error;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  login.hidden = true;
  route();
});

async function logOut() {
  await fetch("/api/logout", { method: "POST" });
  showLogin();
}

async function route() {
  try {
    const me = await api("/api/me");
    login.hidden = true;
    document.getElementById("nav").hidden = false;
    document.getElementById("who").innerHTML = `${esc(me.user)} · ${esc(me.warehouse)}` +
      (me.open ? "" : ` · <a href="#" id="log-out">log out</a>`);
    const out = document.getElementById("log-out");
    if (out) out.onclick = (event) => { event.preventDefault(); logOut(); };
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const [what, a, b] = parts;
    if (what === "runs" && a) await showRun(a);
    else if (what === "pipeline") await showPipeline();
    else if (what === "tables" && a) await showTable(a);
    else if (what === "lineage" && a) await showLineage(a, b);
    else if (what === "cluster") await showCluster();
    else await showRuns();
  } catch (error) {
    if (error instanceof LoggedOut) showLogin();
    else page.innerHTML = `<p class="error" id="page-error">${esc(error.message)}</p>`;
  }
}

function rowsCells(r) {
  return ["rows_read", "rows_written", "rows_dropped", "rows_quarantined", "rows_rejected"]
    .map((k) => `<td class="n" data-field="${k}">${num(r[k])}</td>`).join("");
}
const ROW_HEADS = "<th>read</th><th>written</th><th>dropped</th><th>quarantined</th><th>rejected</th>";

async function showRuns() {
  const { runs, live } = await api("/api/runs");
  let html = "<h1>Runs</h1>";
  if (live && live.length) {
    html += "<h2>Under way</h2>" + live.map(liveRun).join("");
  }
  html += `<table id="runs"><tr><th>run</th><th>state</th><th>started</th><th>took</th><th>tables</th>${ROW_HEADS}<th>failures</th></tr>`;
  for (const run of runs) {
    html += `<tr data-run="${esc(run.run_id)}"><td><a href="#/runs/${encodeURIComponent(run.run_id)}">${esc(run.run_id)}</a></td>` +
      `<td class="state-${run.state}">${run.state}</td><td>${when(run.started_at_ms)}</td><td class="n">${secs(run.duration_ms)}</td>` +
      `<td class="n">${run.tables}</td>${rowsCells(run)}<td class="n">${run.failures.length}</td></tr>`;
  }
  page.innerHTML = html + "</table>" + (runs.length ? "" : "<p class='muted'>No runs yet.</p>");
}

function liveRun(run) {
  const tables = Object.entries(run.tables || {}).map(([name, t]) =>
    `<tr><td>${esc(name)}</td><td>${esc(t.state)}</td><td class="n">${num(t.rows_read)}</td></tr>`).join("");
  return `<h3><a href="#/runs/${encodeURIComponent(run.run_id)}">${esc(run.run_id)}</a></h3>` +
    `<table class="live"><tr><th>table</th><th>state</th><th>rows read</th></tr>${tables}</table>`;
}

async function showRun(id) {
  const { summary, report, progress } = await api(`/api/runs/${encodeURIComponent(id)}`);
  let html = `<h1>Run <span id="run-id">${esc(id)}</span></h1>` +
    `<p><span class="state-${summary.state}" id="run-state">${summary.state}</span> · started ${when(summary.started_at_ms)} · took ${secs(summary.duration_ms)}</p>`;
  if (progress) html += liveRun(progress);
  html += `<table id="run-tables"><tr><th>table</th><th>layer</th><th>status</th>${ROW_HEADS}<th>files</th><th>took</th></tr>`;
  for (const t of report.tables) {
    html += `<tr data-table-row="${esc(t.table)}"><td><a href="#/tables/${encodeURIComponent(t.table)}">${esc(t.table)}</a></td>` +
      `<td>${esc(t.layer)}</td><td class="status-${t.status}" data-field="status">${t.status}</td>${rowsCells(t)}` +
      `<td class="n">${num(t.files)}</td><td class="n">${secs(t.duration_ms)}</td></tr>`;
  }
  html += "</table>" + topicsRead(report.tables);
  const failed = report.tables.filter((t) => t.error);
  if (failed.length) {
    html += "<h2>Logs of failed tables</h2>" + failed.map((t) =>
      `<h3>${esc(t.table)}</h3><pre class="log" data-log="${esc(t.table)}">${esc(t.error)}</pre>`).join("");
  }
  page.innerHTML = html;
}

// What each raw table of a Kafka source read of its topic, and how far behind it is.
function topicsRead(tables) {
  const reading = tables.filter((t) => t.topic);
  if (!reading.length) return "";
  let html = `<h2>Kafka</h2><table id="kafka-lag"><tr><th>table</th><th>topic</th><th>partition</th><th>offsets read</th><th>messages behind</th><th>behind by</th></tr>`;
  for (const t of reading) {
    const read = new Map(t.topic.partitions.map(([p, start, end]) => [p, `${num(start)}–${num(end)}`]));
    const behind = new Map((t.topic.behind || []).map((b) => [b.partition, b]));
    const partitions = [...new Set([...read.keys(), ...behind.keys()])].sort((a, b) => a - b);
    for (const p of partitions) {
      const b = behind.get(p);
      html += `<tr data-partition="${esc(t.table)}/${p}"><td>${esc(t.table)}</td><td>${esc(t.topic.topic)}</td><td class="n">${p}</td>` +
        `<td class="n">${read.get(p) || "-"}</td><td class="n" data-field="messages">${num(b ? b.messages : 0)}</td>` +
        `<td class="n" data-field="lag">${b ? secs(b.lag_ms) : "-"}</td></tr>`;
    }
  }
  return html + "</table>";
}

function dag(tables) {
  const columns = LAYERS.map((layer) => tables.filter((t) => t.layer === layer));
  const W = 260, H = 46, GX = 70, GY = 16;
  const at = {};
  columns.forEach((col, x) => col.forEach((t, y) => { at[t.table] = { x: 40 + x * (W + GX), y: 40 + y * (H + GY) }; }));
  const height = 60 + Math.max(...columns.map((c) => c.length), 1) * (H + GY);
  let svg = `<svg id="dag" width="${40 + LAYERS.length * (W + GX)}" height="${height}">`;
  LAYERS.forEach((layer, x) => { svg += `<text x="${40 + x * (W + GX)}" y="22" font-weight="600">${layer}</text>`; });
  for (const t of tables) {
    for (const up of t.upstream) {
      const a = at[up], b = at[t.table];
      if (!a || !b) continue;
      if (a.x === b.x) {
        // Within a layer: around the left side.
        const x = a.x, y1 = a.y + H / 2, y2 = b.y + H / 2;
        svg += `<path class="edge" d="M${x},${y1} C${x - GX / 2},${y1} ${x - GX / 2},${y2} ${x},${y2}"/>`;
        continue;
      }
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      svg += `<path class="edge" d="M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}"/>`;
    }
  }
  for (const t of tables) {
    const p = at[t.table];
    const status = t.last_build ? t.last_build.status : "";
    const detail = t.kind === "source" ? "source" : `${t.mode}${t.expectations.length ? ` · ${t.expectations.length} expectation(s)` : ""}`;
    svg += `<a href="#/tables/${encodeURIComponent(t.table)}"><g class="node ${status}" data-node="${esc(t.table)}">` +
      `<rect x="${p.x}" y="${p.y}" width="${W}" height="${H}"/>` +
      `<text x="${p.x + 8}" y="${p.y + 18}" font-weight="600">${esc(t.table)}</text>` +
      `<text x="${p.x + 8}" y="${p.y + 35}" class="label">${esc(detail)}</text></g></a>`;
  }
  return svg + "</svg>";
}

async function showPipeline() {
  const { pipelines } = await api("/api/pipelines");
  let html = "<h1>Pipeline</h1>";
  if (!pipelines.length) html += "<p class='muted'>No pipeline: give the console one (--pipeline) or register a schedule.</p>";
  for (const p of pipelines) {
    html += `<h2>${esc(p.name)}</h2>`;
    if (p.error) { html += `<pre class="error">${esc(p.error)}</pre>`; continue; }
    html += dag(p.tables);
    html += `<table class="pipeline-tables"><tr><th>table</th><th>layer</th><th>write mode</th><th>expectations</th><th>last build</th></tr>`;
    for (const t of p.tables) {
      const expectations = (t.expectations || []).map((e) => `${esc(e.name)}: ${esc(e.predicate)} → ${esc(e.on_violation)}`).join("<br>");
      const last = t.last_build ? `<span class="status-${t.last_build.status}">${t.last_build.status}</span> ${when(t.last_build.at_ms)}` : "-";
      html += `<tr><td><a href="#/tables/${encodeURIComponent(t.table)}">${esc(t.table)}</a></td><td>${t.layer}</td>` +
        `<td>${esc(t.mode || "source")}</td><td>${expectations}</td><td>${last}</td></tr>`;
    }
    html += "</table>";
  }
  page.innerHTML = html;
}

async function showTable(name) {
  const t = await api(`/api/tables/${encodeURIComponent(name)}`);
  let html = `<h1>Table <span id="table-name">${esc(t.table)}</span></h1><p>${esc(t.format)} · <span id="table-rows">${num(t.rows)}</span> rows · ${esc(t.location)}</p>`;
  html += `<div class="grid"><div><h2>Columns</h2><table id="schema"><tr><th>column</th><th>type</th><th>lineage</th></tr>`;
  for (const c of t.schema) {
    html += `<tr><td>${esc(c.name)}</td><td>${esc(c.type)}</td><td><a data-lineage="${esc(c.name)}" href="#/lineage/${encodeURIComponent(t.table)}/${encodeURIComponent(c.name)}">lineage</a></td></tr>`;
  }
  html += "</table></div><div><h2>Set aside</h2>";
  const aside = Object.entries(t.set_aside);
  html += aside.length ? "<table id='set-aside'>" + aside.map(([what, a]) =>
    `<tr><td>${what}</td><td><a href="#/tables/${encodeURIComponent(a.table)}">${esc(a.table)}</a></td><td class="n">${num(a.rows)}</td></tr>`).join("") + "</table>" : "<p class='muted'>Nothing.</p>";
  html += `<h2>Partitions</h2>${t.partitions.length ? "<ul>" + t.partitions.map((p) => `<li>${esc(p)}</li>`).join("") + "</ul>" : "<p class='muted'>Not partitioned.</p>"}</div></div>`;
  html += `<h2>History</h2><table id="history"><tr><th>version</th><th>when</th><th>operation</th><th>rows</th></tr>`;
  for (const h of t.history) {
    html += `<tr><td class="n">${h.version}</td><td>${when(h.at_ms)}</td><td>${esc(h.operation)}${h.mode ? " " + esc(h.mode) : ""}${h.run_id ? " · " + esc(h.run_id) : ""}</td><td class="n">${num(h.rows)}</td></tr>`;
  }
  html += "</table><h2>Sample</h2>";
  const columns = t.schema.map((c) => c.name);
  html += `<table id="sample"><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>` +
    t.sample.map((row) => `<tr>${columns.map((c) => `<td>${esc(typeof row[c] === "object" && row[c] !== null ? JSON.stringify(row[c]) : row[c])}</td>`).join("")}</tr>`).join("") + "</table>";
  page.innerHTML = html;
}

function lineageGraph(table, column, lineage) {
  const col = lineage.columns[column] || { direct: {}, indirect: {} };
  const sources = new Map();
  const add = (source, kind, label) => {
    const entry = sources.get(source) || [];
    entry.push({ kind, label });
    sources.set(source, entry);
  };
  for (const [s, subtype] of Object.entries(col.direct)) add(s, "direct", subtype);
  for (const [s, kinds] of Object.entries(col.indirect)) add(s, "indirect", kinds.join(", "));
  for (const [s, kinds] of Object.entries(lineage.dataset)) add(s, "dataset", kinds.join(", ") + " (every row)");
  const names = [...sources.keys()].sort();
  const W = 300, H = 28, G = 8, X2 = 700;
  const height = Math.max(names.length * (H + G) + 40, 120);
  const ty = height / 2 - H / 2;
  let svg = `<svg id="lineage-graph" width="${X2 + W + 20}" height="${height}">`;
  names.forEach((s, i) => {
    const y = 20 + i * (H + G);
    for (const [k, e] of sources.get(s).entries()) {
      svg += `<path class="edge ${e.kind}" d="M${20 + W},${y + H / 2} C${(20 + W + X2) / 2},${y + H / 2} ${(20 + W + X2) / 2},${ty + H / 2} ${X2},${ty + H / 2}"/>` +
        `<text class="label" x="${26 + W}" y="${y + H / 2 - 3 + k * 11}">${esc(e.label.toLowerCase())}</text>`;
    }
    const [st, sc] = [s.slice(0, s.lastIndexOf(".")), s.slice(s.lastIndexOf(".") + 1)];
    svg += `<a href="#/lineage/${encodeURIComponent(st)}/${encodeURIComponent(sc)}"><g class="node" data-source="${esc(s)}">` +
      `<rect x="20" y="${y}" width="${W}" height="${H}"/><text x="28" y="${y + 18}">${esc(s)}</text></g></a>`;
  });
  svg += `<g class="node built" data-target="${esc(table)}.${esc(column)}"><rect x="${X2}" y="${ty}" width="${W}" height="${H}"/>` +
    `<text x="${X2 + 8}" y="${ty + 18}" font-weight="600">${esc(table)}.${esc(column)}</text></g>`;
  return svg + "</svg>";
}

async function showLineage(table, column) {
  let lineage;
  try {
    lineage = await api(`/api/lineage/${encodeURIComponent(table)}`);
  } catch (error) {
    if (error instanceof LoggedOut) throw error;
    page.innerHTML = `<h1>${esc(table)}.${esc(column || "")}</h1><p class="muted" id="lineage-none">${esc(error.message)}: its lineage begins here.</p>`;
    return;
  }
  const columns = Object.keys(lineage.columns);
  column = column || columns[0];
  let html = `<h1>Lineage of <span id="lineage-of">${esc(table)}.${esc(column)}</span></h1>` +
    `<p>Columns: ${columns.map((c) => `<a href="#/lineage/${encodeURIComponent(table)}/${encodeURIComponent(c)}">${esc(c)}</a>`).join(" · ")}</p>` +
    `<p class="muted">Solid: the value comes from it; dashed: it decides this column (a window, a condition); dotted: it decides the table's rows (joins, filters, groups). Click a source to follow it upstream.</p>`;
  html += lineageGraph(table, column, lineage);
  const col = lineage.columns[column] || { direct: {}, indirect: {} };
  html += `<h2>Sources</h2><table id="lineage-sources"><tr><th>source</th><th>how</th></tr>`;
  for (const [s, subtype] of Object.entries(col.direct)) html += `<tr data-direct="${esc(s)}"><td>${esc(s)}</td><td>${subtype.toLowerCase()}</td></tr>`;
  for (const [s, kinds] of Object.entries(col.indirect)) html += `<tr data-indirect="${esc(s)}"><td>${esc(s)}</td><td>${kinds.join(", ").toLowerCase()}</td></tr>`;
  for (const [s, kinds] of Object.entries(lineage.dataset)) html += `<tr data-dataset="${esc(s)}"><td>${esc(s)}</td><td>${kinds.join(", ").toLowerCase()} (every row)</td></tr>`;
  page.innerHTML = html + "</table>";
}

async function showCluster() {
  const c = await api("/api/cluster");
  if (c.mode === "embedded") {
    page.innerHTML = `<h1>Cluster</h1><p id="cluster-embedded">Embedded: this console reads the warehouse; runs happen on the machines that start them.</p>`;
    return;
  }
  let html = `<h1>Cluster</h1><table id="executors"><tr><th>executor</th><th>host</th><th>slots</th><th>busy</th><th>draining</th></tr>`;
  for (const e of c.executors) {
    html += `<tr data-executor="${esc(e.id)}"><td>${esc(e.id)}</td><td>${esc(e.host)}</td><td class="n">${e.slots}</td><td class="n">${e.busy}</td><td>${e.draining ? "yes" : ""}</td></tr>`;
  }
  html += "</table>";
  const h = c.history || [];
  if (h.length > 1) {
    const W = 900, H = 160, t0 = h[0].at_ms, t1 = h[h.length - 1].at_ms || t0 + 1;
    const max = Math.max(...h.map((p) => Math.max(p.executors, p.slots)), 1);
    const line = (key) => h.map((p) => `${(p.at_ms - t0) / (t1 - t0 || 1) * W},${H - p[key] / max * (H - 10)}`).join(" ");
    html += `<h2>Over time</h2><svg id="cluster-history" width="${W}" height="${H}">` +
      `<polyline fill="none" stroke="#2357c6" points="${line("executors")}"/><polyline fill="none" stroke="#1d7a3e" points="${line("busy")}"/></svg>` +
      `<p class="muted">Blue: executors; green: busy slots.</p>`;
  }
  html += `<h2>Autoscaler decisions</h2><table id="decisions"><tr><th>when</th><th>decision</th></tr>` +
    (c.decisions || []).map((d) => `<tr><td>${when(d.at_ms)}</td><td>${esc(d.decision)}</td></tr>`).join("") + "</table>";
  page.innerHTML = html;
}

window.addEventListener("hashchange", route);
route();
