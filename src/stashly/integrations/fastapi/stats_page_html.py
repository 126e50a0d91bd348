"""The stats page itself: one HTML document with its style and script inline (no CDN, no other request).

It fetches ``stats.json`` relative to its own URL every second and draws two ``<canvas>`` charts; every
name it shows goes in through ``textContent``, never as markup. Each chart element carries
``data-points`` (the samples it drew) and ``data-rendered``, and each total's tile ``data-field`` (its name in
``stats.json``), for tests and for anyone scripting the page.
The colours are the Okabe–Ito palette (told apart with colour-blindness), in light and dark schemes.
"""

from __future__ import annotations

__all__ = ["PAGE", "SCRIPT", "STYLE"]

STYLE = """
:root { color-scheme: light dark; --bg: #fff; --fg: #1f2328; --muted: #59636e; --grid: #d1d9e0; --panel: #f6f8fa;
  --hit: #0072b2; --fill: #d55e00; --bad: #b42318; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --grid: #30363d; --panel: #161b22;
    --hit: #56b4e9; --fill: #e69f00; --bad: #ff7b72; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, sans-serif; }
header, main { max-width: 72rem; margin: 0 auto; padding: 0 1rem; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; justify-content: space-between;
  padding-top: 1rem; }
h1 { margin: 0; font-size: 1.3rem; }
h2 { margin: 0 0 .4rem; font-size: 1rem; }
.unit, #status, .note { color: var(--muted); font-weight: normal; }
#status { margin: 0; }
#status.error { color: var(--bad); }
.tiles { display: grid; grid-template-columns: repeat(5, 1fr); gap: .5rem; margin: 1rem 0; padding: 0; }
@media (max-width: 40rem) { .tiles { grid-template-columns: repeat(2, 1fr); } }
.tiles div { background: var(--panel); border-radius: 6px; padding: .45rem .75rem; }
.tiles dt { color: var(--muted); font-size: .8rem; }
.tiles dd { margin: 0; font-size: 1.2rem; font-variant-numeric: tabular-nums; }
.tiles .alert dd { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 0 1.5rem; }
section { margin-bottom: 1.25rem; }
canvas { display: block; width: 100%; height: 220px; }
.legend { display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: 0 0 .25rem; padding: 0; list-style: none;
  color: var(--muted); font-size: .85rem; }
.legend span { display: inline-block; width: 1.6rem; margin-right: .35rem; vertical-align: middle;
  border-top: 2px solid var(--hit); }
.legend .fill { border-top-color: var(--fill); }
.legend .p99 { border-top-style: dashed; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid var(--grid); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { color: var(--muted); font-weight: 600; }
td.empty { color: var(--muted); text-align: left; }
"""

