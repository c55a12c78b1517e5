// signdb serve: charts (uPlot, vendored) and live updates for the server-rendered pages.
// Each page's data is the JSON of its /api/v1 twin, in <script type="application/json" id="page-data">.
"use strict";

const COLORS = ["#2f6fdd", "#d1495b", "#2a9d8f", "#e9a23b", "#6a4c93", "#43aa8b",
                "#f3722c", "#577590", "#b5838d", "#90be6d"];
const LIVE = new Set(["queued", "running"]);

function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : null;
}

async function fetchJSON(url) {
  const response = await fetch(url, {headers: {Accept: "application/json"}});
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// -- metric charts (uPlot) ---------------------------------------------------------------
// window.signdbCharts[name] = {plot, series: [Map(step -> value) per line]}: the browser
// tests read the points a chart holds from here.
window.signdbCharts = {};

function chartBox(container, title, links) {
  const box = element("div", {class: "chart", "data-metric": title});
  const heading = element("h3", {}, element("span", {}, title));
  if (links) heading.append(links);
  box.append(heading);
  container.append(box);
  return box;
}

function lineChart(box, name, labels) {
  const width = Math.max(320, box.clientWidth - 12);
  const series = [{}].concat(labels.map((label, i) => ({
    label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: {show: false},
  })));
  const plot = new uPlot({
    width, height: 240, series,
    scales: {x: {time: false}},
    axes: [{label: "step"}, {size: 60}],
    legend: {show: labels.length > 1},
  }, [[], ...labels.map(() => [])], box);
  const chart = {plot, series: labels.map(() => new Map())};
  window.signdbCharts[name] = chart;
  return chart;
}

function redraw(chart) {
  if (chart.series.length === 1) {
    const steps = [...chart.series[0].keys()].sort((a, b) => a - b);
    chart.plot.setData([steps, steps.map(s => chart.series[0].get(s))]);
    return;
  }
  const tables = chart.series.map(points => {
    const steps = [...points.keys()].sort((a, b) => a - b);
    return [steps, steps.map(s => points.get(s))];
  });
  chart.plot.setData(uPlot.join(tables));
}

function addPoints(chart, line, steps, values) {
  for (let i = 0; i < steps.length; i++) chart.series[line].set(steps[i], values[i]);
}

// -- plain canvas plots: curves on [0, 1], scatter, parallel coordinates ------------------
function canvasContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.font = "11px system-ui, sans-serif";
  return {ctx, width, height};
}

function xyPlot(canvas, lines, opts) {
  const {ctx, width, height} = canvasContext(canvas);
  const pad = {left: 44, right: 10, top: 8, bottom: 30};
  const [x0, x1] = opts.x || [0, 1], [y0, y1] = opts.y || [0, 1];
  const px = x => pad.left + (x - x0) / (x1 - x0 || 1) * (width - pad.left - pad.right);
  const py = y => height - pad.bottom - (y - y0) / (y1 - y0 || 1) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "#dfe3e8";
  ctx.fillStyle = "#5f6b78";
  for (let i = 0; i <= 4; i++) {
    const x = x0 + (x1 - x0) * i / 4, y = y0 + (y1 - y0) * i / 4;
    ctx.beginPath(); ctx.moveTo(px(x), py(y0)); ctx.lineTo(px(x), py(y1)); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(px(x0), py(y)); ctx.lineTo(px(x1), py(y)); ctx.stroke();
    ctx.fillText(formatTick(x, x1 - x0), px(x) - 8, height - pad.bottom + 14);
    ctx.fillText(formatTick(y, y1 - y0), 4, py(y) + 4);
  }
  ctx.fillText(opts.xlabel || "", width / 2 - 20, height - 4);
  if (opts.diagonal) {
    ctx.setLineDash([4, 4]); ctx.strokeStyle = "#9aa4ae";
    ctx.beginPath(); ctx.moveTo(px(x0), py(y0)); ctx.lineTo(px(x1), py(y1)); ctx.stroke();
    ctx.setLineDash([]);
  }
  lines.forEach((line, i) => {
    ctx.strokeStyle = ctx.fillStyle = line.color || COLORS[i % COLORS.length];
    ctx.lineWidth = 1.5;
    if (line.points) {
      line.xs.forEach((x, j) => {
        if (line.ys[j] == null) return;
        ctx.beginPath(); ctx.arc(px(x), py(line.ys[j]), 3, 0, 2 * Math.PI); ctx.fill();
      });
      return;
    }
    ctx.beginPath();
    line.xs.forEach((x, j) => (j ? ctx.lineTo : ctx.moveTo).call(ctx, px(x), py(line.ys[j])));
    ctx.stroke();
  });
  canvas.dataset.lines = String(lines.length);
}