SCRIPT = """
"use strict";
(() => {
  const POLL_MS = 1000;
  const byId = (id) => document.getElementById(id);
  const colour = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const count = (n) => (n == null ? "–" : n.toLocaleString("en-US"));
  const percent = (r) => (r == null ? "–" : (100 * r).toFixed(1) + " %");
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  const short = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2).replace(/\\.?0+$/, ""));

  function duration(s) {
    if (s == null) return "–";
    if (s < 1e-6) return short(s * 1e9) + " ns";
    if (s < 1e-3) return short(s * 1e6) + " µs";
    if (s < 1) return short(s * 1e3) + " ms";
    return short(s) + " s";
  }

  const ratioAxis = () => ({ lo: 0, hi: 1, log: false, ticks: [0, 0.25, 0.5, 0.75, 1],
    label: (v) => Math.round(100 * v) + " %" });

  function latencyAxis(values) {
    const low = values.length ? Math.floor(Math.log10(Math.min(...values))) : -6;
    const high = Math.max(low + 1, values.length ? Math.ceil(Math.log10(Math.max(...values))) : -3);
    const ticks = [];
    for (let e = low; e <= high; e++) ticks.push(10 ** e);
    return { lo: 10 ** low, hi: 10 ** high, log: true, ticks, label: duration };
  }

  // series: [{ colour, dashed, points: [[time, value or null], ...] }]; a null leaves a gap in the line.
  function draw(canvas, series, axisFor, empty) {
    const scale = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const left = 58, right = 10, top = 8, bottom = 24;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const times = series.flatMap((s) => s.points.map((p) => p[0]));
    const values = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v != null));
    const first = Math.min(...times), span = Math.max(...times) - first || 1;
    const axis = axisFor(values);
    const f = axis.log ? Math.log10 : (v) => v;
    const x = (t) => left + ((t - first) / span) * plotWidth;
    const y = (v) => top + plotHeight - ((f(v) - f(axis.lo)) / (f(axis.hi) - f(axis.lo))) * plotHeight;

    ctx.font = "12px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = colour("--grid");
    ctx.fillStyle = colour("--muted");
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of axis.ticks) {
      const row = Math.round(y(tick)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, row);
      ctx.lineTo(width - right, row);
      ctx.stroke();
      ctx.fillText(axis.label(tick), left - 6, row);
    }
    ctx.textBaseline = "top";
    if (!values.length) {
      ctx.textAlign = "center";
      ctx.fillText(empty, left + plotWidth / 2, top + plotHeight / 2 - 6);
    } else {
      ctx.textAlign = "left";
      ctx.fillText(clock(first), left, height - bottom + 6);
      ctx.textAlign = "right";
      ctx.fillText(clock(first + span), width - right, height - bottom + 6);
    }

    const drawn = new Set();
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const s of series) {
      ctx.strokeStyle = ctx.fillStyle = s.colour;
      ctx.setLineDash(s.dashed ? [6, 4] : []);
      ctx.beginPath();
      let pen = false;
      for (const [t, v] of s.points) {
        if (v == null) {
          pen = false;
          continue;
        }
        if (pen) ctx.lineTo(x(t), y(v));
        else ctx.moveTo(x(t), y(v));
        pen = true;
        drawn.add(t);
      }
      ctx.stroke();
      ctx.setLineDash([]);
      // A value between two gaps would be an invisible line of one point: a dot instead.
      s.points.forEach(([t, v], i) => {
        if (v == null || s.points[i - 1]?.[1] != null || s.points[i + 1]?.[1] != null) return;
        ctx.beginPath();
        ctx.arc(x(t), y(v), 2.5, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
    canvas.dataset.points = String(drawn.size);
    canvas.dataset.rendered = String(drawn.size > 0);
  }

  function rows(tbody, items, columns, empty) {
    if (!items.length) {
      const cell = document.createElement("td");
      cell.colSpan = columns.length;
      cell.className = "empty";
      cell.textContent = empty;
      const row = document.createElement("tr");
      row.append(cell);
      tbody.replaceChildren(row);
      return;
    }
    tbody.replaceChildren(...items.map((item) => {
      const row = document.createElement("tr");
      columns.forEach((column, i) => {
        const cell = document.createElement(i ? "td" : "th");
        if (!i) cell.scope = "row";
        cell.textContent = column(item);
        row.append(cell);
      });
      return row;
    }));
  }

  // [label, shown value, field in totals (the tile's data-field), whether it calls for attention]
  function tiles(t) {
    const items = [
      ["Hit ratio", percent(t.hit_ratio), "hit_ratio"], ["Lookups", count(t.hits + t.misses), "lookups"],
      ["Hits", count(t.hits), "hits"], ["Misses", count(t.misses), "misses"], ["Keys", count(t.keys), "keys"],
      ["Fills", count(t.fills), "fills"], ["Fill errors", count(t.fill_errors), "fill_errors"],
      ["Backend errors", count(t.errors), "errors"], ["Hit p99", duration(t.hit_latency.p99), "hit_p99"],
      ["Fill p99", duration(t.fill_latency.p99), "fill_p99"],
      ["Breaker changes", count(t.breaker_changes), "breaker_changes"],
      ["Pending invalidations", count(t.pending_invalidations), "pending_invalidations",
        t.pending_invalidations > 0],
      ["Replayed invalidations", count(t.replayed_invalidations), "replayed_invalidations"],
      ["Escalated to a flush", count(t.escalated_invalidations), "escalated_invalidations"],
      ["Dropped at close", count(t.dropped_invalidations), "dropped_invalidations", t.dropped_invalidations > 0],
    ];
    byId("totals").replaceChildren(...items.map(([name, value, field, alert]) => {
      const box = document.createElement("div"), term = document.createElement("dt");
      const detail = document.createElement("dd");
      box.dataset.field = field;
      box.classList.toggle("alert", Boolean(alert));
      term.textContent = name;
      detail.textContent = value;
      box.append(term, detail);
      return box;
    }));
  }

  let data = null;

  function render() {
    if (!data) return;
    const history = data.history, at = (field) => history.map((s) => [s.time, s[field]]);
    tiles(data.totals);
    const ratio = byId("ratio-chart");
    draw(ratio, [{ colour: colour("--hit"), points: at("hit_ratio") }], ratioAxis, "No lookups yet");
    const latest = history.findLast((s) => s.hit_ratio != null);
    ratio.setAttribute("aria-label", `Hit ratio over the last ${history.length} samples; latest `
      + percent(latest ? latest.hit_ratio : null));
    const latency = byId("latency-chart");
    draw(latency, [
      { colour: colour("--hit"), points: at("hit_p50") },
      { colour: colour("--hit"), dashed: true, points: at("hit_p99") },
      { colour: colour("--fill"), points: at("fill_p50") },
      { colour: colour("--fill"), dashed: true, points: at("fill_p99") },
    ], latencyAxis, "No timed hit or fill yet");
    latency.setAttribute("aria-label", "Hit and fill latency over time; since start, hit p99 "
      + duration(data.totals.hit_latency.p99) + ", fill p99 " + duration(data.totals.fill_latency.p99));
    rows(byId("namespaces"), data.namespaces, [
      (n) => n.name, (n) => count(n.keys), (n) => count(n.hits), (n) => count(n.misses),
      (n) => percent(n.hits + n.misses ? n.hit_ratio : null), (n) => count(n.fills), (n) => count(n.errors),
    ], "No namespace used yet");
    rows(byId("functions"), data.functions, [
      (f) => f.name, (f) => count(f.hits), (f) => count(f.misses),
      (f) => percent(f.hits + f.misses ? f.hit_ratio : null), (f) => count(f.fills), (f) => count(f.fill_errors),
      (f) => duration(f.fill_latency.p50), (f) => duration(f.fill_latency.p99),
    ], "No cached function called yet");
  }

  function status(text, failed) {
    const line = byId("status");
    line.textContent = text;
    line.classList.toggle("error", failed);
  }

  async function poll() {
    if (!document.hidden) {
      try {
        const response = await fetch("stats.json", { cache: "no-store", headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error("HTTP " + response.status);
        data = await response.json();
        render();
        status(`Updated ${clock(data.time)} · ${data.history.length} samples, one every ${data.interval} s `
          + "at most", false);
      } catch (error) {
        status(`Cannot load stats.json (${error.message}); retrying`, true);
      }
    }
    setTimeout(poll, Math.max(POLL_MS, data ? 1000 * data.interval : 0));
  }

  window.addEventListener("resize", render);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", render);
  poll();
})();
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="icon" href="data:,">
<title>Cache stats · stashly</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Cache stats</h1>
<p id="status" role="status">Loading…</p>
</header>
<main>
<noscript><p>This page draws its charts with JavaScript; the data is at <a href="stats.json">stats.json</a>.</p>
</noscript>
<dl id="totals" class="tiles" aria-label="Totals since the process started"></dl>
<div class="charts">
<section>
<h2>Hit ratio <span class="unit">(% of lookups between two samples)</span></h2>
<ul class="legend"><li><span></span>all namespaces</li></ul>
<canvas id="ratio-chart" role="img" aria-label="Hit ratio over time: no data yet" data-points="0"
  data-rendered="false"></canvas>
</section>
<section>
<h2>Latency <span class="unit">(per sample, log scale)</span></h2>
<ul class="legend">
<li><span></span>hit p50</li><li><span class="p99"></span>hit p99</li>
<li><span class="fill"></span>fill p50</li><li><span class="fill p99"></span>fill p99</li>
</ul>
<canvas id="latency-chart" role="img" aria-label="Hit and fill latency over time: no data yet" data-points="0"
  data-rendered="false"></canvas>
</section>
</div>
<section>
<h2>Namespaces</h2>
<div class="scroll"><table>
<thead><tr><th scope="col">Namespace</th><th scope="col">Keys</th><th scope="col">Hits</th><th scope="col">Misses</th>
<th scope="col">Hit ratio</th><th scope="col">Fills</th><th scope="col">Errors</th></tr></thead>
<tbody id="namespaces"></tbody>
</table></div>
</section>
<section>
<h2>Cached functions</h2>
<div class="scroll"><table>
<thead><tr><th scope="col">Function</th><th scope="col">Hits</th><th scope="col">Misses</th>
<th scope="col">Hit ratio</th><th scope="col">Fills</th><th scope="col">Fill errors</th>
<th scope="col">Fill p50</th><th scope="col">Fill p99</th></tr></thead>
<tbody id="functions"></tbody>
</table></div>
</section>
<p class="note">Counts since this process started (each worker counts its own). Latencies are the upper bound of
a power-of-two bucket; one hit in 16 is timed, every fill is. Pending invalidations are those Redis could not take
yet: they are replayed as soon as it answers, and until then this process does not read what they cover.</p>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""