function formatTick(v, span) {
  // Enough decimals to tell the four grid steps apart.
  const digits = Math.max(0, Math.min(6, Math.ceil(-Math.log10((span || 1) / 4)) + 1));
  if (Math.abs(v) >= 1e5) return v.toExponential(1);
  const text = v.toFixed(digits);
  return digits ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

function legend(node, names) {
  if (!node) return;
  node.replaceChildren(...names.map((name, i) => {
    const swatch = element("i");
    swatch.style.background = COLORS[i % COLORS.length];
    return element("span", {}, swatch, name);
  }));
}

// -- pages -------------------------------------------------------------------------------
async function initRun(data) {
  const runId = data.run.run_id;
  const container = document.getElementById("charts");
  const charts = {};

  async function addMetric(name) {
    if (charts[name]) return charts[name];
    const csv = element("a", {href: `/api/v1/runs/${runId}/metrics/${encodeURIComponent(name)}?format=csv`}, "CSV");
    const box = chartBox(container, name, csv);
    charts[name] = lineChart(box, name, [name]);
    const history = await fetchJSON(`/api/v1/runs/${runId}/metrics/${encodeURIComponent(name)}?points=2000`);
    addPoints(charts[name], 0, history.steps, history.values);
    redraw(charts[name]);
    return charts[name];
  }

  await Promise.all(Object.keys(data.metrics).map(addMetric));
  if (LIVE.has(data.run.status)) watchRun(runId, data.live_since, async update => {
    const grouped = {};
    for (const p of update.points) (grouped[p.metric] = grouped[p.metric] || []).push(p);
    for (const [name, points] of Object.entries(grouped)) {
      const chart = await addMetric(name);
      addPoints(chart, 0, points.map(p => p.step), points.map(p => p.value));
      redraw(chart);
    }
    if (update.points.length) document.getElementById("no-metrics")?.remove();
  });

  const evaluation = (data.evaluations || {})[data.split];
  if (!evaluation) return;
  const curves = evaluation.curves || [];
  const names = curves.map(c => `${c.name} (${c.roc_auc == null ? "–" : c.roc_auc.toFixed(3)})`);
  xyPlot(document.getElementById("roc"), curves.map(c => ({xs: c.fpr, ys: c.tpr})),
         {xlabel: "false positive rate", diagonal: true});
  legend(document.getElementById("roc-legend"), names);
  const pr = curves.map(c => {
    const keep = c.precision.map((p, i) => p != null ? i : -1).filter(i => i >= 0);
    return {xs: keep.map(i => c.tpr[i]), ys: keep.map(i => c.precision[i])};
  });
  xyPlot(document.getElementById("pr"), pr, {xlabel: "recall"});
  legend(document.getElementById("pr-legend"),
         curves.map(c => `${c.name} (AP ${c.average_precision == null ? "–" : c.average_precision.toFixed(3)})`));
  const bins = evaluation.calibration || [];
  xyPlot(document.getElementById("calibration"),
         [{xs: bins.map(b => b.mean_confidence), ys: bins.map(b => b.accuracy), points: true},
          {xs: bins.map(b => b.mean_confidence), ys: bins.map(b => b.accuracy)}],
         {xlabel: "mean confidence (accuracy on the y axis)", diagonal: true});
}

function watchRun(runId, since, onUpdate) {
  const source = new EventSource(`/api/v1/events/runs/${runId}?since=${encodeURIComponent(since)}`);
  source.addEventListener("update", async event => {
    const update = JSON.parse(event.data);
    const status = document.getElementById("status");
    status.textContent = update.status;
    status.className = `status status-${update.status}`;
    document.getElementById("progress").textContent = `${update.steps_done} / ${update.total_steps ?? "?"}`;
    const bar = document.getElementById("progress-bar");
    if (bar && update.total_steps) { bar.max = update.total_steps; bar.value = update.steps_done; }
    if (update.heartbeat_at) document.getElementById("heartbeat").textContent = update.heartbeat_at;
    await onUpdate(update);
  });
  source.addEventListener("end", () => source.close());
  window.signdbLive = source;
}

async function initCompare(data) {
  const container = document.getElementById("charts");
  const names = [...new Set(data.runs.flatMap(r => Object.keys(r.metrics)))].sort();
  for (const name of names) {
    const runs = data.runs.filter(r => name in r.metrics);
    const box = chartBox(container, name);
    const chart = lineChart(box, name, runs.map(r => `run ${r.run_id}`));
    const histories = await Promise.all(runs.map(r =>
      fetchJSON(`/api/v1/runs/${r.run_id}/metrics/${encodeURIComponent(name)}?points=1000`)));
    histories.forEach((h, i) => addPoints(chart, i, h.steps, h.values));
    redraw(chart);
  }
}

function initSweep(data) {
  const trials = data.trial_rows.filter(t => t.objective != null);
  xyPlot(document.getElementById("objective"),
         [{xs: trials.map(t => t.trial_number), ys: trials.map(t => t.objective), points: true}],
         {xlabel: "trial", x: [0, Math.max(1, ...trials.map(t => t.trial_number))],
          y: range(trials.map(t => t.objective))});
  parallelCoordinates(document.getElementById("parallel"), trials, Object.keys(data.space || {}));
}

function range(values) {
  if (!values.length) return [0, 1];
  const low = Math.min(...values), high = Math.max(...values);
  return low === high ? [low - 0.5, high + 0.5] : [low, high];
}

function parallelCoordinates(canvas, trials, params) {
  const {ctx, width, height} = canvasContext(canvas);
  const axes = params.concat(["objective"]);
  const pad = {left: 30, right: 30, top: 18, bottom: 20};
  const x = i => pad.left + i * (width - pad.left - pad.right) / Math.max(1, axes.length - 1);
  const scales = axes.map(name => {
    const values = trials.map(t => name === "objective" ? t.objective : t.params[name]);
    if (values.every(v => typeof v === "number")) {
      const positive = values.every(v => v > 0);
      const [low, high] = range(values);
      const log = positive && high / low > 100;
      const f = v => log ? Math.log10(v) : v;
      return v => (f(v) - f(low)) / ((f(high) - f(low)) || 1);
    }
    const levels = [...new Set(values.map(v => JSON.stringify(v)))].sort();
    return v => (levels.indexOf(JSON.stringify(v)) + 0.5) / levels.length;
  });
  const y = u => height - pad.bottom - u * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "#9aa4ae";
  ctx.fillStyle = "#5f6b78";
  axes.forEach((name, i) => {
    ctx.beginPath(); ctx.moveTo(x(i), y(0)); ctx.lineTo(x(i), y(1)); ctx.stroke();
    ctx.fillText(name, x(i) - ctx.measureText(name).width / 2, 12);
  });
  const [low, high] = range(trials.map(t => t.objective));
  trials.forEach(t => {
    const u = (t.objective - low) / ((high - low) || 1);
    ctx.strokeStyle = `hsl(${220 - 200 * u}, 70%, 45%)`;
    ctx.beginPath();
    axes.forEach((name, i) => {
      const v = name === "objective" ? t.objective : t.params[name];
      (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(i), y(scales[i](v)));
    });
    ctx.stroke();
  });
  canvas.dataset.lines = String(trials.length);
}

function initRuns(data) {
  const button = document.getElementById("compare");
  const note = document.getElementById("selected-note");
  const picked = () => [...document.querySelectorAll("input.pick:checked")].map(b => b.value);
  document.querySelectorAll("input.pick").forEach(box => box.addEventListener("change", () => {
    const n = picked().length;
    button.disabled = n < 2 || n > 10;
    note.textContent = n ? `${n} selected` : "select 2 to 10 runs";
  }));
  button.addEventListener("click", () => { window.location = `/compare?runs=${picked().join(",")}`; });
  if (data.runs.some(r => LIVE.has(r.status))) setInterval(() => refreshRuns(), 5000);
}

async function refreshRuns() {
  const page = await fetchJSON(`/api/v1/runs${window.location.search}`);
  for (const run of page.runs) {
    const row = document.querySelector(`tr[data-run="${run.run_id}"]`);
    if (!row) continue;
    const status = row.querySelector('[data-field="status"]');
    status.textContent = run.status;
    status.className = `status status-${run.status}`;
    const bar = row.querySelector("progress");
    if (bar && run.total_steps) { bar.max = run.total_steps; bar.value = run.steps_done; }
  }
}

function initModels() {
  const form = document.getElementById("point-alias");
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const alias = form.elements.alias.value.trim();
    const response = await fetch(`/api/v1/models/${encodeURIComponent(alias)}`, {
      method: "PUT",
      headers: {"Content-Type": "application/json", Accept: "application/json"},
      body: JSON.stringify({run_id: Number(form.elements.run_id.value)}),
    });
    const body = await response.json();
    const result = document.getElementById("point-result");
    result.dataset.status = String(response.status);
    if (response.ok) window.location.reload();
    else result.textContent = `${response.status}: ${body.error}`;
  });
}

function initQueue() {
  document.querySelectorAll("button.cancel").forEach(button => button.addEventListener("click", async () => {
    const response = await fetch(`/api/v1/runs/${button.dataset.run}/cancel`,
                                 {method: "POST", headers: {Accept: "application/json"}});
    const body = await response.json();
    const result = document.getElementById("queue-result");
    result.dataset.status = String(response.status);
    result.textContent = response.ok ? `run ${body.run_id}: ${body.status}` : `${response.status}: ${body.error}`;
    if (response.ok) setTimeout(() => window.location.reload(), 500);
  }));
}

const PAGES = {runs: initRuns, run: initRun, compare: initCompare, sweep: initSweep,
               models: initModels, queue: initQueue};

document.addEventListener("DOMContentLoaded", () => {
  const init = PAGES[document.body.dataset.page];
  if (init) Promise.resolve().then(() => init(pageData())).catch(error => console.error(error));
});
